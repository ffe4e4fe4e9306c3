package mailfront_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/internal/testcluster"
	"github.com/raisfs/raisfs/mailfront"
	"github.com/raisfs/raisfs/mailstore"
)

type front struct {
	imap, lmtp string
	srv        *mailfront.Server
}

func startFront(t testing.TB, masters []string, maxSize int64) *front {
	t.Helper()
	return startFrontOn(t, masters, maxSize, "127.0.0.1", nil)
}

func startFrontOn(t testing.TB, masters []string, maxSize int64, host string, tlsCfg *tls.Config) *front {
	t.Helper()
	return startFrontCfg(t, masters, maxSize, host, tlsCfg, nil)
}

// startFrontWith starts a front end on loopback whose config edit changes.
func startFrontWith(t *testing.T, masters []string, edit func(*mailfront.Config)) *front {
	t.Helper()
	return startFrontCfg(t, masters, 1<<20, "127.0.0.1", nil, edit)
}

func startFrontCfg(t testing.TB, masters []string, maxSize int64, host string, tlsCfg *tls.Config, edit func(*mailfront.Config)) *front {
	t.Helper()
	// As rais imap runs: mailbox records cached under the leader's watch.
	c, err := client.New(context.Background(), client.Config{Masters: masters, Logger: testcluster.Logger(t), RecordCache: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	users, err := mailfront.StaticUsers(map[string]string{"alice": "pw-a", "bob": "pw-b"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := mailfront.Config{
		Store: mailstore.New(c, mailstore.Options{MaxMessageSize: maxSize, Logger: testcluster.Logger(t)}), Users: users, TLS: tlsCfg,
		IdleInterval: 50 * time.Millisecond, Logger: testcluster.Logger(t),
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := mailfront.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	il, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	ll, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv.ServeIMAP(il)
	srv.ServeLMTP(ll)
	t.Cleanup(func() { srv.Close() })
	return &front{imap: il.Addr().String(), lmtp: ll.Addr().String(), srv: srv}
}

func login(t testing.TB, addr, user, pw string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pw).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

func appendMsg(t testing.TB, c *imapclient.Client, mbox string, body []byte, flags ...imap.Flag) *imap.AppendData {
	t.Helper()
	cmd := c.Append(mbox, int64(len(body)), &imap.AppendOptions{Flags: flags})
	cmd.Write(body)
	cmd.Close()
	d, err := cmd.Wait()
	if err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	return d
}

// stored drops \Recent, which is a session's own, from flags: what is
// left is what the mailbox stores.
func stored(flags []imap.Flag) []imap.Flag {
	return slices.DeleteFunc(slices.Clone(flags), func(f imap.Flag) bool { return f == `\Recent` })
}

func fetchAll(t *testing.T, c *imapclient.Client, set imap.NumSet, o *imap.FetchOptions) []*imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(set, o).Collect()
	if err != nil {
		t.Fatalf("FETCH: %v", err)
	}
	return msgs
}

func deliver(t *testing.T, addr string, body []byte, rcpts ...string) (map[string]*smtp.DataResponse, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("sender@example.com", nil); err != nil {
		return nil, err
	}
	var ok []string
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err == nil {
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		return nil, errors.New("no recipient accepted")
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(body)
	return w.CloseWithLMTPResponse()
}

const simple = "From: Carol <carol@example.com>\r\nTo: alice@example.com\r\nSubject: lunch?\r\nDate: Mon, 02 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nTomorrow at noon.\r\n"

// Two front ends on one cluster: APPEND, STORE and EXPUNGE through one are
// seen by FETCH, SEARCH and IDLE through the other.
func TestIMAP_TwoFrontEnds(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f1, f2 := startFront(t, cl.MasterAddrs(), 1<<20), startFront(t, cl.MasterAddrs(), 1<<20)
	c1 := login(t, f1.imap, "alice", "pw-a", nil)
	u := &unsolicited{}
	c2 := login(t, f2.imap, "alice", "pw-a", u.handler(t))
	bad, err := imapclient.DialInsecure(f1.imap, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Login("alice", "wrong").Wait(); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	bad.Close()

	a := appendMsg(t, c1, "INBOX", []byte(simple))
	if a.UID != 1 || a.UIDValidity == 0 {
		t.Fatalf("APPEND = %+v", a)
	}
	sel, err := c2.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 || sel.UIDValidity != a.UIDValidity || sel.UIDNext != 2 {
		t.Fatalf("SELECT on the other front end = %+v, %v", sel, err)
	}
	msgs := fetchAll(t, c2, imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, Flags: true, RFC822Size: true, UID: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}, {Peek: true, Partial: &imap.SectionPartial{Offset: 6, Size: 5}}, {Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}}})
	m := msgs[0]
	if m.Envelope.Subject != "lunch?" || m.RFC822Size != int64(len(simple)) || string(m.BodySection[0].Bytes) != simple ||
		string(m.BodySection[1].Bytes) != "Carol" || string(m.BodySection[2].Bytes) != "Subject: lunch?\r\n\r\n" || len(stored(m.Flags)) != 0 {
		t.Fatalf("FETCH = %+v, sections %q", m, [][]byte{m.BodySection[0].Bytes, m.BodySection[1].Bytes, m.BodySection[2].Bytes})
	}

	// IDLE on front end 2 sees an APPEND made through front end 1.
	idle, err := c2.Idle()
	if err != nil {
		t.Fatal(err)
	}
	appendMsg(t, c1, "INBOX", []byte("Subject: second\r\n\r\nmore\r\n"), imap.FlagSeen)
	waitFor(t, "EXISTS 2 during IDLE", func() bool { u.mu.Lock(); defer u.mu.Unlock(); return slices.Contains(u.exists, 2) })
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	idle.Wait()

	// STORE through 1, seen by the next FETCH through 2, in canonical case.
	if _, err := c1.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{`\flagged`, `\deleted`}, Silent: true}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	// A NOOP on 2 reports the change unasked (FETCH FLAGS), once.
	if err := c2.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	u.mu.Lock()
	var reported []string
	for _, u := range u.flags {
		if u.SeqNum == 1 {
			reported = append(reported, fmt.Sprint(stored(u.Flags)))
		}
	}
	u.mu.Unlock()
	if !slices.Equal(reported, []string{`[\Deleted \Flagged]`}) {
		t.Fatalf("flag changes reported to the other front end's client at NOOP: %q, want one FETCH (\\Deleted \\Flagged)", reported)
	}
	msgs = fetchAll(t, c2, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true})
	if !slices.Equal(stored(msgs[0].Flags), []imap.Flag{`\Deleted`, `\Flagged`}) {
		t.Fatalf("flags seen by the other front end = %q", msgs[0].Flags)
	}
	// SEARCH through 2.
	sd, err := c2.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil || !slices.Equal(sd.AllUIDs(), []imap.UID{2}) {
		t.Fatalf("UID SEARCH SEEN = %v, %v", sd, err)
	}
	sd, err = c2.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "LUNCH"}}}, nil).Wait()
	if err != nil || !slices.Equal(sd.AllSeqNums(), []uint32{1}) {
		t.Fatalf("SEARCH SUBJECT = %v, %v", sd, err)
	}
	sd, err = c2.Search(&imap.SearchCriteria{Body: []string{"noon"}}, nil).Wait()
	if err != nil || !slices.Equal(sd.AllSeqNums(), []uint32{1}) {
		t.Fatalf("SEARCH BODY = %v, %v", sd, err)
	}
	// EXPUNGE through 1; 2 hears of it at its next NOOP.
	if err := c1.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	u.mu.Lock()
	gotExpunge := slices.Equal(u.expunged, []uint32{1})
	u.mu.Unlock()
	if !gotExpunge {
		t.Fatalf("expunges seen by the other front end: %v", u.expunged)
	}
	st, err := c2.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true, NumUnseen: true}).Wait()
	if err != nil || *st.NumMessages != 1 || st.UIDNext != 3 || *st.NumUnseen != 0 {
		t.Fatalf("STATUS = %+v, %v", st, err)
	}
}

