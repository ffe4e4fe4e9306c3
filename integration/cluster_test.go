package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raisfs/raisfs/client"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds rais and raisadm once per test run.
func binaries(t *testing.T) (rais, raisadm string) {
	t.Helper()
	if testing.Short() {
		t.Skip("process-level integration test; skipped with -short")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "rais-integration")
		if buildErr != nil {
			return
		}
		for _, c := range []string{"rais", "raisadm"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, c), "../cmd/"+c).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", c, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "rais"), filepath.Join(binDir, "raisadm")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// devCluster is a `rais dev` process and its children.
type devCluster struct {
	t       *testing.T
	dir     string
	cmd     *exec.Cmd
	out     *syncBuffer
	masters string
	imap    string // the mail front end's IMAP and LMTP addresses
	lmtp    string
	pids    map[string]int
	done    chan error
	raisadm string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startDev(t *testing.T, dir string, extra ...string) *devCluster {
	t.Helper()
	rais, raisadm := binaries(t)
	chunkservers := 4
	for i, a := range extra {
		if a == "--chunkservers" {
			chunkservers, _ = strconv.Atoi(extra[i+1])
		}
	}
	cmd := exec.Command(rais, append([]string{"dev", "--dir", dir, "--chunkservers", "4"}, extra...)...)
	// If the test binary dies (a timeout, a kill), the cluster goes with it
	// (rais dev's children follow it the same way).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out := &syncBuffer{}
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(out, pw)
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &devCluster{t: t, dir: dir, cmd: cmd, out: out, pids: map[string]int{}, done: make(chan error, 1), raisadm: raisadm}
	go func() { d.done <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { d.stop() })
	sc := bufio.NewScanner(pr)
	deadline := time.After(30 * time.Second)
	lines := make(chan string)
	go func() {
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for d.masters == "" || d.imap == "" || len(d.pids) < 3+chunkservers+1 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("rais dev exited: %s", out.String())
			}
			if m, ok := strings.CutPrefix(l, "RAIS_MASTERS="); ok {
				d.masters = m
			}
			if a, ok := strings.CutPrefix(l, "RAIS_IMAP="); ok {
				d.imap = a
			}
			if a, ok := strings.CutPrefix(l, "RAIS_LMTP="); ok {
				d.lmtp = a
			}
			if f := strings.Fields(l); len(f) >= 4 && f[2] == "pid" {
				d.pids[f[0]], _ = strconv.Atoi(f[3])
			}
		case <-deadline:
			t.Fatalf("rais dev did not start: %s", out.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	d.waitHealthy(chunkservers)
	return d
}

// kill sends sig to rais dev's child name. It refuses an unknown name:
// kill(0, ...) would signal the whole process group, tests included.
func (d *devCluster) kill(name string, sig syscall.Signal) {
	d.t.Helper()
	pid := d.pids[name]
	if pid <= 0 {
		d.t.Fatalf("no pid for %s (have %v)", name, d.pids)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		d.t.Fatalf("kill %s (pid %d): %v", name, pid, err)
	}
}

func (d *devCluster) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// adm runs raisadm and returns its stdout and exit code.
func (d *devCluster) adm(stdin io.Reader, args ...string) (string, string, int) {
	cmd := exec.Command(d.raisadm, append([]string{"--timeout", "20s"}, args...)...)
	cmd.Env = append(os.Environ(), "RAIS_MASTERS="+d.masters)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func (d *devCluster) waitHealthy(chunkservers int) {
	d.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, errOut, code := d.adm(nil, "status", "--json")
		if code == 0 && strings.Contains(out, `"leader": true`) && strings.Count(out, `"state": "alive"`) >= chunkservers {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("no leader and %d live chunk servers after 60s; last status (exit %d):\n%s%s\nrais dev printed:\n%s",
				chunkservers, code, out, errOut, d.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leader returns the id of the master that leads now.
func (d *devCluster) leader() string {
	d.t.Helper()
	out, _, _ := d.adm(nil, "status", "--json")
	var st struct {
		Masters []struct {
			ID     string `json:"id"`
			Leader bool   `json:"leader"`
		} `json:"masters"`
	}
	json.Unmarshal([]byte(out), &st)
	for _, m := range st.Masters {
		if m.Leader {
			return m.ID
		}
	}
	d.t.Fatalf("no leader in status: %s", out)
	return ""
}

func (d *devCluster) client() *client.Client {
	c, err := client.New(context.Background(), client.Config{Masters: strings.Split(d.masters, ","), Timeout: 20 * time.Second})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	return c
}

func waitFor(t *testing.T, dl time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(dl)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", dl, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func get(t *testing.T, c *client.Client, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestDev_RaisadmAndSDKEndToEnd(t *testing.T) {
	d := startDev(t, t.TempDir())
	msg := "From: a@example.org\r\nSubject: test\r\n\r\nbody\r\n"
	if out, errOut, code := d.adm(strings.NewReader(msg), "put", "alice/INBOX/1", "-"); code != 0 || !strings.Contains(out, "stored") {
		t.Fatalf("raisadm put = %d %q %q", code, out, errOut)
	}
	if out, _, code := d.adm(nil, "get", "alice/INBOX/1"); code != 0 || out != msg {
		t.Fatalf("raisadm get = %d %q", code, out)
	}
	if out, _, code := d.adm(nil, "stat", "alice/INBOX/1"); code != 0 || !strings.Contains(out, fmt.Sprintf("size:    %d", len(msg))) {
		t.Fatalf("raisadm stat = %d %q", code, out)
	}
	c := d.client()
	ctx := context.Background()
	big := randomBytes(1, 32<<20)
	for k, v := range map[string][]byte{"big": big, "empty": {}} {
		if _, err := c.Put(ctx, k, bytes.NewReader(v), nil); err != nil {
			t.Fatalf("SDK Put(%s) = %v", k, err)
		}
		got, err := get(t, c, k)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("SDK Get(%s) = %d bytes, %v", k, len(got), err)
		}
	}
	file := filepath.Join(t.TempDir(), "out")
	if _, errOut, code := d.adm(nil, "get", "big", "-o", file); code != 0 {
		t.Fatalf("raisadm get -o = %d %s", code, errOut)
	}
	if b, _ := os.ReadFile(file); !bytes.Equal(b, big) {
		t.Fatal("raisadm get -o wrote wrong bytes")
	}
	if out, _, code := d.adm(nil, "ls"); code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("raisadm ls = %d %q", code, out)
	}
	if _, _, code := d.adm(nil, "rm", "alice/INBOX/1"); code != 0 {
		t.Fatal("raisadm rm failed")
	}
	if _, errOut, code := d.adm(nil, "get", "alice/INBOX/1"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("raisadm get of removed key = %d %q, want exit 1, not found", code, errOut)
	}
	if _, _, code := d.adm(nil, "frobnicate"); code != 2 {
		t.Fatalf("raisadm unknown command = %d, want 2", code)
	}
	out, _, code := d.adm(nil, "status", "--json")
	for _, field := range []string{`"masters"`, `"chunkservers"`, `"used_bytes"`, `"free_bytes"`, `"objects": 2`, `"under_replicated": 0`} {
		if code != 0 || !strings.Contains(out, field) {
			t.Fatalf("status --json lacks %s: %s", field, out)
		}
	}

	// The whole cluster stopped and started again: everything reads back.
	d.stop()
	d2 := startDev(t, d.dir)
	c2 := d2.client()
	if got, err := get(t, c2, "big"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big after restart: %d bytes, %v", len(got), err)
	}
	// A second rais dev on the same dir is refused.
	rais, _ := binaries(t)
	outb, err := exec.Command(rais, "dev", "--dir", d.dir).CombinedOutput()
	if err == nil || !strings.Contains(string(outb), "in use") {
		t.Fatalf("second rais dev = %v %s", err, outb)
	}
}

// kill -9 a chunk server, then the master leader, during a stream of puts:
// every acknowledged put reads back, and writes resume.
func TestDev_KillsDuringPuts(t *testing.T) {
	d := startDev(t, t.TempDir())
	c := d.client()
	var mu sync.Mutex
	acked := map[string][]byte{}
	var lastAck time.Time
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("w%d/%d", w, i)
				v := []byte(strings.Repeat(k+" ", 100))
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := c.Put(ctx, k, bytes.NewReader(v), nil)
				cancel()
				if err == nil {
					mu.Lock()
					acked[k] = v
					lastAck = time.Now()
					mu.Unlock()
				}
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitFor(t, 30*time.Second, "puts", func() bool { return count() >= 50 })
	d.kill("cs4", syscall.SIGKILL)
	n := count()
	waitFor(t, 60*time.Second, "puts after killing a chunk server", func() bool { return count() >= n+50 })

	leader := d.leader()
	killed := time.Now()
	d.kill(leader, syscall.SIGKILL)
	n = count()
	waitFor(t, 30*time.Second, "puts after killing the leader", func() bool { return count() > n })
	mu.Lock()
	resumed := lastAck.Sub(killed)
	mu.Unlock()
	t.Logf("killed leader %s; first put acknowledged %s later", leader, resumed.Round(time.Millisecond))
	if resumed > 5*time.Second {
		t.Errorf("writes resumed %s after killing the leader, want within 5 s", resumed)
	}
	waitFor(t, 30*time.Second, "more puts", func() bool { return count() >= n+20 })
	close(stop)
	wg.Wait()
	for k, v := range acked {
		got, err := get(t, c, k)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("acknowledged %s: %v", k, err)
		}
	}
	t.Logf("%d acknowledged puts all read back", len(acked))
}

func TestDev_UnreachableMastersFailWithinTimeout(t *testing.T) {
	_, raisadm := binaries(t)
	start := time.Now()
	cmd := exec.Command(raisadm, "--masters", "127.0.0.1:1", "--timeout", "2s", "stat", "k")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("raisadm with no master = %v %q; want exit 1 and one line", err, out)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("took %s with --timeout 2s", d)
	}
}
