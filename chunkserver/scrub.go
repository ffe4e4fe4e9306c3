package chunkserver

import (
	"context"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/raisfs/raisfs"
)

// The scrubber finds bit rot before a read does: it re-reads every live
// needle of every volume, verifying the block checksums and the BLAKE3
// name exactly as a read would, at a bounded rate. A needle that fails is
// marked corrupt (never served again) and counted in the volume's status;
// the heartbeat carries the count to the masters, which replace this copy
// of the volume from a healthy member.

const scrubBurst = 1 << 20

func (s *Store) scrubLoop(ctx context.Context) {
	lim := rate.NewLimiter(rate.Limit(s.cfg.ScrubBytesPerSec), scrubBurst)
	// The first pass starts within an hour (sooner if passes are more
	// frequent), at a random point: servers restarted together do not
	// scrub together, and a server restarted daily still scrubs.
	first := time.NewTimer(rand.N(min(s.cfg.ScrubEvery, time.Hour)))
	select {
	case <-ctx.Done():
		first.Stop()
		return
	case <-first.C:
	}
	for {
		start := time.Now()
		if !s.scrubPass(ctx, lim) {
			return
		}
		s.metrics.scrubPasses.Inc()
		t := time.NewTimer(time.Until(start.Add(s.cfg.ScrubEvery)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// scrubPass verifies every volume once; false when ctx ended it.
func (s *Store) scrubPass(ctx context.Context, lim *rate.Limiter) bool {
	s.mu.RLock()
	ids := make([]raisfs.VolumeID, 0, len(s.volumes))
	for id := range s.volumes {
		ids = append(ids, id)
	}
	s.mu.RUnlock()
	slices.Sort(ids)
	for _, id := range ids {
		v, _, err := s.volume(id)
		if err != nil {
			continue // dropped or closed meanwhile
		}
		for _, h := range v.liveHashes() {
			if ctx.Err() != nil {
				return false
			}
			if !s.scrubNeedle(ctx, lim, v, h) {
				return false
			}
		}
	}
	return true
}

// scrubNeedle verifies one needle; false when ctx ended.
func (s *Store) scrubNeedle(ctx context.Context, lim *rate.Limiter, v *Volume, h raisfs.Hash) bool {
	b, err := v.openBlob(h) // verifies small needles whole
	if err != nil {
		return ctx.Err() == nil // deleted meanwhile, or found corrupt (marked)
	}
	defer b.Close()
	for n := needleLen(b.Size); n > 0; n -= scrubBurst {
		if lim.WaitN(ctx, int(min(n, scrubBurst))) != nil {
			return false
		}
	}
	if b.body == nil {
		b.WriteRange(io.Discard, 0, b.Size) // marks the needle corrupt on a mismatch
	}
	s.metrics.scrubBytes.Add(float64(needleLen(b.Size)))
	return true
}

// liveHashes lists the volume's live needles now.
func (v *Volume) liveHashes() []raisfs.Hash {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]raisfs.Hash, 0, v.liveCount)
	for h, e := range v.entries {
		if e.state == stateLive {
			out = append(out, h)
		}
	}
	return out
}
