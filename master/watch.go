package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/metadata"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/api/txnpb"
)

// Record watches let a client (a mail front end) cache records and still
// read linearizably, without asking the leader at every read.
//
// The protocol, on one WatchRecords stream per client, to the leader:
//   - The client adds keys; the leader answers added once it will tell
//     the client about every later write to them.
//   - Before the leader applies a transaction that writes a watched key,
//     it sends an invalidation to every client watching it and waits for
//     each to acknowledge (the client has dropped the key and will not
//     cache it again until done), or for that client's lease to run out.
//     After the transaction it sends done. A key that a transaction is
//     invalidating is not confirmed as added until the transaction ends, so
//     a client that starts watching it then cannot cache the value from
//     before the write.
//   - A client uses its cache only under a lease: it pings, the leader
//     answers with how long its own read lease still runs, and the client
//     counts that from when it sent the ping. So no other leader can be
//     elected (and write) while a client trusts its cache: the read lease's
//     argument (readlease.go) covers it.
//
// A read that returns a cached value is linearizable: a write acknowledged
// before the read began was applied after this client had dropped the
// key, and the client caches only values it read from the leader while it
// watched the key with no invalidation pending and none arriving before
// the answer (see client/watch.go).

// watchMargin is added to a client's lease before the leader stops
// waiting for its acknowledgement: the client counts its lease from
// before the leader's, but the two clocks may run at slightly different
// rates.
const watchMargin = 5 * time.Millisecond

// watchKey is the gRPC metadata key naming the writer's own watch stream
// on a Txn: the client keeps its own cache right around its writes, so
// the leader need not wait for it.
const watchKey = "x-rais-watch"

// watcher is one client's stream.
type watcher struct {
	id   uint64
	send chan *masterpb.WatchEvent // to the stream's sender; never closed
	kill chan struct{}             // closed when an event could not be queued
	once sync.Once

	mu         sync.Mutex
	seq        uint64        // last invalidation sequence sent
	acked      uint64        // last acknowledged
	ackCh      chan struct{} // closed and replaced at every acknowledgement
	leaseUntil time.Time     // latest lease end granted (leader's clock)
	gone       bool          // the stream ended
}

// expired reports whether w's lease has ended at now.
func (w *watcher) expired(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !now.Before(w.leaseUntil.Add(watchMargin))
}

// watchRegistry is the leader's set of watchers, by key.
type watchRegistry struct {
	mu       sync.Mutex
	byKey    map[string]map[*watcher]struct{}
	pending  map[string]int                   // transactions invalidating the key
	deferred map[string]map[*watcher]struct{} // adds waiting for pending to end
	all      map[*watcher]struct{}
	ids      map[uint64]bool
	closed   bool
}

func newWatchRegistry() *watchRegistry {
	return &watchRegistry{byKey: map[string]map[*watcher]struct{}{}, pending: map[string]int{},
		deferred: map[string]map[*watcher]struct{}{}, all: map[*watcher]struct{}{}, ids: map[uint64]bool{}}
}

func addTo(m map[string]map[*watcher]struct{}, k string, w *watcher) {
	set := m[k]
	if set == nil {
		set = map[*watcher]struct{}{}
		m[k] = set
	}
	set[w] = struct{}{}
}

// add registers keys for w and returns those confirmed now; the others
// are confirmed (sent as added) when the transactions writing them end.
func (r *watchRegistry) add(w *watcher, keys [][]byte) (now [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		if r.pending[string(k)] > 0 {
			addTo(r.deferred, string(k), w)
			continue
		}
		addTo(r.byKey, string(k), w)
		now = append(now, k)
	}
	return now
}

// unwatch stops telling w about keys.
func (r *watchRegistry) unwatch(w *watcher, keys [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		for _, m := range []map[string]map[*watcher]struct{}{r.byKey, r.deferred} {
			if set := m[string(k)]; set != nil {
				delete(set, w)
				if len(set) == 0 {
					delete(m, string(k))
				}
			}
		}
	}
}

// remove forgets w. Transactions that already chose it still wait for its
// lease; later ones do not need to: the client drops its whole cache when
// its stream ends, and a client that has not noticed yet cannot renew its
// lease on this stream.
//
// That last point is why remove must not be called before the lease
// granted on the stream has run out if the client may still trust it:
// the stream handler keeps w registered until then (see WatchRecords).
func (r *watchRegistry) remove(w *watcher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.all, w)
	delete(r.ids, w.id)
	for k, set := range r.byKey {
		delete(set, w)
		if len(set) == 0 {
			delete(r.byKey, k)
		}
	}
	for k, set := range r.deferred {
		delete(set, w)
		if len(set) == 0 {
			delete(r.deferred, k)
		}
	}
}

