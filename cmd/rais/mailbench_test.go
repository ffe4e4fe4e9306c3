package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/internal/testcluster"
	"github.com/raisfs/raisfs/mailfront"
	"github.com/raisfs/raisfs/mailstore"
)

// startMailServer starts a cluster and a mail front end on it with the
// user demo (password demo) and returns its IMAP and LMTP addresses.
func startMailServer(t *testing.T) (imapAddr, lmtpAddr string) {
	t.Helper()
	cl := testcluster.Start(t, testcluster.Options{})
	c, err := client.New(context.Background(), client.Config{Masters: cl.MasterAddrs(), Logger: testcluster.Logger(t), RecordCache: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	users, err := mailfront.StaticUsers(map[string]string{"demo": "demo"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mailfront.New(mailfront.Config{Store: mailstore.New(c, mailstore.Options{Logger: testcluster.Logger(t)}), Users: users, Logger: testcluster.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	il, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ll, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.ServeIMAP(il)
	srv.ServeLMTP(ll)
	return il.Addr().String(), ll.Addr().String()
}

// Two servers measured in turns: every phase runs on both, and the table
// gives each phase's rate on each and the second's over the first's.
func TestMailBench_ServersInTurns(t *testing.T) {
	i1, l1 := startMailServer(t)
	i2, l2 := startMailServer(t)
	var out, errOut bytes.Buffer
	args := []string{"--imap", i1 + "," + i2, "--lmtp", l1 + "," + l2, "--names", "one,two",
		"--messages", "40", "--ops", "10", "--size", "600", "--turns", "2"}
	if err := runMailBench(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("mailbench: %v\n%s%s", err, out.String(), errOut.String())
	}
	t.Logf("\n%s", out.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2+9 || !strings.HasPrefix(lines[0], "each phase in 2 turns") || !strings.Contains(lines[1], "two/one") {
		t.Fatalf("want a header and 9 phases, got:\n%s", out.String())
	}
	for _, l := range lines[2:] {
		if f := strings.Fields(l[44:]); len(f) != 3 {
			t.Fatalf("phase line %q: want two rates and a ratio", l)
		}
	}
	// One server: one line per phase, as before.
	out.Reset()
	i3, l3 := startMailServer(t)
	if err := runMailBench(context.Background(), []string{"--imap", i3, "--lmtp", l3, "--messages", "40", "--ops", "10", "--size", "600"}, &out, &errOut); err != nil {
		t.Fatalf("mailbench, one server: %v\n%s", err, errOut.String())
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 9 || !strings.Contains(lines[5], "UID STORE +FLAGS") {
		t.Fatalf("one server: want 9 phase lines, got:\n%s", out.String())
	}
}