func TestIMAP_MailboxesCopyMove(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f := startFront(t, cl.MasterAddrs(), 1<<20)
	c := login(t, f.imap, "bob", "pw-b", nil)
	for _, name := range []string{"Archive", "Archive/2026", "Work"} {
		if err := c.Create(name, nil).Wait(); err != nil {
			t.Fatalf("CREATE %s: %v", name, err)
		}
	}
	if err := c.Create("Work", nil).Wait(); err == nil {
		t.Fatal("second CREATE succeeded")
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	if !slices.Equal(names, []string{"INBOX", "Archive", "Archive/2026", "Work"}) {
		t.Fatalf("LIST = %q", names)
	}
	for i := range 3 {
		appendMsg(t, c, "INBOX", fmt.Appendf(nil, "Subject: %d\r\n\r\nx\r\n", i))
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cd, err := c.Copy(imap.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil || cd.DestUIDs.String() != "1:2" || cd.SourceUIDs.String() != "1:2" {
		t.Fatalf("COPY = %+v, %v", cd, err)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Nope").Wait(); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Fatalf("COPY to a missing mailbox = %v, want TRYCREATE", err)
	}
	md, err := c.Move(imap.SeqSetNum(3), "Work").Wait()
	if err != nil || md.DestUIDs.String() != "1" {
		t.Fatalf("MOVE = %+v, %v", md, err)
	}
	if err := c.Rename("Archive", "Old", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status("Old/2026", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != 0 {
		t.Fatalf("STATUS of the renamed child = %+v, %v", st, err)
	}
	st, err = c.Status("Old", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != 2 {
		t.Fatalf("STATUS Old = %+v, %v", st, err)
	}
	if err := c.Unsubscribe("Work").Wait(); err != nil {
		t.Fatal(err)
	}
	subs, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil || slices.ContainsFunc(subs, func(l *imap.ListData) bool { return l.Mailbox == "Work" }) {
		t.Fatalf("LIST (SUBSCRIBED) = %v, %v", subs, err)
	}
	if err := c.Delete("Old/2026").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status("Old/2026", &imap.StatusOptions{NumMessages: true}).Wait(); err == nil {
		t.Fatal("STATUS of a deleted mailbox succeeded")
	}
	// A superior deleted while its inferior stays is listed as \Noselect.
	if err := c.Create("Deep/inner", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Deep").Wait(); err != nil {
		t.Fatal(err)
	}
	top, err := c.List("", "%", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(top, func(l *imap.ListData) bool { return l.Mailbox == "Deep" })
	if i < 0 || !slices.Contains(top[i].Attrs, imap.MailboxAttrNoSelect) || !slices.Contains(top[i].Attrs, imap.MailboxAttrHasChildren) {
		t.Fatalf(`LIST "" "%%" = %v, want Deep as \Noselect with children`, top)
	}
	if slices.ContainsFunc(top, func(l *imap.ListData) bool { return l.Mailbox == "Deep/inner" }) {
		t.Fatal(`LIST "" "%" listed an inferior`)
	}
	// SPECIAL-USE: the usual names carry their roles; a wildcard in a
	// name is refused.
	for _, name := range []string{"Sent", "Trash"} {
		if err := c.Create(name, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	special, err := c.List("", "*", &imap.ListOptions{SelectSpecialUse: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var roles []string
	for _, l := range special {
		roles = append(roles, fmt.Sprintf("%s %v", l.Mailbox, l.Attrs))
	}
	if len(special) != 2 || !slices.Contains(special[0].Attrs, imap.MailboxAttrSent) || !slices.Contains(special[1].Attrs, imap.MailboxAttrTrash) {
		t.Fatalf("LIST (SPECIAL-USE) = %q", roles)
	}
	if err := c.Create("a*b", nil).Wait(); err == nil {
		t.Fatal("CREATE of a name with a wildcard succeeded")
	}
}

// LMTP: one status per recipient; an unknown recipient does not fail the
// others; the message arrives byte for byte, however odd its bytes.
func TestLMTP_DeliveryAndOddMessages(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f := startFront(t, cl.MasterAddrs(), 64<<10)
	odd := map[string][]byte{
		"no headers": []byte("just a body line\r\n"),
		"bare LF":    []byte("Subject: lf\n\nline one\nline two\n"),
		"8-bit":      []byte("Subject: caf\xc3\xa9 \xff\r\n\r\nna\xefve \x80\x81\r\n"),
		"long header": append(append([]byte("Subject: "), bytes.Repeat([]byte("x"), 20000)...),
			"\r\n\r\nbody\r\n"...),
		"deep MIME": deepMIME(40),
	}
	c := login(t, f.imap, "alice", "pw-a", nil)
	for name, body := range odd {
		resp, err := deliver(t, f.lmtp, body, "alice@example.com", "nobody@example.com", "bob@localhost")
		if err != nil {
			t.Fatalf("%s: LMTP = %v", name, err)
		}
		if len(resp) != 2 || resp["alice@example.com"] == nil || resp["bob@localhost"] == nil {
			t.Fatalf("%s: per-recipient responses %v", name, resp)
		}
	}
	// The same messages through APPEND, whose literal carries bytes exactly
	// (over LMTP the sender's DATA encoding turns bare LF into CRLF).
	for _, body := range odd {
		appendMsg(t, c, "INBOX", body)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != uint32(2*len(odd)) {
		t.Fatalf("SELECT = %+v, %v", sel, err)
	}
	msgs := fetchAll(t, c, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}, RFC822Size: true, BodyStructure: &imap.FetchItemBodyStructure{}, Envelope: true})
	var got [][]byte
	for _, m := range msgs {
		got = append(got, m.BodySection[0].Bytes)
		if m.RFC822Size != int64(len(m.BodySection[0].Bytes)) {
			t.Fatalf("RFC822.SIZE %d for %d bytes", m.RFC822Size, len(m.BodySection[0].Bytes))
		}
	}
	for name, body := range odd {
		delivered := body
		if name == "bare LF" {
			delivered = bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n"))
		}
		for _, want := range [][]byte{body, delivered} {
			if n := len(slices.DeleteFunc(slices.Clone(got), func(g []byte) bool { return !bytes.Equal(g, want) })); n < 1 {
				t.Fatalf("%s: not served back byte for byte", name)
			}
		}
	}
	// Oversize: refused, nothing stored.
	if _, err := deliver(t, f.lmtp, bytes.Repeat([]byte("a"), 65<<10), "alice@localhost"); err == nil || !strings.Contains(err.Error(), "552") {
		t.Fatalf("oversize delivery = %v, want 552", err)
	}
	// An oversize APPEND is refused before the literal is sent, and the
	// connection goes on.
	raw, err := net.Dial("tcp", f.imap)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rd := bufio.NewReader(raw)
	rd.ReadString('\n') // greeting
	fmt.Fprintf(raw, "a LOGIN alice pw-a\r\nb APPEND INBOX {%d}\r\n", 65<<10)
	var lines []string
	for !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "b ") }) {
		l, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("after an oversize APPEND: %v (read %q)", err, lines)
		}
		lines = append(lines, l)
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "b NO [TOOBIG]") {
		t.Fatalf("oversize APPEND answered %q", last)
	}
	fmt.Fprintf(raw, "c NOOP\r\n")
	for {
		l, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("connection after a refused APPEND: %v", err)
		}
		if strings.HasPrefix(l, "c ") {
			if !strings.HasPrefix(l, "c OK") {
				t.Fatalf("NOOP after a refused APPEND = %q", l)
			}
			break
		}
	}
	if st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil || *st.NumMessages != uint32(2*len(odd)) {
		t.Fatalf("messages after refused ones: %+v, %v", st, err)
	}
}

func deepMIME(depth int) []byte {
	var b bytes.Buffer
	b.WriteString("Subject: deep\r\nMIME-Version: 1.0\r\n")
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ninnermost\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.Bytes()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rais-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// nonLoopback returns an address of this machine that is not loopback,
// or "" if it has none.
func nonLoopback() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}

// Off loopback, a password goes only over TLS: LOGIN in the clear is
// refused, STARTTLS then LOGIN or AUTHENTICATE PLAIN works; LMTP offers
// STARTTLS too.
func TestIMAP_TLSAndPlaintextPolicy(t *testing.T) {
	host := nonLoopback()
	if host == "" {
		t.Skip("no non-loopback address to test the plaintext policy on")
	}
	cl := testcluster.Start(t, testcluster.Options{})
	f := startFrontOn(t, cl.MasterAddrs(), 1<<20, host, selfSigned(t))
	plain, err := imapclient.DialInsecure(f.imap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Login("alice", "pw-a").Wait(); err == nil || !strings.Contains(err.Error(), "PRIVACYREQUIRED") {
		t.Fatalf("LOGIN in the clear from %s = %v, want NO [PRIVACYREQUIRED]", host, err)
	}
	clientTLS := &tls.Config{InsecureSkipVerify: true}
	c, err := imapclient.DialStartTLS(f.imap, &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer c.Close()
	if err := c.Login("alice", "pw-a").Wait(); err != nil {
		t.Fatalf("LOGIN over TLS: %v", err)
	}
	appendMsg(t, c, "INBOX", []byte(simple))
	c2, err := imapclient.DialStartTLS(f.imap, &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Authenticate(sasl.NewPlainClient("", "alice", "pw-a")); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN over TLS: %v", err)
	}
	if err := c2.Authenticate(sasl.NewPlainClient("", "alice", "pw-a")); err == nil {
		t.Fatal("a second AUTHENTICATE succeeded")
	}
	c3, err := imapclient.DialStartTLS(f.imap, &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := c3.Authenticate(sasl.NewPlainClient("", "alice", "wrong")); err == nil {
		t.Fatal("AUTHENTICATE PLAIN with a wrong password succeeded")
	}
	// LMTP: STARTTLS by hand (go-smtp's client starts TLS only for SMTP).
	conn, err := net.Dial("tcp", f.lmtp)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(conn)
	expect := func(code string) string {
		t.Helper()
		var all string
		for {
			l, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("LMTP: %v after %q", err, all)
			}
			all += l
			if len(l) < 4 || !strings.HasPrefix(l, code) {
				t.Fatalf("LMTP: got %q, want %s", all, code)
			}
			if l[3] == ' ' {
				return all
			}
		}
	}
	expect("220")
	fmt.Fprintf(conn, "LHLO test\r\n")
	if caps := expect("250"); !strings.Contains(caps, "STARTTLS") {
		t.Fatalf("LMTP does not offer STARTTLS: %q", caps)
	}
	fmt.Fprintf(conn, "STARTTLS\r\n")
	expect("220")
	tc := tls.Client(conn, clientTLS)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("LMTP TLS handshake: %v", err)
	}
	rd = bufio.NewReader(tc)
	conn = tc
	for _, step := range [][2]string{{"LHLO test", "250"}, {"MAIL FROM:<a@example.com>", "250"}, {"RCPT TO:<bob@localhost>", "250"}, {"DATA", "354"}} {
		fmt.Fprintf(conn, "%s\r\n", step[0])
		expect(step[1])
	}
	fmt.Fprintf(conn, "%s.\r\n", simple)
	expect("250") // one status for the one recipient: delivered over TLS
}

// Bulk fetches and body searches read bodies ahead in parallel: the
// answers still come in order, each with its own bytes, and a search that
// decides without a body does not stall the read-ahead.
func TestIMAP_BulkFetchAndBodySearch(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f := startFront(t, cl.MasterAddrs(), 4<<20)
	c := login(t, f.imap, "alice", "pw-a", nil)
	const n = 120
	bodies := map[imap.UID][]byte{}
	for i := range n {
		b := fmt.Appendf(nil, "Subject: m%d\r\n\r\n%s\r\n", i, strings.Repeat(fmt.Sprintf("line %d ", i), 1+i%50))
		if i%10 == 3 {
			b = append(b, "needle\r\n"...)
		}
		if i == 7 {
			b = append(b, bytes.Repeat([]byte("big "), 400<<10)...) // larger than the read-ahead takes
		}
		var flags []imap.Flag
		if i%2 == 1 {
			flags = append(flags, imap.FlagFlagged)
		}
		a := appendMsg(t, c, "INBOX", b, flags...)
		bodies[a.UID] = b
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, c, imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}, BodyStructure: &imap.FetchItemBodyStructure{}})
	if len(msgs) != n {
		t.Fatalf("bulk FETCH returned %d messages", len(msgs))
	}
	for i, m := range msgs {
		if m.SeqNum != uint32(i+1) || !bytes.Equal(m.BodySection[0].Bytes, bodies[m.UID]) {
			t.Fatalf("message %d (UID %d): wrong bytes or order", m.SeqNum, m.UID)
		}
	}
	// FLAGGED first: most messages are decided without their body.
	sd, err := c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}, Body: []string{"needle"}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	var want []imap.UID
	for uid, b := range bodies {
		if uid%2 == 0 && bytes.Contains(b, []byte("needle")) { // message i has UID i+1: odd i is flagged
			want = append(want, uid)
		}
	}
	slices.Sort(want)
	if got := sd.AllUIDs(); !slices.Equal(got, want) {
		t.Fatalf("SEARCH FLAGGED BODY needle = %v, want %v", got, want)
	}
}

// /healthz says whether the cluster answers; /metrics counts what the
// front end did.
func TestHTTP_HealthAndMetrics(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f := startFront(t, cl.MasterAddrs(), 1<<20)
	login(t, f.imap, "alice", "pw-a", nil)
	if _, err := deliver(t, f.lmtp, []byte(simple), "alice@localhost", "nobody@localhost"); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(f.srv.HTTPHandler())
	defer hs.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	_, m := get("/metrics")
	for _, want := range []string{`rais_imap_logins_total{result="ok"} 1`, `rais_lmtp_recipients_total{result="delivered"} 1`,
		`rais_lmtp_recipients_total{result="unknown user"} 1`, `rais_imap_sessions 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, s := range cl.Masters {
		s.Close()
	}
	if code, _ := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz with every master down = %d, want 503", code)
	}
}

// Searches by sequence and UID sets, alone and nested in NOT and OR, with
// "*" and after an expunge (sequence numbers and UIDs then differ).
func TestIMAP_SearchBySets(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f := startFront(t, cl.MasterAddrs(), 1<<20)
	c := login(t, f.imap, "alice", "pw-a", nil)
	for i := range 6 {
		var flags []imap.Flag
		if i%2 == 1 {
			flags = append(flags, imap.FlagFlagged)
		}
		appendMsg(t, c, "INBOX", fmt.Appendf(nil, "Subject: %d\r\n\r\nbody\r\n", i), flags...)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// Expunge UID 1: sequence n is then UID n+1.
	if _, err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	seqs := func(ss ...uint32) imap.SeqSet { return imap.SeqSetNum(ss...) }
	for _, tc := range []struct {
		name string
		c    imap.SearchCriteria
		want []imap.UID
	}{
		{"2:4", imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 2, Stop: 4}}}}, []imap.UID{3, 4, 5}},
		{"UID 4:*", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 4, Stop: 0}}}}, []imap.UID{4, 5, 6}},
		{"NOT 1:2", imap.SearchCriteria{Not: []imap.SearchCriteria{{SeqNum: []imap.SeqSet{{{Start: 1, Stop: 2}}}}}}, []imap.UID{4, 5, 6}},
		{"OR 1 5", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{SeqNum: []imap.SeqSet{seqs(1)}}, {SeqNum: []imap.SeqSet{seqs(5)}}}}}, []imap.UID{2, 6}},
		{"2:* FLAGGED", imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 2, Stop: 0}}}, Flag: []imap.Flag{imap.FlagFlagged}}, []imap.UID{4, 6}},
		{"UID 2:5 NOT UID 3", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 2, Stop: 5}}}, Not: []imap.SearchCriteria{{UID: []imap.UIDSet{imap.UIDSetNum(3)}}}}, []imap.UID{2, 4, 5}},
	} {
		sd, err := c.UIDSearch(&tc.c, nil).Wait()
		if err != nil {
			t.Fatalf("SEARCH %s: %v", tc.name, err)
		}
		if got := sd.AllUIDs(); !slices.Equal(got, tc.want) {
			t.Errorf("UID SEARCH %s = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A STORE decided on a session's picture that another front end has made
// stale: a change fails its compare and is made on the current flags; a
// change that looks like a no-op on the stale picture is checked, and made.
func TestIMAP_StoreOnAStalePicture(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f1, f2 := startFront(t, cl.MasterAddrs(), 1<<20), startFront(t, cl.MasterAddrs(), 1<<20)
	c1 := login(t, f1.imap, "alice", "pw-a", nil)
	c2 := login(t, f2.imap, "alice", "pw-a", nil)
	appendMsg(t, c1, "INBOX", []byte("Subject: one\r\n\r\n1\r\n"), imap.FlagFlagged)
	appendMsg(t, c1, "INBOX", []byte("Subject: two\r\n\r\n2\r\n"))
	for _, c := range []*imapclient.Client{c1, c2} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	store := func(c *imapclient.Client, uid imap.UID, op imap.StoreFlagsOp, f imap.Flag) []imap.Flag {
		t.Helper()
		msgs, err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: op, Flags: []imap.Flag{f}}, nil).Collect()
		if err != nil || len(msgs) != 1 {
			t.Fatalf("UID STORE %d: %d messages, %v", uid, len(msgs), err)
		}
		return stored(msgs[0].Flags)
	}
	// Through 2: 1 loses \Flagged, 2 gains \Seen. 1 has not looked since.
	store(c2, 1, imap.StoreFlagsDel, imap.FlagFlagged)
	store(c2, 2, imap.StoreFlagsAdd, imap.FlagSeen)

	if got := store(c1, 1, imap.StoreFlagsAdd, imap.FlagFlagged); !slices.Equal(got, []imap.Flag{imap.FlagFlagged}) {
		t.Errorf("STORE +\\Flagged on a picture that already had it: flags %v", got)
	}
	if got := store(c1, 2, imap.StoreFlagsAdd, imap.FlagAnswered); !slices.Equal(got, []imap.Flag{imap.FlagAnswered, imap.FlagSeen}) {
		t.Errorf("STORE +\\Answered on a stale picture: flags %v, want \\Answered \\Seen", got)
	}
	msgs := fetchAll(t, c2, imap.UIDSet{{Start: 1, Stop: 2}}, &imap.FetchOptions{UID: true, Flags: true})
	want := map[imap.UID][]imap.Flag{1: {imap.FlagFlagged}, 2: {imap.FlagAnswered, imap.FlagSeen}}
	for _, m := range msgs {
		if !slices.Equal(m.Flags, want[m.UID]) {
			t.Errorf("UID %d as the other front end sees it: %v, want %v", m.UID, m.Flags, want[m.UID])
		}
	}
}

// metric reads one counter from the front end's /metrics.
func metric(t *testing.T, f *front, series string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	f.srv.HTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var x float64
			fmt.Sscan(v, &x)
			return x
		}
	}
	return 0
}

// A session catches up with deliveries and flag changes made through
// another front end by reading only the index entries that changed; an
// expunge elsewhere makes it read the whole mailbox. Either way it ends
// with what a fresh session sees.
func TestIMAP_SessionReadsOnlyWhatChanged(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f1, f2 := startFront(t, cl.MasterAddrs(), 1<<20), startFront(t, cl.MasterAddrs(), 1<<20)
	c1 := login(t, f1.imap, "alice", "pw-a", nil)
	u := &unsolicited{}
	c2 := login(t, f2.imap, "alice", "pw-a", u.handler(t))
	for i := range 5 {
		appendMsg(t, c1, "INBOX", fmt.Appendf(nil, "Subject: %d\r\n\r\nbody\r\n", i))
	}
	for _, c := range []*imapclient.Client{c1, c2} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	flags := func(c *imapclient.Client) map[imap.UID][]imap.Flag {
		t.Helper()
		out := map[imap.UID][]imap.Flag{}
		for _, m := range fetchAll(t, c, imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}) {
			out[m.UID] = stored(m.Flags)
		}
		return out
	}
	noop := func() {
		t.Helper()
		if err := c2.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
	}
	changes0, full0 := metric(t, f2, `rais_imap_mailbox_reads_total{kind="changes"}`), metric(t, f2, `rais_imap_mailbox_reads_total{kind="full"}`)

	// A delivery and a flag change through 1.
	if _, err := deliver(t, f1.lmtp, []byte("Subject: new\r\n\r\nhi\r\n"), "alice@localhost"); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	noop()
	u.mu.Lock()
	gotExists := slices.Contains(u.exists, 6)
	u.mu.Unlock()
	if !gotExists {
		t.Fatalf("EXISTS after a delivery elsewhere: %v, want 6", u.exists)
	}
	if d := metric(t, f2, `rais_imap_mailbox_reads_total{kind="changes"}`) - changes0; d < 1 {
		t.Errorf("no read of only the changed entries after a delivery and a flag change")
	}
	if d := metric(t, f2, `rais_imap_mailbox_reads_total{kind="full"}`) - full0; d != 0 {
		t.Errorf("%v whole-mailbox reads after a delivery and a flag change, want 0", d)
	}
	if got, want := flags(c2), flags(c1); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("flags seen by 2: %v, by 1: %v", got, want)
	}

	// An expunge and a delivery through 1: the count tells, 2 reads all.
	if _, err := c1.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if err := c1.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := deliver(t, f1.lmtp, []byte("Subject: newer\r\n\r\nhi\r\n"), "alice@localhost"); err != nil {
		t.Fatal(err)
	}
	full1 := metric(t, f2, `rais_imap_mailbox_reads_total{kind="full"}`)
	noop()
	u.mu.Lock()
	gotExpunge, gotExists := slices.Equal(u.expunged, []uint32{3}), slices.Contains(u.exists, 6) && u.exists[len(u.exists)-1] == 6
	u.mu.Unlock()
	if !gotExpunge || !gotExists {
		t.Fatalf("after an expunge and a delivery elsewhere: EXPUNGE %v (want [3]), EXISTS %v (want last 6)", u.expunged, u.exists)
	}
	if d := metric(t, f2, `rais_imap_mailbox_reads_total{kind="full"}`) - full1; d != 1 {
		t.Errorf("%v whole-mailbox reads after an expunge elsewhere, want 1", d)
	}
	fresh := login(t, f1.imap, "alice", "pw-a", nil)
	if _, err := fresh.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if got, want := flags(c2), flags(fresh); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("flags seen by 2: %v, by a new session: %v", got, want)
	}
}

// unsolicited collects what a server sends a client unasked: EXISTS
// counts, EXPUNGEd sequence numbers and FETCH (flag) updates.
type unsolicited struct {
	mu       sync.Mutex
	exists   []uint32
	expunged []uint32
	flags    []*imapclient.FetchMessageBuffer
}

func (u *unsolicited) handler(t *testing.T) *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				u.mu.Lock()
				u.exists = append(u.exists, *d.NumMessages)
				u.mu.Unlock()
			}
		},
		Expunge: func(seq uint32) { u.mu.Lock(); u.expunged = append(u.expunged, seq); u.mu.Unlock() },
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, err := m.Collect()
			if err != nil {
				t.Errorf("unilateral FETCH: %v", err)
				return
			}
			u.mu.Lock()
			u.flags = append(u.flags, buf)
			u.mu.Unlock()
		},
	}
}

// With mailbox records cached by each front end, a flag changed through
// one front end is seen by the very next command on another, every time:
// the cache is dropped before the change is made.
func TestIMAP_FlagChangesCrossFrontEndsAtOnce(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f1, f2 := startFront(t, cl.MasterAddrs(), 1<<20), startFront(t, cl.MasterAddrs(), 1<<20)
	c1 := login(t, f1.imap, "alice", "pw-a", nil)
	c2 := login(t, f2.imap, "alice", "pw-a", nil)
	a := appendMsg(t, c1, "INBOX", []byte(simple))
	for _, c := range []*imapclient.Client{c1, c2} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	uid := imap.UIDSetNum(a.UID)
	for i := range 30 {
		op := imap.StoreFlagsAdd
		if i%2 == 1 {
			op = imap.StoreFlagsDel
		}
		if _, err := c1.Store(uid, &imap.StoreFlags{Op: op, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Collect(); err != nil {
			t.Fatal(err)
		}
		// Two reads on the other front end: the first after the change,
		// the second (most likely) from its cache.
		for range 2 {
			msgs, err := c2.Fetch(uid, &imap.FetchOptions{Flags: true, UID: true}).Collect()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("FETCH: %v, %v", msgs, err)
			}
			if has := slices.Contains(msgs[0].Flags, imap.FlagFlagged); has != (op == imap.StoreFlagsAdd) {
				t.Fatalf("round %d: after STORE %v through one front end, the other read flags %v", i, op, msgs[0].Flags)
			}
		}
	}
}

// IDLE on one front end hears of a delivery through another at once (the
// leader's invalidation wakes it), not at its next poll: here the poll
// interval is an hour.
func TestIMAP_IdleIsWokenByChangesElsewhere(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f1 := startFront(t, cl.MasterAddrs(), 1<<20)
	f2 := startFrontWith(t, cl.MasterAddrs(), func(cfg *mailfront.Config) { cfg.IdleInterval = time.Hour })
	c1 := login(t, f1.imap, "alice", "pw-a", nil)
	u := &unsolicited{}
	c2 := login(t, f2.imap, "alice", "pw-a", u.handler(t))
	appendMsg(t, c1, "INBOX", []byte(simple))
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c2.Idle()
	if err != nil {
		t.Fatal(err)
	}
	for n := uint32(2); n <= 4; n++ {
		appendMsg(t, c1, "INBOX", []byte("Subject: more\r\n\r\nmore\r\n"))
		waitFor(t, fmt.Sprintf("EXISTS %d during IDLE", n), func() bool { u.mu.Lock(); defer u.mu.Unlock(); return slices.Contains(u.exists, n) })
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	idle.Wait()
}

// Sections of odd messages through a real IMAP client: HEADER and TEXT
// put the stored message back together, HEADER.FIELDS keeps the stored
// lines, and a malformed header line hides no field after it from
// ENVELOPE or SEARCH.
func TestIMAP_SectionsAreTheStoredBytes(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f := startFront(t, cl.MasterAddrs(), 64<<10)
	c := login(t, f.imap, "alice", "pw-a", nil)
	msgs := []string{
		"no headers at all, just a line\r\n",
		"From: a@b\r\nthis line is no field\r\nSubject: after it\r\n\r\nbody\r\n",
		"Subject:  folded\n\tover lines \nX-Odd : v\r\n\r\nbare\nLF\n",
		"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n hello\r\n\r\nencoded\r\n",
	}
	for _, m := range msgs {
		appendMsg(t, c, "INBOX", []byte(m))
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	header := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	text := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Peek: true}
	subject := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}
	got := fetchAll(t, c, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		BodySection: []*imap.FetchItemBodySection{header, text, subject}, Envelope: true,
	})
	if len(got) != len(msgs) {
		t.Fatalf("fetched %d messages, want %d", len(got), len(msgs))
	}
	wantSubject := []string{"\r\n", "Subject: after it\r\n\r\n", "Subject:  folded\n\tover lines \n\r\n",
		"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n hello\r\n\r\n"}
	for i, m := range got {
		h, b := m.FindBodySection(header), m.FindBodySection(text)
		if string(h)+string(b) != msgs[i] {
			t.Errorf("message %d: HEADER %q + TEXT %q, stored %q", i+1, h, b, msgs[i])
		}
		if s := string(m.FindBodySection(subject)); s != wantSubject[i] {
			t.Errorf("message %d: HEADER.FIELDS (Subject) = %q, want %q", i+1, s, wantSubject[i])
		}
	}
	// Partial TEXT, message by message (a range read after the header
	// block), including a range past the end.
	for i, m := range msgs {
		text := m[mailstore.HeaderBlockLen([]byte(m)):]
		for _, p := range []imap.SectionPartial{{Offset: 2, Size: 3}, {Offset: 0, Size: 1 << 20}, {Offset: 1 << 20, Size: 1}} {
			bs := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Partial: &p, Peek: true}
			f := fetchAll(t, c, imap.SeqSetNum(uint32(i+1)), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{bs}})
			want := text[min(int(p.Offset), len(text)):min(int(p.Offset+p.Size), len(text))]
			if g := string(f[0].FindBodySection(bs)); len(f) != 1 || g != want {
				t.Errorf("message %d: TEXT<%d.%d> = %q, want %q", i+1, p.Offset, p.Size, g, want)
			}
		}
	}
	if s := got[1].Envelope.Subject; s != "after it" {
		t.Errorf("ENVELOPE subject after a malformed line = %q", s)
	}
	// ENVELOPE carries the subject as stored, unfolded (the client decodes
	// it; go-imap's client does, so this one looks at the wire).
	if out := rawIMAP(t, f.imap, "LOGIN alice pw-a", "SELECT INBOX", "FETCH 4 (ENVELOPE)"); !strings.Contains(out, `"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= hello"`) {
		t.Errorf("ENVELOPE does not carry the stored subject:\n%s", out)
	}
	res, err := c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "after it"}}}, nil).Wait()
	if err != nil || !slices.Equal(res.AllSeqNums(), []uint32{2}) {
		t.Errorf("SEARCH SUBJECT after a malformed line = %v, %v; want [2]", res.AllSeqNums(), err)
	}
}

// rawIMAP sends cmds over a new connection, one by one, and returns every
// line the server answered.
func rawIMAP(t *testing.T, addr string, cmds ...string) string {
	t.Helper()
	r := dialRaw(t, addr)
	var out strings.Builder
	for _, cmd := range cmds {
		out.WriteString(r.cmd(cmd))
	}
	return out.String()
}

// rawSession is an IMAP connection spoken to line by line.
type rawSession struct {
	t   *testing.T
	c   net.Conn
	rd  *bufio.Reader
	tag int
}

func dialRaw(t *testing.T, addr string) *rawSession {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := &rawSession{t: t, c: c, rd: bufio.NewReader(c)}
	if _, err := r.rd.ReadString('\n'); err != nil { // greeting
		t.Fatal(err)
	}
	return r
}

// cmd sends one command and returns every line answered to it, the
// tagged one last.
func (r *rawSession) cmd(cmd string) string {
	r.t.Helper()
	r.tag++
	tag := fmt.Sprintf("t%d", r.tag)
	fmt.Fprintf(r.c, "%s %s\r\n", tag, cmd)
	var out strings.Builder
	for {
		l, err := r.rd.ReadString('\n')
		if err != nil {
			r.t.Fatalf("after %q: %v (read %q)", cmd, err, out.String())
		}
		out.WriteString(l)
		if strings.HasPrefix(l, tag+" ") {
			return out.String()
		}
	}
}

// ENVELOPE on the wire: groups as start and end markers, a comment as the
// name of a mailbox without a display name, an empty Sender taken from
// From, a missing domain marked.
func TestIMAP_EnvelopeAddresses(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	f := startFront(t, cl.MasterAddrs(), 64<<10)
	c := login(t, f.imap, "alice", "pw-a", nil)
	appendMsg(t, c, "INBOX", []byte("Date: Thu, 01 Feb 2007 01:02:03 +0200\r\nFrom: user@example.org (Real Name)\r\nSender: \r\n"+
		"To: group: g1@d1.org, g2@d2.org;, Other <o@d3.org>\r\nCc: root\r\n\r\nbody\r\n"))
	out := rawIMAP(t, f.imap, "LOGIN alice pw-a", "EXAMINE INBOX", "FETCH 1 (ENVELOPE)")
	want := `ENVELOPE ("Thu, 01 Feb 2007 01:02:03 +0200" NIL (("Real Name" NIL "user" "example.org")) (("Real Name" NIL "user" "example.org")) ` +
		`(("Real Name" NIL "user" "example.org")) ((NIL NIL "group" NIL) (NIL NIL "g1" "d1.org") (NIL NIL "g2" "d2.org") (NIL NIL NIL NIL) ` +
		`("Other" NIL "o" "d3.org")) ((NIL NIL "root" "MISSING_DOMAIN")) NIL NIL NIL)`
	if !strings.Contains(out, want) {
		t.Errorf("want %s in\n%s", want, out)
	}
}
