package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/internal/testcluster"
)

func mustClient(t *testing.T, masters []string, mod func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.Config{Masters: masters, Logger: testcluster.Logger(t)}
	if mod != nil {
		mod(&cfg)
	}
	c, err := client.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("client.New = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustGet(t *testing.T, c *client.Client, key string) []byte {
	t.Helper()
	r, err := c.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("Get(%q) = %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b
}

func TestClient_PutGetStatListDelete(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	c := mustClient(t, cl.MasterAddrs(), func(cfg *client.Config) {
		cfg.SpoolThreshold = 256 << 10
		cfg.VerifyThreshold = 512 << 10
	})
	ctx := ctxT(t)
	objs := map[string][]byte{
		"alice/INBOX/1": []byte("Subject: hi\r\n\r\nhello\r\n"),
		"alice/INBOX/2": {},                       // empty
		"alice/Sent/1":  randomBytes(1, 300<<10),  // spooled to a file, read whole and verified
		"bob/INBOX/1":   randomBytes(2, 3<<20+17), // streamed
	}
	for k, v := range objs {
		o, err := c.Put(ctx, k, bytes.NewReader(v), nil)
		if err != nil {
			t.Fatalf("Put(%q) = %v", k, err)
		}
		if o.Size != int64(len(v)) || o.Deduped {
			t.Fatalf("Put(%q) = %+v", k, o)
		}
	}
	for k, v := range objs {
		if got := mustGet(t, c, k); !bytes.Equal(got, v) {
			t.Fatalf("Get(%q): %d bytes, want %d", k, len(got), len(v))
		}
		st, err := c.Stat(ctx, k)
		if err != nil || st.Size != int64(len(v)) || st.Created.IsZero() {
			t.Fatalf("Stat(%q) = %+v, %v", k, st, err)
		}
	}
	big := objs["bob/INBOX/1"]
	for _, r := range [][2]int64{{0, 10}, {1000, 70000}, {int64(len(big)) - 5, 100}} {
		got, err := c.GetRange(ctx, "bob/INBOX/1", r[0], r[1])
		end := min(r[0]+r[1], int64(len(big)))
		if err != nil || !bytes.Equal(got, big[r[0]:end]) {
			t.Fatalf("GetRange(%v) = %d bytes, %v", r, len(got), err)
		}
	}
	// Same key, same content: fine. Same key, other content: conflict.
	if _, err := c.Put(ctx, "alice/INBOX/1", bytes.NewReader(objs["alice/INBOX/1"]), nil); err != nil {
		t.Fatalf("retried Put = %v", err)
	}
	if _, err := c.Put(ctx, "alice/INBOX/1", strings.NewReader("other"), nil); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("conflicting Put = %v, want ErrConflict", err)
	}
	// Dedup: the same message for another mailbox moves no bytes.
	if o, err := c.Put(ctx, "carol/INBOX/1", bytes.NewReader(objs["alice/Sent/1"]), nil); err != nil || !o.Deduped {
		t.Fatalf("dedup Put = %+v, %v", o, err)
	}
	var keys []string
	after := ""
	for {
		p, err := c.List(ctx, "alice/", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.Objects {
			keys = append(keys, o.Key)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if strings.Join(keys, ",") != "alice/INBOX/1,alice/INBOX/2,alice/Sent/1" {
		t.Fatalf("List(alice/) = %v", keys)
	}
	if err := c.Delete(ctx, "alice/Sent/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "alice/Sent/1"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get deleted = %v, want ErrNotFound", err)
	}
	if err := c.Delete(ctx, "alice/Sent/1"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Delete twice = %v, want ErrNotFound", err)
	}
	// The content is still there for the other key that names it.
	if got := mustGet(t, c, "carol/INBOX/1"); !bytes.Equal(got, objs["alice/Sent/1"]) {
		t.Fatal("deduped object damaged by deleting the other key")
	}
}

func TestClient_BadInput(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	c := mustClient(t, cl.MasterAddrs(), nil)
	ctx := ctxT(t)
	for _, key := range []string{"", strings.Repeat("k", 1025)} {
		if _, err := c.Put(ctx, key, strings.NewReader("x"), nil); !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("Put(key of %d bytes) = %v", len(key), err)
		}
		if _, err := c.Get(ctx, key); !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("Get(key of %d bytes) = %v", len(key), err)
		}
	}
	if _, err := c.Put(ctx, "k", strings.NewReader("x"), &client.PutOptions{Class: "nosuch"}); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Put with unknown class = %v", err)
	}
	if _, err := c.Stat(ctx, "nosuch"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Stat(unknown) = %v", err)
	}
	if _, err := c.List(ctx, "", "", 20000); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("List(limit 20000) = %v", err)
	}
	if _, err := client.New(ctx, client.Config{}); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("New without masters = %v", err)
	}
}

// Masters that do not answer: a clear error when the deadline passes,
// never a hang.
func TestClient_UnreachableMastersTimeOut(t *testing.T) {
	c := mustClient(t, []string{"127.0.0.1:1"}, func(cfg *client.Config) { cfg.Timeout = 1500 * time.Millisecond })
	start := time.Now()
	_, err := c.Stat(context.Background(), "k")
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("Stat with no master = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s with a 1.5 s timeout", d)
	}
}

