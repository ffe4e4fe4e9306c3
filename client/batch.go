package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/blobbatch"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/internal/rpcerr"
)

// Put batching. A 4 KiB put costs far more in requests, system calls and
// wake-ups (a BeginPut, three uploads, a CommitPut, a Raft round, three
// fsyncs) than in bytes. Concurrent small puts are therefore grouped: one
// BeginPuts places the whole group in one volume, one request per replica
// carries all the bodies (one group commit on each chunk server), one
// CommitPuts proposes all the keys (one Raft round). A put alone forms a
// group of one, so latency at low concurrency is what it was; groups grow
// only when puts queue behind the ones in flight (group commit).
//
// The batch path is the fast path only: any put it cannot finish for sure
// (an upload short of its quorum, an expired lease, a commit whose outcome
// is unknown) goes back to Put's one-by-one path, which owns every retry
// and the rules for unknown outcomes.

const (
	// maxBatchedBody: larger puts always go one by one (their bytes, not
	// per-request costs, dominate).
	maxBatchedBody = 256 << 10
	batchMaxItems  = 128
	batchMaxBytes  = 4 << 20
	// batchesInFlight: groups uploading or committing at once. More lets a
	// group form while another waits on fsyncs and Raft; fewer makes
	// larger groups. With 16 concurrent 4 KiB puts and the linger below,
	// one group in flight made groups of 15.7 and beat two (groups of 7)
	// by a third in puts per second and in CPU per put.
	batchesInFlight = 1
	// maxLinger bounds how long a group waits for the callers of the group
	// before it to come back (see loop); so does half the last group's
	// round. 1 ms was too short on a loaded machine (the client process
	// waits for a core: groups of 12 of 16 callers), 3 ms was enough.
	maxLinger = 5 * time.Millisecond
)

// pendingPut is one put waiting for, or in, a batch.
type pendingPut struct {
	ctx   context.Context
	key   string
	b     *body
	class string
	res   chan batchResult // buffered: the batch never blocks on it
}

// batchResult is how the batch left a put: done (err final, nil for
// stored) or handed back to the one-by-one path (uncertain: an earlier
// commit of it may have applied).
type batchResult struct {
	done      bool
	deduped   bool
	err       error
	uncertain bool
}

type batcher struct {
	c       *Client
	wg      sync.WaitGroup
	mu      sync.Mutex
	queue   []*pendingPut
	arrived chan struct{} // closed (and replaced) when a put is queued while a loop lingers
	waiting bool          // a loop lingers on arrived
	// minLinger, when set (tests), replaces the wait's bound when it is
	// longer: callers on a loaded machine may take longer than half a
	// round to come back, and a test must not depend on it.
	minLinger time.Duration
	running   int
	off       bool // a master or chunk server without batch calls: one by one from now on

	batches, puts int64 // groups sent and the puts in them
}

func newBatcher(c *Client) *batcher {
	return &batcher{c: c, arrived: make(chan struct{}, 1)}
}

func batchable(b *body) bool { return b.file == nil && b.size <= maxBatchedBody }

// put runs p through a batch and waits for its result or its context.
func (bt *batcher) put(p *pendingPut) batchResult {
	bt.mu.Lock()
	if bt.off {
		bt.mu.Unlock()
		return batchResult{}
	}
	bt.queue = append(bt.queue, p)
	if bt.waiting {
		close(bt.arrived)
		bt.arrived, bt.waiting = make(chan struct{}), false
	}
	if bt.running < batchesInFlight {
		bt.running++
		bt.wg.Go(bt.loop)
	}
	bt.mu.Unlock()
	select {
	case r := <-p.res:
		return r
	case <-p.ctx.Done():
		return batchResult{done: true, err: fmt.Errorf("put %q: %w", p.key, p.ctx.Err())}
	}
}

