package client_test

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/internal/testcluster"
)

// A record read through the cache is linearizable: right after another
// client's write is acknowledged, the cached reader sees it; between
// writes, its reads are answered from memory.
func TestClient_RecordCacheSeesEveryAcknowledgedWrite(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	reader := mustClient(t, cl.MasterAddrs(), func(cfg *client.Config) { cfg.RecordCache = 100 })
	writer := mustClient(t, cl.MasterAddrs(), nil)
	ctx := ctxT(t)
	const key = "cache/k"
	write := func(v string) {
		t.Helper()
		var tx client.Txn
		if _, err := writer.Commit(ctx, tx.Put(key, []byte(v))); err != nil {
			t.Fatalf("write %s: %v", v, err)
		}
	}
	read := func() (string, bool) {
		t.Helper()
		r, ok, err := reader.CachedRecord(ctx, key)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(r.Value), ok
	}
	if _, ok := read(); ok {
		t.Fatal("record exists before any write")
	}
	write("v0")
	// Until the key is confirmed watched and the lease granted, reads go
	// to the leader; then they are cache hits.
	waitForHit(t, reader, key, "v0")
	for i := 1; i <= 50; i++ {
		want := fmt.Sprintf("v%d", i)
		write(want)
		for range 5 {
			if v, ok := read(); !ok || v != want {
				t.Fatalf("after write %s was acknowledged, the cached reader read %q (exists %v)", want, v, ok)
			}
		}
	}
	var tx client.Txn
	if _, err := writer.Commit(ctx, tx.Delete(key)); err != nil {
		t.Fatal(err)
	}
	if v, ok := read(); ok {
		t.Fatalf("after the delete, read %q", v)
	}
	// Writes through the caching client itself are seen too (the leader
	// does not invalidate the writer's stream: the client keeps its own
	// writes out of its cache).
	for i := range 20 {
		want := fmt.Sprintf("own%d", i)
		if _, err := reader.Commit(ctx, new(client.Txn).Put(key, []byte(want))); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if v, _ := read(); v != want {
				t.Fatalf("after its own write %s, read %q", want, v)
			}
		}
	}
	hits, misses := reader.RecordCacheStats()
	t.Logf("record cache: %d hits, %d misses", hits, misses)
	if hits < 120 {
		t.Fatalf("%d cache hits in 310 reads between writes: the cache was hardly used", hits)
	}
}

// When the leader goes, the cache is dropped with its stream; reads stay
// right through the new leader's writes.
func TestClient_RecordCacheAcrossLeaderChange(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	reader := mustClient(t, cl.MasterAddrs(), func(cfg *client.Config) { cfg.RecordCache = 100 })
	ctx := ctxT(t)
	const key = "cache/failover"
	put := func(c *client.Client, v string) {
		t.Helper()
		if _, err := c.Commit(ctx, new(client.Txn).Put(key, []byte(v))); err != nil {
			t.Fatalf("write %s: %v", v, err)
		}
	}
	put(reader, "before")
	waitForHit(t, reader, key, "before")
	leader := cl.Leader()
	for i, m := range cl.Masters {
		if m == leader {
			cl.StopMaster(i)
		}
	}
	cl.Leader()
	writer := mustClient(t, cl.MasterAddrs(), nil)
	put(writer, "after")
	r, _, err := reader.CachedRecord(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Value) != "after" {
		t.Fatalf("after a leader change and a write through the new leader, read %q", r.Value)
	}
	waitForHit(t, reader, key, "after") // and the cache comes back
}