// A replica that is down, or returns rotten bytes, is skipped.
func TestClient_ReadsFailOver(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	c := mustClient(t, cl.MasterAddrs(), func(cfg *client.Config) { cfg.VerifyThreshold = 64 << 10 })
	ctx := ctxT(t)
	small := randomBytes(3, 20000)
	large := randomBytes(4, 1<<20)
	for k, v := range map[string][]byte{"small": small, "large": large} {
		if _, err := c.Put(ctx, k, bytes.NewReader(v), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Rot on one replica: flip a byte in every volume file of cs1.
	cs1 := cl.Chunks[0]
	files, _ := filepath.Glob(filepath.Join(cs1.Dir, "vol-*.dat"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for i := 200; i < len(b); i += 4096 {
			b[i] ^= 0x55
		}
		os.WriteFile(f, b, 0o644)
	}
	for range 5 { // replicas are tried in random order
		if got := mustGet(t, c, "small"); !bytes.Equal(got, small) {
			t.Fatal("small object: wrong bytes after rot on one replica")
		}
		if got := mustGet(t, c, "large"); !bytes.Equal(got, large) {
			t.Fatal("large object: wrong bytes after rot on one replica")
		}
	}
	// The rotten replica was reported to the masters (for repair).
	// Replicas are tried in random order: read until the rotten one was tried.
	waitFor(t, 20*time.Second, "a bad-replica report", func() bool {
		if got := mustGet(t, c, "small"); !bytes.Equal(got, small) {
			t.Fatal("small object: wrong bytes")
		}
		return cl.Leader().BadReplicaReports() > 0
	})
	// One replica down as well: the third still serves.
	cl.Chunks[1].Close()
	for range 5 {
		if got := mustGet(t, c, "large"); !bytes.Equal(got, large) {
			t.Fatal("large object: wrong bytes with one replica down and one rotten")
		}
	}
}

func TestClient_SurvivesMasterLoss(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	c := mustClient(t, cl.MasterAddrs(), nil)
	ctx := ctxT(t)
	var mu sync.Mutex
	acked := map[string][]byte{}
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
				v := []byte(k + " body")
				if _, err := c.Put(ctx, k, bytes.NewReader(v), nil); err == nil {
					mu.Lock()
					acked[k] = v
					mu.Unlock()
				}
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	waitFor(t, 20*time.Second, "puts before the loss", func() bool { return count() >= 20 })
	leader := cl.Leader()
	for i, m := range cl.Masters {
		if m == leader {
			cl.StopMaster(i)
		}
	}
	before := count()
	waitFor(t, 20*time.Second, "puts after the loss", func() bool { return count() >= before+20 })
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no put was acknowledged")
	}
	for k, v := range acked {
		if got := mustGet(t, c, k); !bytes.Equal(got, v) {
			t.Fatalf("acknowledged %s lost after leader loss", k)
		}
	}
	t.Logf("%d acknowledged puts read back after the leader stopped", len(acked))
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A dead master in the list (connection refused) is skipped, whichever
// master the client happens to try first.
func TestClient_SkipsDeadMaster(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	for range 6 { // the first master tried is random
		c := mustClient(t, append([]string{"127.0.0.1:1"}, cl.MasterAddrs()...), func(cfg *client.Config) { cfg.Timeout = 10 * time.Second })
		start := time.Now()
		if _, err := c.Put(ctxT(t), fmt.Sprintf("k%d", start.UnixNano()), strings.NewReader("x"), nil); err != nil {
			t.Fatalf("Put with one dead master in the list = %v", err)
		}
		if d := time.Since(start); d > 8*time.Second { // the bug this guards against took the whole 10 s timeout
			t.Fatalf("Put took %s with one dead master in the list", d)
		}
	}
}

// Volumes fill up and seal under a stream of puts; new ones open and no
// put fails.
func TestClient_PutsFillAndSealVolumes(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{VolumeSize: 256 << 10})
	c := mustClient(t, cl.MasterAddrs(), nil)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 15 {
				k := fmt.Sprintf("w%d/%d", w, i)
				if _, err := c.Put(ctxT(t), k, bytes.NewReader(randomBytes(uint64(w*100+i), 20<<10)), nil); err != nil {
					t.Errorf("Put(%s) = %v", k, err)
				}
			}
		})
	}
	wg.Wait()
	vols, err := cl.Leader().FSM().Volumes()
	if err != nil {
		t.Fatal(err)
	}
	if len(vols) < 3 {
		t.Fatalf("%d volumes after 1.2 MiB into 256 KiB volumes, want several", len(vols))
	}
}

// Content whose last key was just deleted is queued for deletion (for a
// lease's lifetime) in its volume; a put of the same bytes under a new
// key meanwhile (a mail client deleting a message and appending it again)
// goes to another volume instead of failing for want of one.
func TestClient_PutOfContentBeingDeleted(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	c := mustClient(t, cl.MasterAddrs(), nil)
	ctx := ctxT(t)
	body := []byte("Subject: again\r\n\r\nthe same bytes\r\n")
	for i := range 3 {
		key := fmt.Sprintf("k%d", i)
		if _, err := c.Put(ctx, key, bytes.NewReader(body), nil); err != nil {
			t.Fatalf("put %d of content being deleted: %v", i, err)
		}
		if got := mustGet(t, c, key); !bytes.Equal(got, body) {
			t.Fatalf("get %s = %q", key, got)
		}
		if err := c.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
}
