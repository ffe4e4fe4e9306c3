package raftfsm

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// BenchmarkScale builds a state of N objects (each with its own blob)
// through Apply in batches, as Raft would, then measures the file size,
// the process's memory, look-up latency, and snapshot and restore time:
//
//	go test ./raftfsm -run '^$' -bench BenchmarkScale -benchtime 1x -timeout 2h
//
// rss-anon is the process's anonymous memory (heap): it must not grow with
// N. rss-file is bbolt's memory-mapped file pages that were touched: page
// cache, which the kernel reclaims under pressure.
func BenchmarkScale(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("objects=%dM", n/1_000_000), func(b *testing.B) {
			for range b.N {
				benchScale(b, n)
			}
		})
	}
}

// applier returns a function that applies ops to f as the next Raft
// entries, one each, failing b on any error.
func applier(b *testing.B, f *FSM, now int64) func(ops ...any) {
	idx := uint64(1)
	return func(ops ...any) {
		entries := make([]Entry, len(ops))
		for i, op := range ops {
			data, err := Encode(now, op)
			if err != nil {
				b.Fatal(err)
			}
			entries[i] = Entry{Index: idx, Data: data}
			idx++
		}
		for _, r := range f.Apply(entries) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
}

func benchScale(b *testing.B, n int) {
	dir := b.TempDir()
	f, err := Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	now := time.Now().UnixNano()
	apply := applier(b, f, now)
	apply(&fsmpb.UpsertServer{Id: "cs1", Address: "a:1"})
	apply(&fsmpb.CreateVolume{Members: []string{"cs1"}})
	key := func(i int) []byte {
		return []byte(fmt.Sprintf("user%06d/INBOX/%016x", i%100_000, uint64(i)*0x9e3779b97f4a7c15))
	}
	b.ResetTimer()
	start := time.Now()
	const batch = 2048
	ops := make([]any, 0, batch)
	for i := range n {
		h := make([]byte, 32)
		binary.LittleEndian.PutUint64(h, uint64(i)*0x9e3779b97f4a7c15)
		binary.LittleEndian.PutUint64(h[8:], uint64(i))
		ops = append(ops, &fsmpb.PutObject{Key: key(i), Hash: h, Size: 40_000, Volume: 1, LeaseExpiryUnixNano: now + 1e12})
		if len(ops) == batch {
			apply(ops...)
			ops = ops[:0]
		}
	}
	if len(ops) > 0 {
		apply(ops...)
	}
	build := time.Since(start)
	b.StopTimer()
	if s := f.Stats(); s.Objects != int64(n) {
		b.Fatalf("objects = %d, want %d", s.Objects, n)
	}
	runtime.GC()
	anon, file := rss()
	fi, _ := os.Stat(filepath.Join(dir, "state.db"))

	// Look-ups of random existing keys.
	rng := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, 20000)
	for i := range lat {
		k := key(rng.IntN(n))
		t0 := time.Now()
		if _, _, _, err := f.ObjectWithBlob(k); err != nil {
			b.Fatal(err)
		}
		lat[i] = time.Since(t0)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })

	t0 := time.Now()
	snapPath := filepath.Join(dir, "snap")
	out, err := os.Create(snapPath)
	if err != nil {
		b.Fatal(err)
	}
	s, err := f.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(out, 1<<20)
	if _, err := s.WriteTo(w); err != nil {
		b.Fatal(err)
	}
	w.Flush()
	out.Sync()
	out.Close()
	s.Release()
	snapTime := time.Since(t0)

	g, err := Open(filepath.Join(dir, "restored.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	in, _ := os.Open(snapPath)
	t0 = time.Now()
	if err := g.Restore(bufio.NewReaderSize(in, 1<<20)); err != nil {
		b.Fatal(err)
	}
	restoreTime := time.Since(t0)
	in.Close()
	if g.Stats().Objects != int64(n) {
		b.Fatal("restored state differs")
	}

	b.ReportMetric(build.Seconds(), "build-s")
	b.ReportMetric(float64(n)/build.Seconds(), "puts/s")
	b.ReportMetric(float64(fi.Size())/(1<<20), "db-MiB")
	b.ReportMetric(float64(anon)/(1<<20), "rss-anon-MiB")
	b.ReportMetric(float64(file)/(1<<20), "rss-file-MiB")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "lookup-p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "lookup-p99-us")
	b.ReportMetric(snapTime.Seconds(), "snapshot-s")
	b.ReportMetric(restoreTime.Seconds(), "restore-s")
}

// rss returns the process's anonymous and file-backed resident memory.
func rss() (anon, file int64) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		fields := strings.Fields(l)
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "RssAnon:":
			anon = v << 10
		case "RssFile:":
			file = v << 10
		}
	}
	return anon, file
}