// begin marks keys as being written and returns the watchers to tell
// (all but the writer's own stream, self; 0: none).
func (r *watchRegistry) begin(keys []string, self uint64) map[*watcher][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[*watcher][]string{}
	for _, k := range keys {
		r.pending[k]++
		for w := range r.byKey[k] {
			if w.id != self || self == 0 {
				out[w] = append(out[w], k)
			}
		}
	}
	return out
}

// end unmarks keys and confirms the adds that waited for them.
func (r *watchRegistry) end(keys []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	confirm := map[*watcher][][]byte{}
	for _, k := range keys {
		if r.pending[k]--; r.pending[k] > 0 {
			continue
		}
		delete(r.pending, k)
		for w := range r.deferred[k] {
			addTo(r.byKey, k, w)
			confirm[w] = append(confirm[w], []byte(k))
		}
		delete(r.deferred, k)
	}
	for w, ks := range confirm {
		w.post(&masterpb.WatchEvent{Added: ks})
	}
}

// post queues ev for w's stream. When the queue is full (the client does
// not keep up) the event is lost, so the stream is ended: the client drops
// its whole cache when it sees that, and the stream grants no more leases;
// a transaction that told it waits for the last lease to run out.
func (w *watcher) post(ev *masterpb.WatchEvent) bool {
	select {
	case w.send <- ev:
		return true
	default:
		w.once.Do(func() { close(w.kill) })
		return false
	}
}

// invalidate tells every watcher of keys (but the writer's own, self)
// that they are about to be written and waits until each has acknowledged
// or its lease has run out. The returned function ends the write: call it
// once the transaction has applied or certainly never will.
func (s *Server) invalidate(ctx context.Context, keys []string, self uint64) (end func(), err error) {
	r := s.watches
	targets := r.begin(keys, self)
	type sent struct {
		w   *watcher
		seq uint64
	}
	var told []sent
	end = func() {
		for _, t := range told {
			t.w.post(&masterpb.WatchEvent{Done: t.seq})
		}
		r.end(keys)
	}
	for w, ks := range targets {
		bs := make([][]byte, len(ks))
		for i, k := range ks {
			bs[i] = []byte(k)
		}
		// Numbered and queued under one lock, so invalidations reach the
		// client in sequence order: its acknowledgement of one covers
		// every earlier one.
		w.mu.Lock()
		w.seq++
		seq := w.seq
		if !w.post(&masterpb.WatchEvent{Seq: seq, Invalidate: bs}) {
			w.gone = true // lost, and the stream is ending: wait out its lease
		}
		w.mu.Unlock()
		told = append(told, sent{w, seq})
	}
	for _, t := range told {
		if err := t.w.waitAck(ctx, t.seq); err != nil {
			end()
			return nil, fmt.Errorf("invalidate cached records: %w", err)
		}
	}
	if len(told) > 0 {
		s.metrics.watchInvalidations.Add(float64(len(told)))
	}
	return end, nil
}

