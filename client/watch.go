package client

import (
	"container/list"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/internal/failpoint"
	"github.com/raisfs/raisfs/internal/rpcerr"
)

// The record cache (Config.RecordCache). Reads of records through
// CachedRecord are answered from memory while the leader has promised to
// tell this client before any write to them (master/watch.go has the
// protocol and why it is linearizable). This side keeps to three rules:
//
//   - A value is cached only if, when its read was sent, the key was
//     confirmed watched on the current stream with no invalidation
//     pending, and nothing about the key changed before the answer came
//     (a counter, tick, orders every change; each key keeps the tick of
//     its last change and of when it was confirmed watched).
//   - Only keys read through the cache are tracked, at most
//     Config.RecordCache of them; the least recently read is dropped (and
//     unwatched at the leader) to make room for a new one.
//   - A cached value is used only while the lease runs: the leader's
//     answer to a ping, counted from when the ping was sent.
//   - When the stream ends, everything is dropped.

const (
	// watchPingEvery: the leader's read lease lasts half a heartbeat
	// timeout (150 ms by default); pinging well within it keeps the lease
	// continuous while reads come.
	watchPingEvery = 40 * time.Millisecond
	// watchIdleAfter: with no cached read for this long, the stream stops
	// pinging (an idle front end costs the leader nothing but the stream).
	watchIdleAfter = 2 * time.Second
	// watchSilentAfter: a stream whose pings go unanswered this long is
	// given up (a master that hangs rather than fails), and a new one
	// found.
	watchSilentAfter = 3 * time.Second
)

type cachedRecord struct {
	r  Record
	ok bool // false: the record does not exist
}

// recordCache is the client's cache of watched records.
type recordCache struct {
	c   *Client
	max int // keys watched at most
	wg  sync.WaitGroup

	mu         sync.Mutex
	epoch      uint64 // stream generation
	id         uint64 // the stream's id at the leader (0: not known yet)
	endSession context.CancelFunc
	send       chan *masterpb.WatchRequest
	leaseUntil time.Time
	lastUse    time.Time
	wake       chan struct{}            // capacity 1: a read wants the stream pinging again
	requested  map[string]*list.Element // keys read through the cache; in lru
	lru        *list.List               // of string, most recently read first
	tick       uint64                   // counts changes below
	watchedAt  map[string]uint64        // tick when the leader confirmed the key watched
	changed    map[string]uint64        // tick of the key's last invalidation or its end
	pending    map[string]int
	entries    map[string]cachedRecord
	invals     map[uint64][]string
	pings      map[uint64]time.Time
	nextPing   uint64
	lastPong   time.Time
	waiters    map[string]map[chan struct{}]struct{} // RecordChanged, by key

	hits, misses int64
}

func newRecordCache(c *Client, max int) *recordCache {
	rc := &recordCache{c: c, max: max, wake: make(chan struct{}, 1), requested: map[string]*list.Element{},
		lru: list.New(), waiters: map[string]map[chan struct{}]struct{}{}}
	rc.resetLocked()
	rc.wg.Go(rc.run)
	return rc
}

// resetLocked drops everything the stream promised (and wakes every
// RecordChanged waiter: what changed meanwhile is unknown).
func (rc *recordCache) resetLocked() {
	for k := range rc.waiters {
		rc.notifyLocked(k)
	}
	rc.epoch++
	rc.id = 0
	rc.endSession = nil
	rc.send = nil
	rc.leaseUntil = time.Time{}
	rc.watchedAt = map[string]uint64{}
	rc.changed = map[string]uint64{}
	rc.pending = map[string]int{}
	rc.entries = map[string]cachedRecord{}
	rc.invals = map[uint64][]string{}
	rc.pings = map[uint64]time.Time{}
	rc.lastPong = time.Now()
}

