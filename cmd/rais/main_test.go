package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/raisfs/raisfs/mailfront"
)

// raisBinary builds the rais command once per test binary run.
func raisBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rais-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "rais")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a running `rais` process.
type proc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	addr   string
	done   chan error
}

func startChunkServer(t *testing.T, args ...string) *proc {
	t.Helper()
	p, addr := startProc(t, "RAIS_CHUNKSERVER=", append([]string{"chunkserver"}, args...)...)
	p.addr = addr
	return p
}

func (p *proc) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("process did not exit: %s", p.stderr.String())
		return nil
	}
}

func do(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestChunkServerProcess_PersistsAcrossCleanRestart(t *testing.T) {
	dir1, dir2 := t.TempDir(), t.TempDir()
	p := startChunkServer(t, "--id", "cs1", "--dir", dir1+","+dir2, "--addr", "127.0.0.1:0")
	base := "http://" + p.addr
	if code, _ := do(t, "PUT", base+"/v1/volumes/1", nil); code != 204 {
		t.Fatalf("create volume = %d", code)
	}
	msg := []byte("From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n")
	h := fmt.Sprintf("%x", blake3.Sum256(msg))
	if code, b := do(t, "PUT", base+"/v1/volumes/1/blobs/"+h, msg); code != 201 {
		t.Fatalf("put = %d %s", code, b)
	}
	// A second server on the same dirs is refused.
	second := exec.Command(raisBinary(t), "chunkserver", "--id", "cs2", "--dir", dir1, "--addr", "127.0.0.1:0")
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "another process") {
		t.Fatalf("second server on same dir: %v\n%s", err, out)
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM = %v\n%s", err, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "shutting down") {
		t.Fatalf("no clean shutdown logged:\n%s", p.stderr.String())
	}

	p2 := startChunkServer(t, "--id", "cs1", "--dir", dir1+","+dir2, "--addr", "127.0.0.1:0")
	code, got := do(t, "GET", "http://"+p2.addr+"/v1/volumes/1/blobs/"+h, nil)
	if code != 200 || !bytes.Equal(got, msg) {
		t.Fatalf("get after restart = %d %q", code, got)
	}
	p2.cmd.Process.Signal(os.Interrupt)
	if err := p2.wait(t); err != nil {
		t.Fatalf("exit after SIGINT = %v", err)
	}
}

// kill -9 mid-stream: every acknowledged put survives.
func TestChunkServerProcess_AcknowledgedPutsSurviveKill(t *testing.T) {
	dir := t.TempDir()
	p := startChunkServer(t, "--id", "cs1", "--dir", dir, "--addr", "127.0.0.1:0")
	base := "http://" + p.addr
	do(t, "PUT", base+"/v1/volumes/1", nil)
	acked := map[string][]byte{}
	for i := range 200 {
		msg := bytes.Repeat([]byte(fmt.Sprintf("message %d ", i)), 50+i)
		h := fmt.Sprintf("%x", blake3.Sum256(msg))
		if code, _ := do(t, "PUT", base+"/v1/volumes/1/blobs/"+h, msg); code == 201 {
			acked[h] = msg
		}
	}
	p.cmd.Process.Kill()
	p.wait(t)
	p2 := startChunkServer(t, "--id", "cs1", "--dir", dir, "--addr", "127.0.0.1:0")
	for h, msg := range acked {
		code, got := do(t, "GET", "http://"+p2.addr+"/v1/volumes/1/blobs/"+h, nil)
		if code != 200 || !bytes.Equal(got, msg) {
			t.Fatalf("acknowledged blob %s after kill -9: %d", h, code)
		}
	}
}

func TestChunkServerProcess_BadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"chunkserver"},
		{"chunkserver", "--id", "../x", "--dir", t.TempDir()},
		{"chunkserver", "--id", "a"},
		{"chunkserver", "--id", "a", "--dir", t.TempDir(), "extra"},
		{"nosuchcommand"},
	} {
		out, err := exec.Command(raisBinary(t), args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("rais %v: %v, want exit 2\n%s", args, err, out)
		}
	}
	out, err := exec.Command(raisBinary(t), "chunkserver", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--dir") && !strings.Contains(string(out), "-dir") {
		t.Errorf("--help: %v\n%s", err, out)
	}
}

func TestHashCommand(t *testing.T) {
	cmd := exec.Command(raisBinary(t), "hash")
	cmd.Stdin = strings.NewReader("abc")
	out, err := cmd.Output()
	want := fmt.Sprintf("%x\n", blake3.Sum256([]byte("abc")))
	if err != nil || string(out) != want {
		t.Fatalf("rais hash = %q, %v; want %q", out, err, want)
	}
}

// rais imap's users watcher: a user added to the file can log in within
// the check interval; SIGHUP reloads at once even when the file looks
// unchanged; a file that does not parse leaves the users as they were.
func TestWatchUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := mailfront.AddUser(path, "ann", "pw"); err != nil {
		t.Fatal(err)
	}
	users, err := mailfront.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchUsers(ctx, users, hup, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() { cancel(); <-done }()
	if err := mailfront.AddUser(path, "bob", "pw"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "bob to be loaded", func() bool { return users.Exists("bob") })
	// Broken: nothing changes.
	good, _ := os.ReadFile(path)
	os.WriteFile(path, append(good, []byte("carl:x\n")...), 0o600)
	// The channel holds one signal: the third send returns only once the
	// watcher has finished the reload the first one asked for.
	for range 3 {
		hup <- syscall.SIGHUP
	}
	if !users.Exists("bob") || users.Exists("carl") || users.Len() != 2 {
		t.Fatalf("a broken users file was applied (%d users)", users.Len())
	}
	// Repaired, and bob removed: loaded again.
	if err := os.WriteFile(path, bytes.Join(bytes.Split(good, []byte("\n"))[:1], nil), 0o600); err != nil {
		t.Fatal(err)
	}
	hup <- syscall.SIGHUP
	waitFor(t, 10*time.Second, "bob's removal to be loaded", func() bool { return !users.Exists("bob") && users.Exists("ann") })
}

func TestDevLayout_OldMailAddressesMoved(t *testing.T) {
	var l devLayout
	old := `{"masters":[],"chunkservers":[],"mail":{"id":"imap1","api":"127.0.0.1:1143","http":"127.0.0.1:1024"}}`
	if err := json.Unmarshal([]byte(old), &l); err != nil {
		t.Fatal(err)
	}
	l.Mail.upgrade()
	if want := (devMail{ID: "imap1", IMAP: "127.0.0.1:1143", LMTP: "127.0.0.1:1024"}); *l.Mail != want {
		t.Fatalf("upgraded %+v, want %+v", *l.Mail, want)
	}
	l.Mail.HTTPAddr = "127.0.0.1:8080"
	l.Mail.upgrade() // a current layout is left as it is
	if l.Mail.IMAP != "127.0.0.1:1143" || l.Mail.LMTP != "127.0.0.1:1024" || l.Mail.HTTPAddr != "127.0.0.1:8080" {
		t.Fatalf("current layout changed: %+v", *l.Mail)
	}
}