// loop runs batches until the queue is empty. It is started by put and
// waited for by Client.Close.
//
// After answering a group, the loop waits for as many puts as that group
// had plus those that queued behind it before its first answer. Callers
// that put one after another come back a few microseconds after their
// answer; a loop that left with only the first of them would send a group
// of one and make the rest wait out a whole round behind it (groups
// alternating 1 and 15 at 16 callers, instead of 16). The wait is at most
// half the last round and maxLinger, so it costs a put less than the round
// it would otherwise wait out behind a smaller group. A caller alone
// answered a group of one and is the one put wanted: it never waits.
// Callers that do not come back (each put answers a remote peer first)
// make a wait run out; the next few groups then leave without waiting.
func (bt *batcher) loop() {
	want, skip := 0, 0
	var round time.Duration
	for {
		bt.mu.Lock()
		if skip > 0 {
			skip--
		} else if !bt.linger(want, max(bt.minLinger, min(maxLinger, round/2))) {
			skip = lingerBackoff
		}
		var batch []*pendingPut
		size := 0
		for len(bt.queue) > 0 && len(batch) < batchMaxItems {
			p := bt.queue[0]
			if len(batch) > 0 && size+int(p.b.size) > batchMaxBytes {
				break
			}
			bt.queue[0] = nil
			bt.queue = bt.queue[1:]
			if p.ctx.Err() != nil {
				continue // its caller has gone
			}
			batch = append(batch, p)
			size += int(p.b.size)
		}
		if len(batch) == 0 {
			bt.queue = nil
			bt.running--
			bt.mu.Unlock()
			return
		}
		bt.batches++
		bt.puts += int64(len(batch))
		bt.mu.Unlock()
		start := time.Now()
		behind := bt.run(batch)
		want, round = len(batch)+behind, time.Since(start)
	}
}

// lingerBackoff: groups sent without waiting after a wait ran out.
const lingerBackoff = 8

// linger waits, with bt.mu held (and released while waiting), until want
// puts are queued, d has passed or the client closes. It reports false
// when the wait ran out short of want.
func (bt *batcher) linger(want int, d time.Duration) bool {
	if len(bt.queue) >= want || d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for len(bt.queue) < want {
		arrived := bt.arrived
		bt.waiting = true
		bt.mu.Unlock()
		select {
		case <-arrived:
			bt.mu.Lock()
		case <-t.C:
			bt.mu.Lock()
			return len(bt.queue) >= want
		case <-bt.c.ctx.Done():
			bt.mu.Lock()
			return true
		}
	}
	return true
}

// BatchStats returns how many put groups the client has sent and how many
// puts they carried (their ratio is the mean group size). Both are zero
// with Config.NoPutBatching.
func (c *Client) BatchStats() (groups, puts int64) {
	if c.batch == nil {
		return 0, 0
	}
	c.batch.mu.Lock()
	defer c.batch.mu.Unlock()
	return c.batch.batches, c.batch.puts
}

func (bt *batcher) turnOff(why string, err error) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if !bt.off {
		bt.off = true
		bt.c.log.Warn("putting one by one from now on", "why", why, "err", err)
	}
}

