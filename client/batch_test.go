package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/internal/testcluster"
)

// countingTransport counts the uploads the SDK sends to chunk servers.
type countingTransport struct {
	puts, posts atomic.Int64
	next        http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	switch r.Method {
	case http.MethodPut:
		c.puts.Add(1)
	case http.MethodPost:
		c.posts.Add(1)
	}
	return c.next.RoundTrip(r)
}

func putAll(t *testing.T, c *client.Client, keys []string, bodies [][]byte) []error {
	t.Helper()
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			_, errs[i] = c.Put(ctxT(t), keys[i], bytes.NewReader(bodies[i]), nil)
		})
	}
	wg.Wait()
	return errs
}

// Concurrent small puts travel in batches (fewer upload requests than
// copies), and each put still gets its own answer: stored, deduplicated,
// or a conflict.
func TestClient_ConcurrentPutsAreBatched(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	for _, batching := range []bool{false, true} {
		t.Run(fmt.Sprintf("batching=%v", batching), func(t *testing.T) {
			tr := &countingTransport{next: http.DefaultTransport}
			c := mustClient(t, cl.MasterAddrs(), func(cfg *client.Config) {
				cfg.HTTPClient = &http.Client{Transport: tr}
				cfg.NoPutBatching = !batching
			})
			const n = 64
			keys := make([]string, n)
			bodies := make([][]byte, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("batch-%v/%d", batching, i)
				seed := uint64(i)
				if batching {
					seed += 1 << 40 // other content than the first run's
				}
				bodies[i] = randomBytes(seed, 4096)
			}
			for i, err := range putAll(t, c, keys, bodies) {
				if err != nil {
					t.Fatalf("put %s: %v", keys[i], err)
				}
			}
			for i, k := range keys {
				if !bytes.Equal(mustGet(t, c, k), bodies[i]) {
					t.Fatalf("%s reads back wrong", k)
				}
			}
			puts, posts := tr.puts.Load(), tr.posts.Load()
			t.Logf("%d puts: %d single uploads, %d batch uploads", n, puts, posts)
			if !batching {
				if posts != 0 || puts != 3*n {
					t.Fatalf("without batching: %d single and %d batch uploads, want %d and 0", puts, posts, 3*n)
				}
				return
			}
			if posts == 0 || puts+posts >= 3*n {
				t.Fatalf("with batching: %d single and %d batch uploads for %d puts of 3 copies: nothing was grouped", puts, posts, n)
			}

			// Half of the keys again with other content (conflicts), half with
			// the same (stored already), and new keys with content stored
			// under other keys (dedup), all at once.
			var keys2 []string
			var bodies2 [][]byte
			for i := range n {
				switch i % 3 {
				case 0:
					keys2, bodies2 = append(keys2, keys[i]), append(bodies2, randomBytes(uint64(1000+i), 4096))
				case 1:
					keys2, bodies2 = append(keys2, keys[i]), append(bodies2, bodies[i])
				case 2:
					keys2, bodies2 = append(keys2, keys[i]+"/copy"), append(bodies2, bodies[i])
				}
			}
			for i, err := range putAll(t, c, keys2, bodies2) {
				if i%3 == 0 {
					if !errors.Is(err, client.ErrConflict) {
						t.Fatalf("other content under %s: %v, want ErrConflict", keys2[i], err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("put %s: %v", keys2[i], err)
				}
			}
			for i, k := range keys2 {
				want := bodies2[i]
				if i%3 == 0 {
					want = bodies[i] // the conflicting put changed nothing
				}
				if !bytes.Equal(mustGet(t, c, k), want) {
					t.Fatalf("%s reads back wrong", k)
				}
			}
		})
	}
}

// Callers that each put one object after another (a delivery agent's
// workers, the bench) come back a moment after their group is answered;
// the next group waits for them instead of leaving with the first one and
// making the others wait out a whole round behind it.
//
// The wait is bounded by half a round; rounds in this test are short and
// callers slow on a loaded machine, so the test sets a generous bound:
// what it checks is that a group waits for the callers it expects, not
// how quickly they come back.
func TestClient_CallersPuttingInTurnFillTheirGroups(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{})
	c := mustClient(t, cl.MasterAddrs(), nil)
	client.SetMinLinger(c, 200*time.Millisecond)
	const callers, each = 8, 12
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for w := range callers {
		wg.Go(func() {
			for i := range each {
				body := randomBytes(uint64(w<<20|i), 4096)
				if _, err := c.Put(ctxT(t), fmt.Sprintf("turns/%d/%d", w, i), bytes.NewReader(body), nil); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	groups, puts := c.BatchStats()
	if puts != callers*each {
		t.Fatalf("%d puts went through groups, want %d", puts, callers*each)
	}
	mean := float64(puts) / float64(groups)
	t.Logf("%d puts in %d groups (%.1f per group)", puts, groups, mean)
	// Without waiting for them, groups alternate between the first caller
	// back and the rest: 4.0 per group with 8 callers; waiting only for the
	// callers of the last group (not for those queued behind it) made
	// groups of 7 and a straggler: 6.0. With the wait: a first group of
	// one, then 8 at a time: 7.4.
	if mean < 6.5 {
		t.Fatalf("%.1f puts per group from %d callers putting in turn, want at least 6.5", mean, callers)
	}
}

// A new leader knows no chunk server's free space until each has reported
// to it, and refuses to place a volume meanwhile (unavailable: a transient
// state). A put in a batch must ride that out as a put on its own does,
// not fail.
func TestClient_BatchedPutRidesOutAFreshLeader(t *testing.T) {
	cl := testcluster.Start(t, testcluster.Options{HeartbeatInterval: 2 * time.Second})
	c := mustClient(t, cl.MasterAddrs(), nil)
	leader := cl.Leader()
	for i, m := range cl.Masters {
		if m == leader {
			cl.StopMaster(i)
		}
	}
	cl.Leader() // a new one; no volume is placed yet, so the put needs placement
	ctx, cancel := context.WithTimeout(ctxT(t), 20*time.Second)
	defer cancel()
	body := randomBytes(77, 4096)
	if _, err := c.Put(ctx, "fresh-leader/1", bytes.NewReader(body), nil); err != nil {
		t.Fatalf("put through a leader that has not heard from the chunk servers yet: %v", err)
	}
	if groups, _ := c.BatchStats(); groups == 0 {
		t.Fatal("the put did not go through the batch path")
	}
	if !bytes.Equal(mustGet(t, c, "fresh-leader/1"), body) {
		t.Fatal("reads back wrong")
	}
}
