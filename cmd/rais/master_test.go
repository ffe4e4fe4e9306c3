package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raisfs/raisfs/api/masterpb"
)

// freePort asks the kernel for a free loopback port. Masters must know
// each other's Raft addresses before they start, so the port is chosen
// first and handed to the process.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProc starts `rais args...` and waits for a stdout line with prefix.
func startProc(t *testing.T, prefix string, args ...string) (*proc, string) {
	t.Helper()
	cmd := exec.Command(raisBinary(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stderr: &stderr, done: make(chan error, 1)}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				lines <- rest
			}
		}
		io.Copy(io.Discard, stdout)
		close(lines)
	}()
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case err := <-p.done:
			p.done <- err
		case <-time.After(10 * time.Second):
		}
	})
	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatalf("rais %v exited early: %s", args, stderr.String())
		}
		return p, line
	case <-time.After(30 * time.Second):
		t.Fatalf("rais %v did not start: %s", args, stderr.String())
	}
	return nil, ""
}

func TestMasterProcesses_FailoverAndCleanShutdown(t *testing.T) {
	var peers []string
	raft := map[string]string{}
	api := map[string]string{}
	for _, id := range []string{"m1", "m2", "m3"} {
		raft[id], api[id] = freePort(t), freePort(t)
		peers = append(peers, id+"="+raft[id])
	}
	procs := map[string]*proc{}
	for _, id := range []string{"m1", "m2", "m3"} {
		procs[id], _ = startProc(t, "RAIS_MASTER=", "master", "--id", id, "--dir", t.TempDir(),
			"--raft-addr", raft[id], "--api-addr", api[id], "--peers", strings.Join(peers, ","))
	}
	masters := api["m1"] + "," + api["m2"] + "," + api["m3"]
	for i := range 3 {
		startProc(t, "RAIS_CHUNKSERVER=", "chunkserver", "--id", fmt.Sprintf("cs%d", i+1), "--dir", t.TempDir(),
			"--addr", "127.0.0.1:0", "--masters", masters, "--rack", fmt.Sprintf("r%d", i))
	}
	leader := func(addr string) (string, int) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return "", 0
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := masterpb.NewMasterClient(conn).Status(ctx, &masterpb.StatusRequest{})
		if err != nil {
			return "", 0
		}
		l, alive := "", 0
		for _, m := range st.Masters {
			if m.Leader {
				l = m.Id
			}
		}
		for _, c := range st.Chunkservers {
			if c.State == "alive" {
				alive++
			}
		}
		return l, alive
	}
	var first string
	waitFor(t, 20*time.Second, "a leader and 3 alive chunk servers", func() bool {
		l, alive := leader(api["m1"])
		first = l
		return l != "" && alive == 3
	})
	procs[first].cmd.Process.Signal(syscall.SIGKILL)
	start := time.Now()
	var other string
	for id := range procs {
		if id != first {
			other = id
		}
	}
	waitFor(t, 10*time.Second, "a new leader", func() bool {
		l, _ := leader(api[other])
		return l != "" && l != first
	})
	t.Logf("new leader %s seen %s after kill -9 of %s", func() string { l, _ := leader(api[other]); return l }(), time.Since(start).Round(time.Millisecond), first)
	for id, p := range procs {
		if id == first {
			continue
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		if err := p.wait(t); err != nil {
			t.Fatalf("%s exit after SIGTERM = %v\n%s", id, err, p.stderr.String())
		}
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
