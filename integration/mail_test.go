package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
)

// needTool returns the path of an external client, or skips the test when
// it is missing — unless RAIS_REQUIRE_MAIL_CLIENTS is set (CI installs them
// all, so there a missing one is a failure, not a silent skip).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("RAIS_REQUIRE_MAIL_CLIENTS") != "" {
			t.Fatalf("%s not installed (RAIS_REQUIRE_MAIL_CLIENTS is set)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func imapLogin(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("demo", "demo").Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

// lmtpDeliver delivers body to rcpt and returns nil only on a 250 for it.
func lmtpDeliver(addr, rcpt string, body []byte) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("test"); err != nil {
		return err
	}
	if err := c.Mail("sender@example.com", nil); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	w.Write(body)
	_, err = w.CloseWithLMTPResponse()
	return err
}

// The mail front end of rais dev, driven by clients the project did not
// write: Python's imaplib and smtplib.LMTP, swaks, curl and mbsync.
func TestDev_MailWithStandardClients(t *testing.T) {
	d := startDev(t, t.TempDir())
	if d.imap == "" || d.lmtp == "" {
		t.Fatalf("rais dev printed no RAIS_IMAP/RAIS_LMTP: %s", d.out.String())
	}
	t.Run("python", func(t *testing.T) {
		py := needTool(t, "python3")
		out, err := exec.Command(py, "testdata/mail_clients.py", d.imap, d.lmtp, "demo", "demo").CombinedOutput()
		if err != nil {
			t.Fatalf("mail_clients.py: %v\n%s", err, out)
		}
	})
	t.Run("swaks", func(t *testing.T) {
		swaks := needTool(t, "swaks")
		host, port, _ := net.SplitHostPort(d.lmtp)
		out, err := exec.Command(swaks, "--protocol", "LMTP", "--server", host, "--port", port, "--to", "demo@localhost",
			"--from", "swaks@example.com", "--header", "Subject: from swaks", "--body", "swaks body").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "250") {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		c := imapLogin(t, d.imap)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		sd, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "from swaks"}}}, nil).Wait()
		if err != nil || len(sd.AllUIDs()) != 1 {
			t.Fatalf("message from swaks: %v, %v", sd, err)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(d.dir, "dev.json"))
		if err != nil {
			t.Fatal(err)
		}
		var l struct {
			Mail struct{ HTTP string } `json:"mail"`
		}
		if err := json.Unmarshal(b, &l); err != nil || l.Mail.HTTP == "" {
			t.Fatalf("front end's metrics address in dev.json: %v (%s)", err, b)
		}
		resp, err := http.Get("http://" + l.Mail.HTTP + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("rais_imap_sessions")) {
			t.Fatalf("front end /metrics: %s\n%.500s", resp.Status, body)
		}
	})
	t.Run("curl", func(t *testing.T) {
		curl := needTool(t, "curl")
		body := "Subject: for curl\r\n\r\nfetched by curl\r\n"
		if err := lmtpDeliver(d.lmtp, "demo@localhost", []byte(body)); err != nil {
			t.Fatal(err)
		}
		c := imapLogin(t, d.imap)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		sd, _ := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "for curl"}}}, nil).Wait()
		uids := sd.AllUIDs()
		if len(uids) != 1 {
			t.Fatalf("delivered message not found: %v", uids)
		}
		out, err := exec.Command(curl, "-sS", "--max-time", "20", "--user", "demo:demo", fmt.Sprintf("imap://%s/INBOX;UID=%d", d.imap, uids[0])).CombinedOutput()
		if err != nil || string(out) != body {
			t.Fatalf("curl imap:// = %v, %q", err, out)
		}
		out, err = exec.Command(curl, "-sS", "--max-time", "20", "--user", "demo:demo", fmt.Sprintf("imap://%s/", d.imap)).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "INBOX") {
			t.Fatalf("curl LIST = %v, %q", err, out)
		}
	})
	t.Run("mbsync", func(t *testing.T) { mbsyncRoundTrip(t, d) })
}