// run keeps a stream to the leader open until the client closes.
func (rc *recordCache) run() {
	ctx := rc.c.ctx
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := rc.session(ctx)
		rc.mu.Lock()
		rc.resetLocked()
		rc.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 5*time.Second {
			backoff = 10 * time.Millisecond
		}
		rc.c.log.Debug("record watch ended", "err", err)
		rc.c.leaderCheck.Store(0)
		t := time.NewTimer(backoff + rand.N(backoff))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, time.Second)
	}
}

// session runs one stream until it fails.
func (rc *recordCache) session(ctx context.Context) error {
	c := rc.c
	c.findLeader(ctx)
	cur := c.next.Load()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.masters[int(cur)%len(c.masters)].WatchRecords(sctx)
	if err != nil {
		c.next.CompareAndSwap(cur, cur+1)
		return err
	}
	send := make(chan *masterpb.WatchRequest, 256)
	rc.mu.Lock()
	rc.send = send
	rc.endSession = cancel
	var keys [][]byte
	for k := range rc.requested {
		keys = append(keys, []byte(k))
	}
	rc.mu.Unlock()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		defer cancel()
		ping := time.NewTicker(watchPingEvery)
		defer ping.Stop()
		if len(keys) > 0 {
			if stream.Send(&masterpb.WatchRequest{Add: keys}) != nil {
				return
			}
		}
		for {
			select {
			case <-sctx.Done():
				return
			case req := <-send:
				if stream.Send(req) != nil {
					return
				}
			case <-rc.wake:
				if stream.Send(rc.ping()) != nil {
					return
				}
			case <-ping.C:
				rc.mu.Lock()
				idle := time.Since(rc.lastUse) > watchIdleAfter
				silent := time.Since(rc.lastPong) > watchSilentAfter
				rc.mu.Unlock()
				if silent {
					return // unanswered pings: look for the leader again
				}
				if idle {
					rc.mu.Lock()
					rc.lastPong = time.Now() // not pinging: nothing to miss
					rc.mu.Unlock()
					continue
				}
				if stream.Send(rc.ping()) != nil {
					return
				}
			}
		}
	})
	for {
		ev, err := stream.Recv()
		if err != nil {
			if isNotLeader(err) {
				c.next.CompareAndSwap(cur, cur+1)
			}
			return err
		}
		if ack := rc.handle(ev); ack > 0 {
			select {
			case send <- &masterpb.WatchRequest{Ack: ack}:
			case <-sctx.Done():
				return sctx.Err()
			}
		}
	}
}

func isNotLeader(err error) bool {
	return errors.Is(rpcerr.FromStatus(err), raisfs.ErrNotLeader)
}

// ping records a ping's sending time and returns it.
func (rc *recordCache) ping() *masterpb.WatchRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.nextPing++
	rc.pings[rc.nextPing] = time.Now()
	return &masterpb.WatchRequest{Ping: rc.nextPing}
}

// handle applies one event; it returns the invalidation to acknowledge.
func (rc *recordCache) handle(ev *masterpb.WatchEvent) (ack uint64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if ev.WatcherId > 0 {
		rc.id = ev.WatcherId
	}
	for _, k := range ev.Added {
		if rc.requested[string(k)] != nil {
			rc.tick++
			rc.watchedAt[string(k)] = rc.tick
		}
	}
	if ev.Seq > 0 {
		var keys []string
		for _, k := range ev.Invalidate {
			if rc.beginLocked(string(k)) {
				keys = append(keys, string(k))
			}
		}
		rc.invals[ev.Seq] = keys
		ack = ev.Seq
	}
	if ev.Done > 0 {
		for _, k := range rc.invals[ev.Done] {
			rc.endLocked(k)
		}
		delete(rc.invals, ev.Done)
	}
	if ev.Pong > 0 {
		rc.lastPong = time.Now()
		if sent, ok := rc.pings[ev.Pong]; ok {
			delete(rc.pings, ev.Pong)
			if ev.LeaseNanos > 0 {
				if until := sent.Add(time.Duration(ev.LeaseNanos)); until.After(rc.leaseUntil) {
					rc.leaseUntil = until
				}
			}
		}
	}
	return ack
}

