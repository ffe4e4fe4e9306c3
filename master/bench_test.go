package master

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// The master group's performance figures (ARCHITECTURE.md, "Performance"):
//
//	go test ./master -run '^$' -bench . -benchtime 5s
//
// Every figure comes from a 3-master group with real Raft over TCP on
// loopback, raft-boltdb as log store and the bbolt state machine, all in
// this process.

func benchCluster(b *testing.B, logStore string) (*testCluster, *Server) {
	c := &testCluster{}
	for i := range 3 {
		cfg := DefaultConfig()
		cfg.ID = fmt.Sprintf("m%d", i+1)
		cfg.Dir = b.TempDir()
		cfg.RaftAddr, cfg.APIAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Logger = testLogger(b).With("master", cfg.ID)
		cfg.LogStore = logStore
		s, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		c.masters = append(c.masters, s)
		c.cfgs = append(c.cfgs, cfg)
		c.peers = append(c.peers, Peer{ID: cfg.ID, RaftAddr: s.RaftAddr()})
	}
	for _, s := range c.masters {
		if err := s.Bootstrap(c.peers); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, s := range c.masters {
			if s != nil {
				s.Close()
			}
		}
	})
	var leader *Server
	deadline := time.Now().Add(20 * time.Second)
	for leader == nil {
		for _, s := range c.masters {
			if s != nil && s.IsLeader() && s.ready.Load() {
				leader = s
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// One registered server and one volume, so puts have somewhere to point.
	ctx := context.Background()
	if _, err := leader.apply(ctx, &fsmpb.UpsertServer{Id: "cs1", Address: "127.0.0.1:1"}); err != nil {
		b.Fatal(err)
	}
	if _, err := leader.apply(ctx, &fsmpb.CreateVolume{Members: []string{"cs1"}}); err != nil {
		b.Fatal(err)
	}
	return c, leader
}

// putOp is a ~100-byte command: a message key, a hash, a size.
func putOp(i uint64) *fsmpb.PutObject {
	h := make([]byte, 32)
	for j := range 8 {
		h[j] = byte(i >> (8 * j))
	}
	return &fsmpb.PutObject{
		Key:  []byte(fmt.Sprintf("user%06d/INBOX/%016x", i%100000, i)),
		Hash: h, Size: 4096, Volume: 1, LeaseExpiryUnixNano: time.Now().Add(time.Hour).UnixNano(),
	}
}

func runParallel(b *testing.B, conc int, op func(i uint64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	b.ResetTimer()
	for range conc {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if err := op(uint64(i)); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if e := firstErr.Load(); e != nil {
		b.Fatal(*e)
	}
}

// BenchmarkCommit: 64 concurrent committers of ~100-byte commands on the
// leader, with each Raft log store, with Go's default GC target and with
// the one `rais master` sets (GCPercent).
func BenchmarkCommit(b *testing.B) {
	for _, store := range []string{"boltdb", "wal"} {
		for _, gc := range []int{100, GCPercent} {
			b.Run(fmt.Sprintf("log=%s/gogc=%d", store, gc), func(b *testing.B) {
				defer debug.SetGCPercent(debug.SetGCPercent(gc))
				_, leader := benchCluster(b, store)
				base := uint64(time.Now().UnixNano())
				runParallel(b, 64, func(i uint64) error {
					_, err := leader.apply(context.Background(), putOp(base+i))
					return err
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
			})
		}
	}
}

// BenchmarkLinearizableLookup: 64 concurrent linearizable look-ups of
// existing keys on the leader (read barrier + bbolt read).
func BenchmarkLinearizableLookup(b *testing.B) {
	_, leader := benchCluster(b, "boltdb")
	const keys = 10000
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < keys; i += 64 {
				leader.apply(context.Background(), putOp(uint64(i)))
			}
		})
	}
	wg.Wait()
	runParallel(b, 64, func(i uint64) error {
		_, err := leader.Lookup(context.Background(), &masterpb.LookupRequest{Key: putOp(i % keys).Key})
		return err
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkLeaderFailover: under a steady stream of commits, kill the
// leader (no leadership transfer) and time until a commit succeeds again.
func BenchmarkLeaderFailover(b *testing.B) {
	var total time.Duration
	for range b.N {
		b.StopTimer()
		c, leader := benchCluster(b, "boltdb")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 16 { // background load
			wg.Go(func() {
				for i := uint64(w) << 40; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					sent := false
					for _, s := range c.masters {
						if s != nil && s.IsLeader() {
							ctx, cancel := context.WithTimeout(context.Background(), time.Second)
							s.apply(ctx, putOp(i))
							cancel()
							sent = true
						}
					}
					if !sent { // no leader: back off as a client would, not spin
						time.Sleep(5 * time.Millisecond)
					}
				}
			})
		}
		time.Sleep(300 * time.Millisecond) // let the load reach steady state
		b.StartTimer()
		killed := time.Now()
		idx := c.index(leader)
		c.masters[idx] = nil
		killDone := make(chan struct{})
		go func() { leader.kill(); close(killDone) }() // the clock runs from the first blow
		var resumed time.Duration
		elected := time.Duration(0)
		for i := uint64(1 << 62); resumed == 0; i++ {
			for _, s := range c.masters {
				if s != nil && s.raft.State() == raft.Leader {
					if elected == 0 {
						elected = time.Since(killed)
						b.Logf("leader %s elected after %s", s.ID(), elected)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
					if _, err := s.apply(ctx, putOp(i)); err == nil {
						resumed = time.Since(killed)
					}
					cancel()
				}
			}
			if resumed == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		b.StopTimer()
		<-killDone
		close(stop)
		wg.Wait()
		total += resumed
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-resume")
}