// mbsync (isync) pulls the mailbox into a Maildir, pushes a new local
// message and a local flag change back, and pulls a server-side flag.
func mbsyncRoundTrip(t *testing.T, d *devCluster) {
	mbsync := needTool(t, "mbsync")
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(d.imap)
	if err := os.MkdirAll(filepath.Join(dir, "mail"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`IMAPAccount rais
Host %s
Port %s
User demo
Pass demo
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account rais

MaildirStore local
Path %s/mail/
Inbox %s/mail/INBOX

Channel sync
Far :remote:
Near :local:
Patterns INBOX
Create Both
SyncState *
Sync All
`, host, port, dir, dir)
	cfgPath := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	run := func() {
		t.Helper()
		cmd := exec.Command(mbsync, "-c", cfgPath, "-a")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
	}
	for i := range 3 {
		if err := lmtpDeliver(d.lmtp, "demo@localhost", fmt.Appendf(nil, "Subject: sync %d\r\n\r\nbody %d\r\n", i, i)); err != nil {
			t.Fatal(err)
		}
	}
	c := imapLogin(t, d.imap)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	before := sel.NumMessages
	run()
	local := func() []string {
		var files []string
		for _, sub := range []string{"cur", "new"} {
			es, _ := os.ReadDir(filepath.Join(dir, "mail", "INBOX", sub))
			for _, e := range es {
				files = append(files, filepath.Join(dir, "mail", "INBOX", sub, e.Name()))
			}
		}
		return files
	}
	files := local()
	if uint32(len(files)) != before {
		t.Fatalf("mbsync pulled %d messages, the server has %d", len(files), before)
	}
	// Locally: a new message, and one message flagged.
	newMsg := "Subject: written locally\r\n\r\nfrom the Maildir\r\n"
	os.WriteFile(filepath.Join(dir, "mail", "INBOX", "new", "1700000000.local.host"), []byte(newMsg), 0o600)
	f := files[0]
	flagged := f
	if i := strings.Index(f, ":2,"); i >= 0 {
		flagged = f[:i] + ":2,F" + strings.ReplaceAll(f[i+3:], "F", "")
	} else {
		flagged = f + ":2,F"
	}
	if filepath.Base(filepath.Dir(f)) == "new" {
		flagged = filepath.Join(filepath.Dir(filepath.Dir(f)), "cur", filepath.Base(flagged))
	}
	if err := os.Rename(f, flagged); err != nil {
		t.Fatal(err)
	}
	run()
	c2 := imapLogin(t, d.imap)
	sel, err = c2.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != before+1 {
		t.Fatalf("after pushing: %d messages, want %d (%v)", sel.NumMessages, before+1, err)
	}
	msgs, err := c2.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	sawNew, sawFlag := false, false
	var seenUID imap.UID
	for _, m := range msgs {
		// mbsync may add an X-TUID header to what it uploads.
		if bytes.HasSuffix(m.BodySection[0].Bytes, []byte("Subject: written locally\r\n\r\nfrom the Maildir\r\n")) || bytes.Contains(m.BodySection[0].Bytes, []byte("from the Maildir")) {
			sawNew = true
		}
		if slices.Contains(m.Flags, imap.FlagFlagged) {
			sawFlag = true
		} else {
			seenUID = m.UID
		}
	}
	if !sawNew || !sawFlag {
		t.Fatalf("after pushing: local message on the server %v, local flag on the server %v", sawNew, sawFlag)
	}
	// Server side: \Seen on a message; the next sync brings it down.
	if _, err := c2.Store(imap.UIDSetNum(seenUID), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}, Silent: true}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	run()
	seen := 0
	for _, f := range local() {
		if i := strings.Index(f, ":2,"); i >= 0 && strings.Contains(f[i:], "S") {
			seen++
		}
	}
	if seen == 0 {
		t.Fatalf("a flag set on the server did not reach the Maildir: %q", local())
	}
}

// startFrontEnd runs another `rais imap` against d's cluster and returns
// its IMAP and LMTP addresses and the process.
func startFrontEnd(t *testing.T, d *devCluster) (imapAddr, lmtpAddr string, cmd *exec.Cmd) {
	t.Helper()
	rais, _ := binaries(t)
	cmd = exec.Command(rais, "imap", "--masters", d.masters, "--users", filepath.Join(d.dir, "users"), "--imap-addr", "127.0.0.1:0", "--lmtp-addr", "127.0.0.1:0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	for (imapAddr == "" || lmtpAddr == "") && sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "RAIS_IMAP="); ok {
			imapAddr = a
		}
		if a, ok := strings.CutPrefix(sc.Text(), "RAIS_LMTP="); ok {
			lmtpAddr = a
		}
	}
	if imapAddr == "" || lmtpAddr == "" {
		t.Fatalf("rais imap did not start: %s", stderr.String())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	return imapAddr, lmtpAddr, cmd
}