// changeLocked records a change to a tracked key.
func (rc *recordCache) changeLocked(k string) {
	if rc.requested[k] != nil {
		rc.tick++
		rc.changed[k] = rc.tick
	}
}

// beginLocked drops tracked key k and keeps it uncached until endLocked;
// it reports whether k is tracked (untracked keys are never cached).
func (rc *recordCache) beginLocked(k string) bool {
	if rc.requested[k] == nil {
		return false
	}
	delete(rc.entries, k)
	rc.pending[k]++
	rc.changeLocked(k)
	return true
}

// endLocked ends one beginLocked of k (k may have been dropped since).
func (rc *recordCache) endLocked(k string) {
	if rc.pending[k]--; rc.pending[k] <= 0 {
		delete(rc.pending, k)
	}
	rc.changeLocked(k)
	rc.notifyLocked(k)
}

// trackLocked makes key tracked (most recently read), dropping the least
// recently read key when there are max of them.
func (rc *recordCache) trackLocked(key string) {
	if e := rc.requested[key]; e != nil {
		rc.lru.MoveToFront(e)
		return
	}
	if rc.max <= 0 {
		return
	}
	if len(rc.requested) >= rc.max {
		old := rc.lru.Remove(rc.lru.Back()).(string)
		delete(rc.requested, old)
		delete(rc.watchedAt, old)
		delete(rc.changed, old)
		delete(rc.entries, old)
		delete(rc.pending, old)
		rc.sendLocked(&masterpb.WatchRequest{Remove: [][]byte{[]byte(old)}})
	}
	rc.requested[key] = rc.lru.PushFront(key)
	rc.sendLocked(&masterpb.WatchRequest{Add: [][]byte{[]byte(key)}})
}

// sendLocked queues req on the current stream, if any; a request that
// does not fit is dropped (an add is made again by the next stream; a
// lost remove only costs the leader an invalidation this client ignores).
func (rc *recordCache) sendLocked(req *masterpb.WatchRequest) {
	if rc.send == nil {
		return
	}
	select {
	case rc.send <- req:
	default:
	}
}

// get reads key through the cache.
func (rc *recordCache) get(ctx context.Context, key string) (Record, bool, error) {
	rc.mu.Lock()
	now := time.Now()
	if now.Sub(rc.lastUse) > watchIdleAfter {
		select { // the stream stopped pinging: start again
		case rc.wake <- struct{}{}:
		default:
		}
	}
	rc.lastUse = now
	rc.trackLocked(key)
	usable := rc.send != nil && rc.watchedAt[key] != 0 && rc.pending[key] == 0
	if usable && now.Before(rc.leaseUntil) {
		if e, ok := rc.entries[key]; ok {
			rc.hits++
			rc.mu.Unlock()
			return e.r, e.ok, nil
		}
	}
	epoch, sent := rc.epoch, rc.tick
	rc.misses++
	rc.mu.Unlock()

	r, ok, err := rc.c.Record(ctx, key)
	if err != nil {
		return Record{}, false, err
	}
	if usable {
		rc.mu.Lock()
		// Watched since before the read was sent (not dropped and added
		// again meanwhile), unchanged since, nothing pending.
		if w := rc.watchedAt[key]; rc.epoch == epoch && w != 0 && w <= sent && rc.changed[key] <= sent && rc.pending[key] == 0 {
			rc.entries[key] = cachedRecord{r: r, ok: ok}
		}
		rc.mu.Unlock()
	}
	return r, ok, nil
}

