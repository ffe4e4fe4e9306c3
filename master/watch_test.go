package master

import (
	"context"
	"testing"
	"time"

	"github.com/raisfs/raisfs/api/masterpb"
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