// kill -9 the front end a client is using, mid-session: the client
// reconnects to another front end and finds every acknowledged message
// and flag.
func TestDev_MailFrontEndKilled(t *testing.T) {
	d := startDev(t, t.TempDir())
	other, _, _ := startFrontEnd(t, d)
	c := imapLogin(t, d.imap)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string]bool{} // subject -> flagged
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			subject := fmt.Sprintf("kill %d", i)
			body := fmt.Appendf(nil, "Subject: %s\r\n\r\nbody %d\r\n", subject, i)
			flags := []imap.Flag{}
			if i%2 == 0 {
				flags = append(flags, imap.FlagFlagged)
			}
			cmd := c.Append("INBOX", int64(len(body)), &imap.AppendOptions{Flags: flags})
			cmd.Write(body)
			cmd.Close()
			if _, err := cmd.Wait(); err != nil {
				return // the front end died
			}
			mu.Lock()
			acked[subject] = i%2 == 0
			mu.Unlock()
		}
	})
	waitFor(t, 30*time.Second, "appends", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 20 })
	d.kill("imap1", syscall.SIGKILL)
	close(stop)
	wg.Wait()
	c2 := imapLogin(t, other)
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c2.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, m := range msgs {
		found[m.Envelope.Subject] = slices.Contains(m.Flags, imap.FlagFlagged)
	}
	mu.Lock()
	defer mu.Unlock()
	for subject, flagged := range acked {
		f, ok := found[subject]
		if !ok || f != flagged {
			t.Errorf("%q acknowledged (flagged %v) before the kill; on the other front end: present %v, flagged %v", subject, flagged, ok, f)
		}
	}
	t.Logf("%d appends acknowledged before kill -9 of the front end; all found through the other one", len(acked))
}

// Kill a chunk server, then the master leader, during a stream of LMTP
// deliveries: every delivery acknowledged with 250 is readable.
func TestDev_MailDeliveryDuringKills(t *testing.T) {
	d := startDev(t, t.TempDir(), "--chunkservers", "5")
	var mu sync.Mutex
	var acked []int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; ; i += 2 {
				select {
				case <-stop:
					return
				default:
				}
				if lmtpDeliver(d.lmtp, "demo@localhost", fmt.Appendf(nil, "Subject: n%d\r\n\r\nbody %d\r\n", i, i)) == nil {
					mu.Lock()
					acked = append(acked, i)
					mu.Unlock()
				}
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, 30*time.Second, "deliveries", func() bool { return count() >= 30 })
	d.kill("cs3", syscall.SIGKILL)
	n := count()
	waitFor(t, 60*time.Second, "deliveries after killing a chunk server", func() bool { return count() >= n+20 })
	leader := d.leader()
	d.kill(leader, syscall.SIGKILL)
	n = count()
	waitFor(t, 60*time.Second, "deliveries after killing the leader", func() bool { return count() >= n+20 })
	close(stop)
	wg.Wait()
	c := imapLogin(t, d.imap)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Envelope: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	have := map[int]bool{}
	for _, m := range msgs {
		i, err := strconv.Atoi(strings.TrimPrefix(m.Envelope.Subject, "n"))
		if err != nil || string(m.BodySection[0].Bytes) != fmt.Sprintf("Subject: n%d\r\n\r\nbody %d\r\n", i, i) {
			t.Fatalf("message %q reads back as %q", m.Envelope.Subject, m.BodySection[0].Bytes)
		}
		have[i] = true
	}
	mu.Lock()
	defer mu.Unlock()
	for _, i := range acked {
		if !have[i] {
			t.Errorf("delivery n%d was acknowledged but is not in the mailbox", i)
		}
	}
	t.Logf("%d deliveries acknowledged across the kills of cs3 and %s, all readable (%d in the mailbox)", len(acked), leader, len(msgs))
}