// ownWrite is a transaction of this client's in flight: the leader does
// not invalidate this client's stream for it, so the client keeps the
// keys out of its cache itself until the outcome is known.
type ownWrite struct {
	epoch uint64
	keys  []string
	// fresh holds, for each key that was watched with nothing pending when
	// the write was sent, the change count of the write's own drop: if the
	// key's last change is still that one when the write applied, nothing
	// else touched it in between and the written value may be cached, as a
	// read sent then and answered now could be.
	fresh map[string]uint64
}

// beginWrite drops keys and keeps them uncached until endWrite; it
// returns the stream id to name in the transaction (0: none, and the
// leader invalidates this client like any other).
func (rc *recordCache) beginWrite(keys []string) (ownWrite, uint64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.id == 0 {
		return ownWrite{}, 0
	}
	tracked := []string{}
	fresh := map[string]uint64{}
	for _, k := range keys {
		watched := rc.watchedAt[k] != 0 && rc.pending[k] == 0
		if rc.beginLocked(k) {
			tracked = append(tracked, k)
			if watched {
				fresh[k] = rc.changed[k]
			}
		}
	}
	return ownWrite{epoch: rc.epoch, keys: tracked, fresh: fresh}, rc.id
}

// endWrite ends w. If the transaction may still apply (its outcome is
// unknown), the stream is restarted: the leader will not tell this client
// when it does, so nothing cached can be trusted.
//
// written, when the transaction applied, is what it left in its keys (nil
// otherwise): each key still fresh (see ownWrite) is cached with it, so
// the writer's next read of its own write costs no round trip.
func (rc *recordCache) endWrite(w ownWrite, certain bool, written map[string]cachedRecord) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if w.epoch != rc.epoch || w.keys == nil {
		return
	}
	if !certain {
		if rc.endSession != nil {
			rc.endSession()
		}
		rc.resetLocked()
		return
	}
	for _, k := range w.keys {
		mine, isFresh := w.fresh[k]
		keep := isFresh && ((rc.changed[k] == mine && rc.pending[k] == 1) || failpoint.CacheOwnWritesBlindly)
		rc.endLocked(k)
		if e, ok := written[k]; keep && ok {
			rc.entries[k] = e
		}
	}
}

// notifyLocked wakes the RecordChanged waiters of key.
func (rc *recordCache) notifyLocked(key string) {
	for ch := range rc.waiters[key] {
		close(ch)
	}
	delete(rc.waiters, key)
}

// RecordChanged returns a channel that is closed when a write to key has
// applied (or may have: the cache's stream was restarted) after this
// call, as far as this client's record cache learns (Config.RecordCache:
// the key must have been read with CachedRecord). It never fires without
// the cache: callers keep polling as well. Call stop when no longer
// waiting.
func (c *Client) RecordChanged(key string) (changed <-chan struct{}, stop func()) {
	if c.records == nil {
		return nil, func() {}
	}
	rc := c.records
	ch := make(chan struct{})
	rc.mu.Lock()
	set := rc.waiters[key]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		rc.waiters[key] = set
	}
	set[ch] = struct{}{}
	rc.mu.Unlock()
	return ch, func() {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if set := rc.waiters[key]; set != nil {
			if _, ok := set[ch]; ok {
				delete(set, ch)
				if len(set) == 0 {
					delete(rc.waiters, key)
				}
			}
		}
	}
}

// CachedRecord reads the record at key as Record does, linearizably, but
// answers from the client's record cache when it can (Config.RecordCache;
// without it, it is Record). The returned Value must not be modified.
func (c *Client) CachedRecord(ctx context.Context, key string) (Record, bool, error) {
	if c.records == nil {
		return c.Record(ctx, key)
	}
	return c.records.get(ctx, key)
}

// RecordCacheStats returns the record cache's hits and misses.
func (c *Client) RecordCacheStats() (hits, misses int64) {
	if c.records == nil {
		return 0, 0
	}
	c.records.mu.Lock()
	defer c.records.mu.Unlock()
	return c.records.hits, c.records.misses
}