// waitForHit reads key through c's cache until a read is a hit.
func waitForHit(t *testing.T, c *client.Client, key, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h0, _ := c.RecordCacheStats()
		r, _, err := c.CachedRecord(ctxT(t), key)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Value) != want {
			t.Fatalf("read %q, want %q", r.Value, want)
		}
		if h1, _ := c.RecordCacheStats(); h1 > h0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no cache hit within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Concurrent writes to several keys one client caches (so invalidations
// to its stream interleave): a read that starts after a write was
// acknowledged never returns an older value.
func TestClient_RecordCacheUnderConcurrentWrites(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	reader := mustClient(t, cl.MasterAddrs(), func(cfg *client.Config) { cfg.RecordCache = 100 })
	writer := mustClient(t, cl.MasterAddrs(), nil)
	ctx := ctxT(t)
	const keys, writes = 4, 60
	var acked [keys]atomic.Int64
	for k := range keys {
		if _, err := writer.Commit(ctx, new(client.Txn).Put(fmt.Sprintf("cc/%d", k), []byte("0"))); err != nil {
			t.Fatal(err)
		}
		waitForHit(t, reader, fmt.Sprintf("cc/%d", k), "0")
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 2*keys)
	for k := range keys {
		key := fmt.Sprintf("cc/%d", k)
		wg.Go(func() {
			for v := 1; v <= writes; v++ {
				if _, err := writer.Commit(ctx, new(client.Txn).Put(key, []byte(strconv.Itoa(v)))); err != nil {
					errs <- err
					return
				}
				acked[k].Store(int64(v))
			}
		})
	}
	var readers sync.WaitGroup
	for k := range keys {
		key := fmt.Sprintf("cc/%d", k)
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				floor := acked[k].Load()
				r, _, err := reader.CachedRecord(ctx, key)
				if err != nil {
					errs <- err
					return
				}
				if v, _ := strconv.Atoi(string(r.Value)); int64(v) < floor {
					errs <- fmt.Errorf("%s read %d after %d was acknowledged", key, v, floor)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	hits, misses := reader.RecordCacheStats()
	t.Logf("record cache: %d hits, %d misses", hits, misses)
}

// The cache tracks at most Config.RecordCache keys, dropping the least
// recently read; reads of dropped keys, and of keys read again, stay
// right; writes through the client to keys it does not track leave
// nothing behind.
func TestClient_RecordCacheIsBounded(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	reader := mustClient(t, cl.MasterAddrs(), func(cfg *client.Config) { cfg.RecordCache = 2 })
	writer := mustClient(t, cl.MasterAddrs(), nil)
	ctx := ctxT(t)
	for round := range 3 {
		for k := range 5 {
			key, want := fmt.Sprintf("bounded/%d", k), fmt.Sprintf("%d-%d", round, k)
			if _, err := writer.Commit(ctx, new(client.Txn).Put(key, []byte(want))); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				r, _, err := reader.CachedRecord(ctx, key)
				if err != nil || string(r.Value) != want {
					t.Fatalf("%s: read %q, %v; want %q", key, r.Value, err, want)
				}
			}
		}
	}
	// The two most recently read keys are cached and kept right.
	waitForHit(t, reader, "bounded/4", "2-4")
	if _, err := writer.Commit(ctx, new(client.Txn).Put("bounded/4", []byte("last"))); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := reader.CachedRecord(ctx, "bounded/4"); string(r.Value) != "last" {
		t.Fatalf("after a write, read %q", r.Value)
	}
	for i := range 50 {
		if _, err := reader.Commit(ctx, new(client.Txn).Put(fmt.Sprintf("untracked/%d", i), []byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	tracked, perKey := client.RecordCacheSizes(reader)
	t.Logf("tracked %d keys, %d per-key entries", tracked, perKey)
	if tracked > 2 || perKey > 3*2 {
		t.Fatalf("tracked %d keys with %d per-key entries, want at most 2 and 6", tracked, perKey)
	}
}

// A client's own acknowledged write to a record it reads through its cache
// is cached as written (value and the commit's revision): its next read
// costs no round trip. Another client's write after it is still seen at
// once, and a deleted record reads as missing from the cache too.
func TestClient_RecordCacheKeepsOwnWrites(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	c := mustClient(t, cl.MasterAddrs(), func(cfg *client.Config) { cfg.RecordCache = 100 })
	other := mustClient(t, cl.MasterAddrs(), nil)
	ctx := ctxT(t)
	const key = "own/k"
	if _, err := c.Commit(ctx, new(client.Txn).Put(key, []byte("v0"))); err != nil {
		t.Fatal(err)
	}
	// Until the key is watched and a lease held, reads go to the leader.
	waitForHit(t, c, key, "v0")
	hits := 0
	for i := 1; i <= 20; i++ {
		want := fmt.Sprintf("mine-%d", i)
		rev, err := c.Commit(ctx, new(client.Txn).Put("own/other", []byte("x")).Put(key, []byte(want)))
		if err != nil {
			t.Fatal(err)
		}
		h0, _ := c.RecordCacheStats()
		r, ok, err := c.CachedRecord(ctx, key)
		if err != nil || !ok || string(r.Value) != want || r.Version != rev {
			t.Fatalf("read after own write %d: %q v%d %v %v; want %q v%d", i, r.Value, r.Version, ok, err, want, rev)
		}
		if h1, _ := c.RecordCacheStats(); h1 > h0 {
			hits++
		}
		theirs := fmt.Sprintf("theirs-%d", i)
		if _, err := other.Commit(ctx, new(client.Txn).Put(key, []byte(theirs))); err != nil {
			t.Fatal(err)
		}
		if r, _, err := c.CachedRecord(ctx, key); err != nil || string(r.Value) != theirs {
			t.Fatalf("read after another client's write: %q, %v; want %q", r.Value, err, theirs)
		}
	}
	// A lapse of the lease (a loaded machine) sends a read to the leader
	// now and then; without the own-write rule every one of them would.
	t.Logf("%d of 20 reads after own writes answered from the cache", hits)
	if hits < 10 {
		t.Fatalf("%d of 20 reads after own writes answered from the cache, want most", hits)
	}
	h0, m0 := c.RecordCacheStats()
	if _, err := c.Commit(ctx, new(client.Txn).Delete(key)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.CachedRecord(ctx, key); ok || err != nil {
		t.Fatalf("read after own delete: ok %v, %v; want missing", ok, err)
	}
	h1, m1 := c.RecordCacheStats()
	t.Logf("after own delete: hits %d→%d, misses %d→%d", h0, h1, m0, m1)
}
