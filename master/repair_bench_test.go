package master

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raisfs/raisfs"
	rclient "github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// BenchmarkRepair measures re-replication after the loss of a chunk server
// that holds at least 2 GiB, while a light read load runs, and compares
// its rate with the disk's sequential write bandwidth measured in the
// same run (ARCHITECTURE.md, "Performance"):
//
//	go test ./master -run '^$' -bench Repair -benchtime 1x
//
// Five chunk servers and three masters run in this process, all on one
// disk: a copy reads the source's volume file and writes the target's on
// the same device, as a real repair reads one server's disk and writes
// another's.
func BenchmarkRepair(b *testing.B) {
	const perServer = 2 << 30
	dir := b.TempDir()
	disk := seqWriteMBps(b, dir, 1<<30)

	c := mustCluster(b, 3, func(cfg *Config) {
		cfg.RepairAfter = time.Second
		cfg.RepairInterval = 100 * time.Millisecond
		cfg.DefaultCopies = 3
	})
	css := map[string]*testChunkServer{}
	for i := range 5 {
		id := fmt.Sprintf("cs%d", i+1)
		css[id] = startChunkServer(b, id, "dc1", fmt.Sprintf("r%d", i+1), masterAddrs(c))
	}
	waitServers(b, c, 5)
	m := client(b, c.masters[0].APIAddr())
	sdk, err := rclient.New(ctxT(b), rclient.Config{Masters: masterAddrs(c), Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer sdk.Close()

	// Fill until some server holds perServer bytes.
	const objSize = 8 << 20
	var keys []string
	var next atomic.Int64
	fillStart := time.Now()
	for most := int64(0); most < perServer; {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 8 {
					i := next.Add(1)
					body := make([]byte, objSize)
					r := rand.New(rand.NewPCG(uint64(i), 1))
					for j := 0; j < len(body); j += 8 {
						v := r.Uint64()
						for k := range 8 {
							body[j+k] = byte(v >> (8 * k))
						}
					}
					if _, err := sdk.Put(ctxT(b), fmt.Sprintf("obj/%d", i), bytes.NewReader(body), nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			return
		}
		l := c.waitLeader()
		servers, _ := l.fsm.Servers()
		most = 0
		for id := range servers {
			if hb, ok := l.registry.get(id); ok {
				most = max(most, hb.report.UsedBytes)
			}
		}
	}
	for i := int64(1); i <= next.Load(); i++ {
		keys = append(keys, fmt.Sprintf("obj/%d", i))
	}
	fillTook := time.Since(fillStart)

	// The victim: the fullest server.
	l := c.waitLeader()
	servers, _ := l.fsm.Servers()
	var ids []string
	for id := range servers {
		ids = append(ids, id)
	}
	used := func(id string) int64 { hb, _ := l.registry.get(id); return hb.report.UsedBytes }
	sort.Slice(ids, func(i, j int) bool { return used(ids[i]) > used(ids[j]) })
	victim := ids[0]
	vols, _ := l.fsm.Volumes()
	var lost []raisfs.VolumeID
	var bytesLost int64
	for id, v := range vols {
		if slices.Contains(v.Members, victim) && (v.State == fsmpb.VolumeState_VOLUME_WRITABLE || v.State == fsmpb.VolumeState_VOLUME_SEALED) {
			lost = append(lost, id)
			sz, _ := l.registry.volumeReport(uint64(id), v.Members)
			bytesLost += sz
		}
	}

	// A light read load runs throughout.
	stop := make(chan struct{})
	var reads, readErrs atomic.Int64
	var rwg sync.WaitGroup
	rwg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			k := keys[rand.IntN(len(keys))]
			if _, err := get(b, m, k); err != nil {
				readErrs.Add(1)
			}
			reads.Add(1)
		}
	})

	// The disk's bandwidth now, with the page cache as full of dirty
	// pages as the copies will find it, is the fair yardstick.
	diskNow := seqWriteMBps(b, dir, 1<<30)
	b.ResetTimer()
	killed := time.Now()
	css[victim].close()
	var down time.Time // when the leader declared the victim down: the copies start
	testPoll(b, 30*time.Minute, "full redundancy", func() bool {
		l := c.waitLeader()
		if ss, _ := l.fsm.Servers(); down.IsZero() && ss[victim].State == fsmpb.ServerState_SERVER_DOWN {
			down = time.Now()
		}
		vs, err := l.fsm.Volumes()
		if err != nil {
			return false
		}
		for _, id := range lost {
			if slices.Contains(vs[id].Members, victim) {
				return false
			}
		}
		return true
	})
	healed := time.Since(killed)
	b.StopTimer()
	close(stop)
	rwg.Wait()

	copyTime := healed - down.Sub(killed)
	rate := float64(bytesLost) / (1 << 20) / copyTime.Seconds()
	b.ReportMetric(float64(bytesLost)/(1<<30), "GiB-lost")
	b.ReportMetric(healed.Seconds(), "s-to-full-redundancy")
	b.ReportMetric(copyTime.Seconds(), "s-copying")
	b.ReportMetric(rate, "repair-MiB/s")
	b.ReportMetric(disk, "disk-idle-MiB/s")
	b.ReportMetric(diskNow, "disk-MiB/s")
	b.ReportMetric(rate/diskNow*100, "%-of-disk")
	b.Logf("filled %d objects of %d MiB in %s; lost %s: %d volumes, %.2f GiB; full redundancy %s after the kill; %d reads during it, %d failed",
		len(keys), objSize>>20, fillTook.Round(time.Second), victim, len(lost), float64(bytesLost)/(1<<30), healed.Round(10*time.Millisecond), reads.Load(), readErrs.Load())
	if readErrs.Load() > 0 {
		b.Errorf("%d reads failed during the repair", readErrs.Load())
	}
}

// seqWriteMBps writes n bytes to a file in dir in 1 MiB writes and fsyncs
// it, and returns MiB/s.
func seqWriteMBps(b *testing.B, dir string, n int64) float64 {
	f, err := os.Create(filepath.Join(dir, "seq"))
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := bytes.Repeat([]byte{0x5a}, 1<<20)
	start := time.Now()
	for w := int64(0); w < n; w += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return float64(n) / (1 << 20) / time.Since(start).Seconds()
}