// run takes one batch through BeginPuts, the uploads and CommitPuts, and
// answers every put in it. It returns how many puts were queued behind the
// batch when it gave its first answer.
func (bt *batcher) run(batch []*pendingPut) (behind int) {
	c := bt.c
	// The batch lives as long as its longest-lived put (each caller stops
	// waiting at its own deadline), and no longer than the client.
	deadline := time.Now()
	for _, p := range batch {
		if dl, ok := p.ctx.Deadline(); ok && dl.After(deadline) {
			deadline = dl
		}
	}
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()
	answered := false
	answer := func(p *pendingPut, r batchResult) {
		if !answered {
			answered = true
			bt.mu.Lock()
			behind = len(bt.queue)
			bt.mu.Unlock()
		}
		p.res <- r
	}
	fallBack := func(ps []*pendingPut, uncertain bool) {
		for _, p := range ps {
			answer(p, batchResult{uncertain: uncertain})
		}
	}

	req := &masterpb.BeginPutsRequest{Puts: make([]*masterpb.BeginPutRequest, len(batch))}
	for i, p := range batch {
		req.Puts[i] = &masterpb.BeginPutRequest{Key: []byte(p.key), Hash: p.b.hash[:], Size: p.b.size, Class: p.class}
	}
	var begun *masterpb.BeginPutsResponse
	err := c.call(ctx, fmt.Sprintf("put %d keys", len(batch)), func(ctx context.Context, m masterpb.MasterClient) (err error) {
		begun, err = m.BeginPuts(ctx, req)
		return err
	})
	if err == nil && len(begun.Results) != len(batch) {
		err = fmt.Errorf("begin puts: %d answers to %d puts", len(begun.Results), len(batch))
	}
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			bt.turnOff("a master does not know BeginPuts", err)
			fallBack(batch, false)
			return
		}
		for _, p := range batch {
			answer(p, batchResult{done: true, err: fmt.Errorf("put %q: %w", p.key, err)})
		}
		return
	}

	// What each put needs next.
	commits := make([]*masterpb.CommitPutRequest, 0, len(batch))
	var toCommit []*pendingPut              // the put of each commit
	var grants []*masterpb.BeginPutResponse // its placement; nil for a dedup
	placed := map[uint64][]int{}            // volume → puts to upload there
	for i, r := range begun.Results {
		p := batch[i]
		switch {
		case r.Error != nil && retryable(rpcerr.FromItem(r.Error)):
			// A leader that has not heard from the chunk servers yet, or
			// that lost its office: the one-by-one path retries.
			answer(p, batchResult{})
		case r.Error != nil:
			answer(p, batchResult{done: true, err: fmt.Errorf("put %q: %w", p.key, rpcerr.FromItem(r.Error))})
		case r.Put == nil:
			answer(p, batchResult{}) // a malformed answer: one by one
		case r.Put.GetStored():
			answer(p, batchResult{done: true, deduped: true})
		case r.Put.GetDedup():
			commits = append(commits, commitRequest(p.key, p.b, p.class, nil))
			toCommit, grants = append(toCommit, p), append(grants, nil)
		default:
			placed[r.Put.Volume] = append(placed[r.Put.Volume], i)
		}
	}
	for vol, items := range placed {
		ok := bt.upload(ctx, vol, batch, begun.Results, items)
		for j, i := range items {
			p, bp := batch[i], begun.Results[i].Put
			if !ok[j] {
				answer(p, batchResult{}) // one by one: it asks for another placement
				continue
			}
			commits = append(commits, commitRequest(p.key, p.b, p.class, bp))
			toCommit, grants = append(toCommit, p), append(grants, bp)
		}
	}
	if len(commits) == 0 {
		return
	}

	uncertain := false
	var committed *masterpb.CommitPutsResponse
	err = c.call(ctx, fmt.Sprintf("commit %d keys", len(commits)), func(ctx context.Context, m masterpb.MasterClient) (err error) {
		committed, err = m.CommitPuts(ctx, &masterpb.CommitPutsRequest{Puts: commits})
		if commitMayHaveApplied(err) {
			uncertain = true
		}
		return err
	})
	if err == nil && len(committed.Results) != len(commits) {
		err, uncertain = fmt.Errorf("commit puts: %d answers to %d puts", len(committed.Results), len(commits)), true
	}
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			bt.turnOff("a master does not know CommitPuts", err)
		}
		fallBack(toCommit, uncertain)
		return
	}
	for i, r := range committed.Results {
		p, cp := toCommit[i], commits[i]
		ierr := rpcerr.FromItem(r.Error)
		switch {
		case ierr == nil:
			if bp := grants[i]; bp != nil {
				c.storePut(p.key, p.b, p.class, bp)
			}
			answer(p, batchResult{done: true, deduped: cp.Volume == 0})
		case !uncertain && (errors.Is(ierr, raisfs.ErrConflict) || errors.Is(ierr, raisfs.ErrInvalidArgument) || errors.Is(ierr, raisfs.ErrPermissionDenied)):
			answer(p, batchResult{done: true, err: fmt.Errorf("put %q: %w", p.key, ierr)})
		default:
			// Lease expired, blob deleted meanwhile, not committed for sure:
			// the one-by-one path starts over (commits are idempotent).
			// An item's own error is the state machine's refusal, or says
			// whether the entry may still commit.
			answer(p, batchResult{uncertain: uncertain || errors.Is(ierr, raisfs.ErrOutcomeUnknown)})
		}
	}
	return behind
}