// waitAck waits until w acknowledged seq or its lease ran out.
func (w *watcher) waitAck(ctx context.Context, seq uint64) error {
	for {
		w.mu.Lock()
		if w.acked >= seq {
			w.mu.Unlock()
			return nil
		}
		ch, until, gone := w.ackCh, w.leaseUntil.Add(watchMargin), w.gone
		w.mu.Unlock()
		d := time.Until(until)
		if d <= 0 {
			return nil // the client no longer trusts its cache
		}
		if gone {
			ch = nil // no acknowledgement will come: wait out the lease
		}
		t := time.NewTimer(d)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

// writerWatch is the writer's own watch stream named in ctx's metadata.
func writerWatch(ctx context.Context) uint64 {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return 0
	}
	for _, v := range md.Get(watchKey) {
		if id, err := strconv.ParseUint(v, 10, 64); err == nil {
			return id
		}
	}
	return 0
}

// writtenRecords lists the record keys a transaction may write.
func writtenRecords(t *txnpb.Txn) []string {
	var keys []string
	for _, op := range t.Ops {
		switch o := op.Op.(type) {
		case *txnpb.TxnOp_Put:
			keys = append(keys, string(o.Put.Key))
		case *txnpb.TxnOp_Delete:
			keys = append(keys, string(o.Delete))
		}
	}
	return keys
}

// WatchRecords implements masterpb.MasterServer (see the top of this
// file). It is served by the leader only, without forwarding: a client's
// cache is only as good as its stream to the leader.
func (s *Server) WatchRecords(stream masterpb.Master_WatchRecordsServer) error {
	if s.raft.State() != raft.Leader || !s.ready.Load() {
		return fmt.Errorf("watch records: %w", raisfs.ErrNotLeader)
	}
	ctx := stream.Context()
	queue := s.cfg.watchQueue
	if queue <= 0 {
		queue = 1024
	}
	w := &watcher{send: make(chan *masterpb.WatchEvent, queue), kill: make(chan struct{}), ackCh: make(chan struct{})}
	r := s.watches
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("watch records: %w", raisfs.ErrUnavailable)
	}
	// Random, not counted: a client may name its stream on a Txn that
	// reaches another leader, where a counted id could be someone else's.
	for w.id == 0 || r.ids[w.id] {
		w.id = rand.Uint64()
	}
	r.ids[w.id] = true
	r.all[w] = struct{}{}
	r.mu.Unlock()
	if err := stream.Send(&masterpb.WatchEvent{WatcherId: w.id}); err != nil {
		r.remove(w)
		return err
	}
	term := s.raft.CurrentTerm()
	defer func() {
		// The client may trust what it cached until its lease ends;
		// transactions must keep waiting for it until then.
		w.mu.Lock()
		w.gone = true
		until := w.leaseUntil.Add(watchMargin)
		w.mu.Unlock()
		if d := time.Until(until); d > 0 {
			s.wg.Add(1)
			time.AfterFunc(d, func() { r.remove(w); s.wg.Done() })
		} else {
			r.remove(w)
		}
	}()

	// Every event goes out through one sender, in the order posted. The
	// loop below never blocks on the stream itself: a client that stops
	// reading fills the queue, which ends the stream (post), instead of
	// stalling this handler in a Send that flow control never releases.
	sendErr := make(chan error, 1)
	go func() {
		for {
			select {
			case ev := <-w.send:
				if err := stream.Send(ev); err != nil {
					sendErr <- err
					return
				}
			case <-ctx.Done(): // the handler returned, or the client left
				return
			}
		}
	}()

	recvErr := make(chan error, 1)
	reqs := make(chan *masterpb.WatchRequest)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				recvErr <- ctx.Err()
				return
			}
		}
	}()
	check := time.NewTicker(50 * time.Millisecond)
	defer check.Stop()
	for {
		select {
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-s.watchesClosed:
			return fmt.Errorf("watch records: master shutting down: %w", raisfs.ErrUnavailable)
		case <-w.kill:
			return fmt.Errorf("watch records: the client fell behind: %w", raisfs.ErrUnavailable)
		case <-check.C:
			if s.raft.State() != raft.Leader || s.raft.CurrentTerm() != term {
				return fmt.Errorf("watch records: %w", raisfs.ErrNotLeader)
			}
		case err := <-sendErr:
			return err
		case req := <-reqs:
			if req.Ack > 0 {
				w.mu.Lock()
				if req.Ack > w.acked && req.Ack <= w.seq {
					w.acked = req.Ack
					close(w.ackCh)
					w.ackCh = make(chan struct{})
				}
				w.mu.Unlock()
			}
			if len(req.Remove) > 0 {
				r.unwatch(w, req.Remove)
			}
			if len(req.Add) > 0 {
				if now := r.add(w, req.Add); len(now) > 0 {
					w.post(&masterpb.WatchEvent{Added: now})
				}
			}
			if req.Ping > 0 {
				lease := s.watchLease(ctx, term)
				if lease > 0 {
					w.mu.Lock()
					if until := time.Now().Add(lease); until.After(w.leaseUntil) {
						w.leaseUntil = until
					}
					w.mu.Unlock()
				}
				w.post(&masterpb.WatchEvent{Pong: req.Ping, LeaseNanos: int64(lease)})
			}
		}
	}
}

// watchLease is how long a client may trust its cache from now: what is
// left of this leader's read lease in term (0 without one).
func (s *Server) watchLease(ctx context.Context, term uint64) time.Duration {
	if s.cfg.ReadLease <= 0 {
		return 0
	}
	if !s.leaseRead() {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatTimeout)
		err := s.readBarrier(rctx) // a quorum round renews the lease
		cancel()
		if err != nil {
			return 0
		}
	}
	if s.raft.State() != raft.Leader || s.raft.CurrentTerm() != term {
		return 0
	}
	return s.lease.remaining(term, time.Now())
}

// closeWatches ends every watch stream (Close, before the gRPC server
// waits for its streams).
func (s *Server) closeWatches() {
	r := s.watches
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(s.watchesClosed)
	}
}
