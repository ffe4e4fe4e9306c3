package mailstore

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/internal/testcluster"
)

// The body cache evicts the least recently used bodies to stay within its
// budget and does not keep bodies over a sixteenth of it.
func TestBodyCache_EvictsLeastRecentlyUsed(t *testing.T) {
	c := newBodyCache(1600)
	body := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 100) }
	for i := range 16 {
		c.add(fmt.Sprint(i), body(i))
	}
	if _, ok := c.get("0"); !ok { // 0 is now the most recently used
		t.Fatal("0 not cached")
	}
	c.add("16", body(16)) // evicts 1, the least recently used
	if _, ok := c.get("1"); ok {
		t.Error("1 still cached past the budget")
	}
	for _, k := range []string{"0", "2", "16"} {
		if b, ok := c.get(k); !ok || len(b) != 100 {
			t.Errorf("%s: cached %v, %d bytes", k, ok, len(b))
		}
	}
	if st := c.stats(); st.Bytes != 1600 || st.Entries != 16 {
		t.Errorf("stats %+v, want 1600 bytes in 16 entries", st)
	}
	c.add("big", make([]byte, 101))
	if _, ok := c.get("big"); ok {
		t.Error("a body over a sixteenth of the budget was cached")
	}
	var none *bodyCache // a store without a cache
	none.add("x", body(1))
	if _, ok := none.get("x"); ok {
		t.Error("nil cache returned a body")
	}
}

// A front end with a body cache serves what it stored and what it read
// without the chunk servers, byte for byte what a front end without one
// reads from the cluster, whole and in ranges.
func TestStore_BodyCacheServesWhatTheClusterHolds(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	addrs := cl.MasterAddrs()
	cached := newCachingStore(t, addrs)
	plain := newStore(t, addrs)
	ctx := ctxT(t)

	appended := NewMessage{Body: []byte("Subject: appended\r\n\r\n" + string(bytes.Repeat([]byte("a"), 5000)))}
	if _, _, err := cached.Append(ctx, "alice", "INBOX", appended); err != nil {
		t.Fatal(err)
	}
	delivered := []byte("Subject: delivered\r\n\r\nhello\r\n")
	if errs := plain.Deliver(ctx, []Recipient{{User: "alice"}}, delivered, time.Now()); errs[0] != nil {
		t.Fatal(errs[0])
	}
	m, err := plain.Mailbox(ctx, "alice", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := plain.Messages(ctx, "alice", m)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("messages %d, %v; want 2", len(msgs), err)
	}
	want := map[uint32][]byte{msgs[0].UID: appended.Body, msgs[1].UID: delivered}
	read := func(s *Store) {
		t.Helper()
		for _, msg := range msgs {
			b, err := s.Body(ctx, msg)
			if err != nil || !bytes.Equal(b, want[msg.UID]) {
				t.Fatalf("body of %d: %q, %v", msg.UID, b, err)
			}
			for _, r := range [][2]int64{{0, 7}, {3, 10}, {int64(len(b)) - 4, 100}} {
				p, err := s.Range(ctx, msg, r[0], r[1])
				end := min(r[0]+r[1], int64(len(b)))
				if err != nil || !bytes.Equal(p, want[msg.UID][r[0]:end]) {
					t.Fatalf("range %v of %d: %q, %v", r, msg.UID, p, err)
				}
			}
		}
	}
	read(plain)
	before := cached.CacheStats()
	read(cached) // the appended body from the cache; the delivered one read, then cached
	read(cached) // both from the cache
	after := cached.CacheStats()
	// 2 messages × (1 body + 3 ranges) × 2 rounds = 16 look-ups, of which
	// only the first read of the delivered body missed.
	if hits, misses := after.Hits-before.Hits, after.Misses-before.Misses; hits != 15 || misses != 1 {
		t.Errorf("cache hits %d, misses %d; want 15 and 1", hits, misses)
	}
	if plain.CacheStats() != (CacheStats{}) {
		t.Errorf("a store without a cache counted %+v", plain.CacheStats())
	}
}

// Header blocks are kept in memory too (their index keys are never bound
// to other bytes): a search's second pass over a mailbox reads nothing,
// and what memory serves is what the index holds.
func TestStore_HeadersFromMemoryMatchTheIndex(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	addrs := cl.MasterAddrs()
	cached := newCachingStore(t, addrs)
	plain := newStore(t, addrs)
	ctx := ctxT(t)
	for i := range 4 {
		body := fmt.Appendf(nil, "Subject: m%d\r\nFrom: a@example.org\r\n\r\nbody %d\r\n", i, i)
		if errs := plain.Deliver(ctx, []Recipient{{User: "bob"}}, body, time.Now()); errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	// One stored through the caching store: its header comes from its
	// cached body.
	if _, _, err := cached.Append(ctx, "bob", "INBOX", NewMessage{Body: []byte("Subject: m4\r\nTo: b@example.org\r\n\r\nbody 4\r\n")}); err != nil {
		t.Fatal(err)
	}
	m, err := plain.Mailbox(ctx, "bob", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := plain.Messages(ctx, "bob", m)
	if err != nil || len(msgs) != 5 {
		t.Fatalf("messages %d, %v; want 5", len(msgs), err)
	}
	want, err := plain.Headers(ctx, "bob", m, msgs) // from the index
	if err != nil || len(want) != 5 {
		t.Fatalf("headers %d, %v; want 5", len(want), err)
	}
	for _, msg := range msgs {
		if !bytes.HasPrefix(want[msg.UID], fmt.Appendf(nil, "Subject: m")) {
			t.Fatalf("header of %d: %q", msg.UID, want[msg.UID])
		}
	}
	first, err := cached.Headers(ctx, "bob", m, msgs) // the index, then kept
	if err != nil {
		t.Fatal(err)
	}
	before := cached.CacheStats()
	second, err := cached.Headers(ctx, "bob", m, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if hits := cached.CacheStats().Hits - before.Hits; hits != 5 {
		t.Errorf("second pass: %d headers from memory, want 5", hits)
	}
	for _, msg := range msgs {
		if !bytes.Equal(first[msg.UID], want[msg.UID]) || !bytes.Equal(second[msg.UID], want[msg.UID]) {
			t.Fatalf("header of %d: %q then %q, index %q", msg.UID, first[msg.UID], second[msg.UID], want[msg.UID])
		}
		h, err := cached.Header(ctx, "bob", m, msg)
		if err != nil || !bytes.Equal(h, want[msg.UID]) {
			t.Fatalf("Header of %d: %q, %v", msg.UID, h, err)
		}
	}
}

// newCachingStore is a store with a 1 MiB body cache on the cluster at
// addrs.
func newCachingStore(t *testing.T, addrs []string) *Store {
	t.Helper()
	c, err := client.New(ctxT(t), client.Config{Masters: addrs, Logger: testcluster.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return New(c, Options{MaxMessageSize: 1 << 20, BodyCache: 1 << 20, Logger: testcluster.Logger(t)})
}