// upload sends the bodies of batch[items] (all placed in volume vol) to
// each replica in one request, and reports which of them reached the
// write quorum.
func (bt *batcher) upload(ctx context.Context, vol uint64, batch []*pendingPut, begun []*masterpb.BeginPutResult, items []int) []bool {
	c := bt.c
	bp := begun[items[0]].Put
	its := make([]blobbatch.Item, len(items))
	for j, i := range items {
		its[j] = blobbatch.Item{Hash: batch[i].b.hash, Lease: begun[i].Put.Lease, Body: batch[i].b.mem}
	}
	ok := make([]bool, len(items))
	payload, err := blobbatch.Encode(its)
	if err != nil {
		return ok
	}
	stored := make([][]bool, len(bp.Replicas))
	var wg sync.WaitGroup
	for r, rep := range bp.Replicas {
		wg.Go(func() {
			res, err := bt.postBatch(ctx, rep, vol, payload, len(its))
			if err != nil {
				c.log.Warn("batch upload failed", "volume", vol, "replica", rep.Id, "puts", len(its), "err", err)
				return
			}
			stored[r] = make([]bool, len(its))
			sealed := false
			for j, x := range res {
				stored[r][j] = x.Status == http.StatusCreated || x.Status == http.StatusOK
				sealed = sealed || x.Code == "sealed"
			}
			if sealed {
				c.reportFull(ctx, vol, rep.Id)
			}
		})
	}
	wg.Wait()
	quorum := int(max(bp.WriteQuorum, 1))
	for j := range items {
		n := 0
		for r := range stored {
			if stored[r] != nil && stored[r][j] {
				n++
			}
		}
		ok[j] = n >= quorum
	}
	return ok
}

func (bt *batcher) postBatch(ctx context.Context, rep *masterpb.Replica, vol uint64, payload []byte, n int) ([]blobbatch.Result, error) {
	url := fmt.Sprintf("http://%s/v1/volumes/%d/blobs", rep.Address, vol)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", blobbatch.ContentType)
	resp, err := bt.c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		err := fmt.Errorf("status %d (%s)", resp.StatusCode, resp.Header.Get("X-Rais-Error"))
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			bt.turnOff("a chunk server does not take batch uploads", err)
		}
		return nil, err
	}
	var out blobbatch.Response
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("batch answer: %w", err)
	}
	if len(out.Results) != n {
		return nil, fmt.Errorf("batch answer: %d results for %d blobs", len(out.Results), n)
	}
	return out.Results, nil
}

// commitMayHaveApplied reports whether a failed commit attempt may still
// have bound its key: every failure but the ones that say it was refused.
func commitMayHaveApplied(err error) bool {
	if err == nil {
		return false
	}
	e := rpcerr.FromStatus(err)
	return !errors.Is(e, raisfs.ErrNotLeader) && !errors.Is(e, raisfs.ErrConflict) &&
		!errors.Is(e, raisfs.ErrLeaseExpired) && !errors.Is(e, raisfs.ErrInvalidArgument) && !errors.Is(e, raisfs.ErrPermissionDenied)
}
