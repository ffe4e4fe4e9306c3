package master

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// readLease lets the leader serve linearizable reads without a quorum
// round for a while after one succeeded.
//
// Why it is safe (hashicorp/raft v1.7): a follower that has a leader
// refuses every vote (and pre-vote) for another candidate, and it forgets
// its leader only when HeartbeatTimeout has passed since it last heard
// from it (or when it restarts, or is told to by a leadership transfer).
// A quorum round that the leader starts at t0 succeeds only when a quorum
// of followers heard from it at or after t0 (one in-flight heartbeat
// aside: see ARCHITECTURE.md). Any election needs a vote from one of them,
// so no other leader can exist before t0 + HeartbeatTimeout. The lease
// lasts ReadLease (half of it by default) from t0, measured on the
// monotonic clock, which also runs while a process is paused. What the
// lease cannot see, it is dropped for:
//   - a new term, or this master no longer the leader;
//   - a membership change (the quorum it counted may no longer be one);
//   - a leadership transfer (the target may be elected at once).
//
// A restarted master has forgotten its leader and would vote at once, so
// a master waits ReadLease before it starts Raft (see New).
//
// A pause (SIGSTOP, a VM stall) is the other thing the lease must see:
// hashicorp/raft counts a heartbeat answer that was in flight when a
// verification started, so right after a pause a verification can succeed
// on an answer sent before it, while another leader was being elected. A
// clock goroutine ticks every leaseTick; a gap between ticks longer than
// leaseGap means this process did not run, and no lease is granted until
// a heartbeat timeout after the gap was seen (by then every answer from
// before the pause has been consumed), nor while the ticks are late.
type readLease struct {
	mu     sync.Mutex
	term   uint64
	until  time.Time
	frozen int // membership changes or transfers under way: no lease
	closed bool

	lastTick   time.Time // the clock goroutine's last tick
	quietUntil time.Time // no lease before: a gap was seen
}

const (
	leaseTick = 10 * time.Millisecond
	leaseGap  = 40 * time.Millisecond
)

// tick records a clock tick at now; a late one starts a quiet period of d.
func (l *readLease) tick(now time.Time, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lastTick.IsZero() && now.Sub(l.lastTick) > leaseGap {
		l.quietUntil = now.Add(d)
		l.until = time.Time{}
	}
	l.lastTick = now
}

// valid reports whether reads in term may skip the quorum round now.
func (l *readLease) valid(term uint64, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.frozen == 0 && !l.closed && l.term == term && now.Before(l.until)
}

// extend records a quorum round of term that started at start and ended
// at now.
func (l *readLease) extend(term uint64, start, now time.Time, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frozen > 0 || l.closed || now.Sub(l.lastTick) > leaseGap || now.Before(l.quietUntil) {
		return
	}
	if l.term != term || start.Add(d).After(l.until) {
		l.term, l.until = term, start.Add(d)
	}
}

// remaining is how long the lease of term still runs at now (0: none).
func (l *readLease) remaining(term uint64, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frozen > 0 || l.closed || l.term != term || !now.Before(l.until) {
		return 0
	}
	return l.until.Sub(now)
}

// freeze drops the lease until the returned function is called; a lease
// taken before it is never used again.
func (l *readLease) freeze() (thaw func()) {
	l.mu.Lock()
	l.frozen++
	l.until = time.Time{}
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.frozen--
			l.until = time.Time{}
			l.mu.Unlock()
		})
	}
}

// close drops the lease for good (the master is shutting down and may
// hand leadership over).
func (l *readLease) close() {
	l.mu.Lock()
	l.closed = true
	l.until = time.Time{}
	l.mu.Unlock()
}

// leaseRead reports whether a read may be served without a quorum round.
func (s *Server) leaseRead() bool {
	if s.cfg.ReadLease <= 0 || s.raft.State() != raft.Leader {
		return false
	}
	return s.lease.valid(s.raft.CurrentTerm(), time.Now())
}

// leaseClockLoop ticks the lease's clock until ctx ends.
func (s *Server) leaseClockLoop(ctx context.Context) {
	t := time.NewTicker(leaseTick)
	defer t.Stop()
	for {
		s.lease.tick(time.Now(), s.cfg.HeartbeatTimeout)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
