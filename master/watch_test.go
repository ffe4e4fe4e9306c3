package master

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/api/txnpb"
)

// openWatch opens a raw watch stream on the leader and adds key.
func openWatch(t *testing.T, m masterpb.MasterClient, key string) masterpb.Master_WatchRecordsClient {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	t.Cleanup(cancel)
	s, err := m.WatchRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&masterpb.WatchRequest{Add: [][]byte{[]byte(key)}, Ping: 1}); err != nil {
		t.Fatal(err)
	}
	var added, leased bool
	for !added || !leased {
		ev, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		added = added || len(ev.Added) == 1
		if ev.Pong == 1 {
			if ev.LeaseNanos <= 0 {
				t.Fatalf("no lease granted: %v", ev)
			}
			leased = true
		}
	}
	return s
}

// A watching client that never acknowledges (hung, or gone without the
// leader noticing) holds a write up only until its lease has run out.
func TestWatch_UnacknowledgedInvalidationWaitsForTheLease(t *testing.T) {
	c := mustCluster(t, 3, nil)
	l := c.waitLeader()
	m := client(t, l.APIAddr())
	if err := putRecord(t, m, "w/k", "v0"); err != nil {
		t.Fatal(err)
	}
	s := openWatch(t, m, "w/k")
	start := time.Now()
	if err := putRecord(t, m, "w/k", "v1"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	ev, err := s.Recv()
	if err != nil || ev.Seq == 0 || len(ev.Invalidate) != 1 || string(ev.Invalidate[0]) != "w/k" {
		t.Fatalf("first event after the write = %v, %v; want an invalidation of w/k", ev, err)
	}
	// The write waited (the lease was granted just before it), but not
	// much longer than the lease: ReadLease and a margin.
	t.Logf("write with an unacknowledged watcher took %v (read lease %v)", took, l.cfg.ReadLease)
	if took > l.cfg.ReadLease+time.Second {
		t.Fatalf("the write waited %v for a watcher that never acknowledged", took)
	}
	if v, err := readRecord(t, m, "w/k"); err != nil || v != "v1" {
		t.Fatalf("after the write: %q, %v", v, err)
	}
}

// A watcher that acknowledges lets the write through at once, and hears
// when it has been applied.
func TestWatch_AcknowledgedInvalidation(t *testing.T) {
	c := mustCluster(t, 3, nil)
	l := c.waitLeader()
	m := client(t, l.APIAddr())
	s := openWatch(t, m, "w/a")
	done := make(chan error, 1)
	go func() { done <- putRecord(t, m, "w/a", "v1") }()
	ev, err := s.Recv()
	if err != nil || ev.Seq == 0 || len(ev.Invalidate) != 1 {
		t.Fatalf("event = %v, %v; want an invalidation", ev, err)
	}
	if v, err := readRecord(t, m, "w/a"); err != nil || v != "" {
		t.Fatalf("the write applied before the watcher acknowledged: %q, %v", v, err)
	}
	if err := s.Send(&masterpb.WatchRequest{Ack: ev.Seq}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ev2, err := s.Recv()
	if err != nil || ev2.Done != ev.Seq {
		t.Fatalf("event after the write = %v, %v; want done %d", ev2, err, ev.Seq)
	}
}

// Only the leader serves watches.
func TestWatch_FollowerRefuses(t *testing.T) {
	c := mustCluster(t, 3, nil)
	l := c.waitLeader()
	for _, s := range c.masters {
		if s == nil || s == l {
			continue
		}
		w, err := client(t, s.APIAddr()).WatchRecords(ctxT(t))
		if err == nil {
			_, err = w.Recv()
		}
		if err == nil {
			t.Fatal("a follower served a watch")
		}
		return
	}
}

// A client that starts watching a key while a write to it waits for
// other watchers is told the key is watched only once the write has
// applied: it could otherwise cache the value from before it.
func TestWatch_AddDuringAWriteIsConfirmedAfterIt(t *testing.T) {
	c := mustCluster(t, 3, nil)
	l := c.waitLeader()
	m := client(t, l.APIAddr())
	if err := putRecord(t, m, "w/d", "v0"); err != nil {
		t.Fatal(err)
	}
	slow := openWatch(t, m, "w/d") // never acknowledges
	done := make(chan error, 1)
	go func() { done <- putRecord(t, m, "w/d", "v1") }()
	if ev, err := slow.Recv(); err != nil || ev.Seq == 0 {
		t.Fatalf("event = %v, %v; want an invalidation", ev, err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	late, err := m.WatchRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := late.Send(&masterpb.WatchRequest{Add: [][]byte{[]byte("w/d")}}); err != nil {
		t.Fatal(err)
	}
	ev, err := late.Recv()
	if err == nil && ev.WatcherId != 0 { // a stream's first event
		ev, err = late.Recv()
	}
	if err != nil || len(ev.Added) != 1 {
		t.Fatalf("event = %v, %v; want added", ev, err)
	}
	if v, err := readRecord(t, m, "w/d"); err != nil || v != "v1" {
		t.Fatalf("the key was confirmed watched while the record was still %q (%v): before the write applied", v, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A watching client that stops reading its stream (alive, connected, but
// stuck) fills its event queue; the leader then ends the stream on its own,
// without waiting for the client to read again, and writes to the keys it
// watched go on. When the client reads again it finds the events sent
// before the end and then an Unavailable error ("fell behind").
func TestWatch_ClientThatStopsReadingIsCutOff(t *testing.T) {
	c := mustCluster(t, 3, func(cfg *Config) { cfg.watchQueue = 4 })
	l := c.waitLeader()
	m := client(t, l.APIAddr())
	// A client connection with the smallest flow-control windows (and no
	// window growth), so that the leader's sends block after 64 KiB.
	conn, err := grpc.NewClient(l.APIAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var keys []*txnpb.TxnOp
	var add [][]byte
	for i := range 100 {
		k := fmt.Sprintf("w/stuck/%03d", i)
		keys = append(keys, &txnpb.TxnOp{Op: &txnpb.TxnOp_Put{Put: &txnpb.RecordPut{Key: []byte(k), Value: []byte("v")}}})
		add = append(add, []byte(k))
	}
	if _, err := m.Txn(ctxT(t), &txnpb.Txn{Ops: keys}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	s, err := masterpb.NewMasterClient(conn).WatchRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&masterpb.WatchRequest{Add: add}); err != nil {
		t.Fatal(err)
	}
	watching := func() int {
		l.watches.mu.Lock()
		defer l.watches.mu.Unlock()
		return len(l.watches.byKey)
	}
	testPoll(t, 10*time.Second, "the keys to be watched", func() bool { return watching() == 100 })
	// The client reads nothing from now on. Each transaction rewrites all
	// 100 keys: one invalidation of about 1.5 KB for the stuck client.
	start := time.Now()
	n := 0
	for ; watching() > 0; n++ {
		if n == 1000 {
			t.Fatalf("after %d transactions the stuck client's stream is still open", n)
		}
		if _, err := m.Txn(ctxT(t), &txnpb.Txn{Ops: keys}); err != nil {
			t.Fatalf("transaction %d while a client is stuck: %v", n, err)
		}
	}
	t.Logf("stream ended by the leader after %d transactions in %s", n, time.Since(start).Round(time.Millisecond))
	// Reading again: what was sent before the end, then the error.
	for {
		_, err := s.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "fell behind") {
			t.Fatalf("stream ended with %v, want Unavailable: the client fell behind", err)
		}
		break
	}
}
