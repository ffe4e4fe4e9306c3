package master

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func barriers(s *Server, kind string) float64 {
	return testutil.ToFloat64(s.metrics.readBarriers.WithLabelValues(kind))
}

// Back-to-back reads on the leader share one quorum round through the
// read lease; with the lease off, every read pays its own.
func TestReadLease_ReadsSkipTheQuorumRound(t *testing.T) {
	for _, lease := range []time.Duration{0, -1} {
		c := mustCluster(t, 3, func(cfg *Config) { cfg.ReadLease = lease })
		l := c.waitLeader()
		m := client(t, l.APIAddr())
		if err := putRecord(t, m, "k", "v1"); err != nil {
			t.Fatal(err)
		}
		reads := func() (quorum, leased float64) {
			q0, l0 := barriers(l, "quorum"), barriers(l, "lease")
			for range 20 {
				if v, err := readRecord(t, m, "k"); err != nil || v != "v1" {
					t.Fatalf("read = %q, %v; want v1", v, err)
				}
			}
			return barriers(l, "quorum") - q0, barriers(l, "lease") - l0
		}
		if lease < 0 {
			if quorum, leased := reads(); quorum != 20 || leased != 0 {
				t.Errorf("lease off: %v quorum rounds and %v leased reads for 20 reads, want 20 and 0", quorum, leased)
			}
			continue
		}
		// 20 reads take far less than a lease (150 ms); but a loaded
		// machine that delays the lease clock's ticks past 40 ms turns
		// leasing off for a while (it cannot tell that from a pause), so
		// wait for a batch that ran undisturbed.
		var quorum, leased float64
		testPoll(t, 10*time.Second, "20 reads, most under the lease", func() bool {
			quorum, leased = reads()
			return leased >= 10 && quorum <= 10
		})
	}
}

// A leader cut off from the group stops serving reads before the others
// can elect a new leader and commit anything: it never answers with what
// the new leader has overwritten.
func TestReadLease_CutOffLeaderNeverServesStaleReads(t *testing.T) {
	c := mustCluster(t, 3, nil)
	old := c.waitLeader()
	om := client(t, old.APIAddr())
	if err := putRecord(t, om, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	if v, err := readRecord(t, om, "k"); err != nil || v != "v1" {
		t.Fatalf("read = %q, %v; want v1", v, err)
	}
	old.raftCut.Store(true)
	defer old.raftCut.Store(false)

	// Keep reading at the old leader until the others have a new one and
	// have committed v2, then a while longer.
	var newLeader *Server
	var committed time.Time
	for deadline := time.Now().Add(10 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatal("no new leader committed v2 within 10 s")
		}
		v, err := readRecord(t, om, "k")
		switch {
		case err == nil && v == "v1" && !committed.IsZero():
			t.Fatalf("the cut-off leader served v1 %v after the new leader %s committed v2", time.Since(committed), newLeader.ID())
		case err == nil && v != "v1":
			t.Fatalf("the cut-off leader read %q", v)
		}
		if newLeader == nil {
			for _, s := range c.masters {
				if s != old && s.IsLeader() && s.ready.Load() {
					newLeader = s
				}
			}
			if newLeader != nil {
				if err := putRecord(t, client(t, newLeader.APIAddr()), "k", "v2"); err != nil {
					t.Fatalf("put v2 at the new leader: %v", err)
				}
				committed = time.Now()
			}
		} else if time.Since(committed) > time.Second {
			break
		}
		time.Sleep(time.Millisecond) // reading as fast as a client would; not a wait for a condition
	}
}

// The lease's rules, on a made-up clock.
func TestReadLease_Rules(t *testing.T) {
	const d, hb = 150 * time.Millisecond, 300 * time.Millisecond
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	fresh := func() *readLease {
		l := &readLease{}
		l.tick(at(0), hb)
		return l
	}

	l := fresh()
	l.extend(5, at(1), at(2), d)
	for _, c := range []struct {
		term uint64
		ms   int
		want bool
	}{{5, 2, true}, {5, 150, true}, {5, 151, false}, {6, 2, false}} {
		if got := l.valid(c.term, at(c.ms)); got != c.want {
			t.Errorf("granted at 1 ms: valid(term %d, %d ms) = %v, want %v", c.term, c.ms, got, c.want)
		}
	}

	// A gap between ticks (a pause) drops the lease and refuses new ones
	// for a heartbeat timeout after the gap was seen.
	l = fresh()
	l.extend(5, at(1), at(2), d)
	l.tick(at(100), hb) // 100 ms since the last tick: the process did not run
	if l.valid(5, at(100)) {
		t.Error("lease survived a pause")
	}
	l.tick(at(110), hb)
	l.extend(5, at(110), at(111), d)
	if l.valid(5, at(112)) {
		t.Error("lease granted right after a pause")
	}
	for ms := 120; ms <= 410; ms += 10 {
		l.tick(at(ms), hb)
	}
	l.extend(5, at(410), at(411), d)
	if !l.valid(5, at(412)) {
		t.Error("no lease a heartbeat timeout after the pause")
	}

	// Late ticks (the clock goroutine has not run): no new lease.
	l = fresh()
	l.extend(5, at(60), at(61), d)
	if l.valid(5, at(62)) {
		t.Error("lease granted while the clock goroutine was 61 ms late")
	}

	// A membership change or a shutdown drops it.
	l = fresh()
	l.extend(5, at(1), at(2), d)
	thaw := l.freeze()
	l.extend(5, at(3), at(4), d)
	if l.valid(5, at(5)) {
		t.Error("lease during a membership change")
	}
	thaw()
	if l.valid(5, at(5)) {
		t.Error("a lease from before a membership change survived it")
	}
	l.extend(5, at(6), at(7), d)
	if !l.valid(5, at(8)) {
		t.Error("no lease after the membership change ended")
	}
	l.close()
	if l.valid(5, at(9)) {
		t.Error("lease after close")
	}
}
