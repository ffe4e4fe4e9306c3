package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/raisfs/raisfs/client"
)

// bench runs N puts then N gets of size S at concurrency C and prints
// throughput and latency percentiles, like SeaweedFS's `weed benchmark`.
// It also reports CPU time per operation of this process and of every
// `rais` process on the machine (the cluster of `rais dev`), from their
// rusage before and after each phase.
func bench(ctx context.Context, cfg client.Config, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("raisadm bench", flag.ContinueOnError)
	fl.SetOutput(stderr)
	n := fl.Int("n", 10000, "objects to put, then to get")
	size := fl.String("size", "4KiB", "object size (B, KiB, MiB suffixes)")
	conc := fl.Int("c", 16, "concurrent requests")
	class := fl.String("class", "", "replication class (default: the cluster's)")
	prefix := fl.String("prefix", fmt.Sprintf("bench/%d/", time.Now().UnixNano()), "key prefix")
	cpuProfile := fl.String("cpuprofile", "", "write this process's CPU profile to FILE")
	records := fl.Bool("records", false, "also commit a records transaction per key, then read each record (the mail index's costs)")
	lookupCache := fl.Int("lookup-cache", 0, "the SDK's look-up cache, in entries (client.Config.LookupCache): gets of keys this run put skip the masters; 0: every get asks them")
	batch := fl.Bool("batch", true, "let the SDK group concurrent small puts (false: client.Config.NoPutBatching, every put on its own)")
	if err := fl.Parse(args); err != nil || fl.NArg() > 0 || *n < 1 || *conc < 1 || *lookupCache < 0 {
		return errUsage
	}
	cfg.LookupCache = *lookupCache
	cfg.NoPutBatching = !*batch
	c, err := client.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	sz, err := parseSize(*size)
	if err != nil {
		fmt.Fprintf(stderr, "raisadm bench: %v\n", err)
		return errUsage
	}
	fmt.Fprintf(stdout, "bench: %d puts then %d gets of %s at concurrency %d\n", *n, *n, *size, *conc)
	keys := make([]string, *n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%08d", *prefix, i)
	}
	put := func(i int) error {
		body := make([]byte, sz)
		binary.LittleEndian.PutUint64(body, uint64(time.Now().UnixNano())^uint64(i)<<32) // distinct content: no dedup
		copy(body[min(8, len(body)):], keys[i])
		_, err := c.Put(ctx, keys[i], bytes.NewReader(body), &client.PutOptions{Class: *class})
		return err
	}
	get := func(i int) error {
		r, err := c.Get(ctx, keys[i])
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(io.Discard, r)
		return err
	}
	txn := func(i int) error {
		_, err := c.Commit(ctx, new(client.Txn).Put(keys[i], []byte("bench")))
		return err
	}
	read := func(i int) error {
		_, _, err := c.Record(ctx, keys[i])
		return err
	}
	type phase struct {
		name string
		op   func(int) error
	}
	phases := []phase{{"put", put}, {"get", get}}
	if *records {
		phases = append(phases, phase{"txn", txn}, phase{"record read", read})
	}
	for _, ph := range phases {
		groups0, grouped0 := c.BatchStats()
		res, err := runPhase(ctx, ph.name, *n, *conc, ph.op, stdout)
		if err != nil {
			return err
		}
		secs := res.elapsed.Seconds()
		rate := ""
		if ph.name == "put" || ph.name == "get" {
			rate = fmt.Sprintf(", %.1f MiB/s", float64(res.ok)*float64(sz)/secs/(1<<20))
		}
		fmt.Fprintf(stdout, "%s: %d ok, %d failed in %.2fs: %.0f ops/s%s\n", ph.name, res.ok, res.failed, secs, float64(res.ok)/secs, rate)
		fmt.Fprintf(stdout, "  latency p50 %s  p90 %s  p99 %s  max %s\n", res.pct(50), res.pct(90), res.pct(99), res.pct(100))
		if res.cpu.total() > 0 && res.ok > 0 {
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(res.ok) }
			fmt.Fprintf(stdout, "  cpu %.3f ms per op (this process and %d rais processes): client %.3f, masters %.3f, chunk servers %.3f, other %.3f\n",
				per(res.cpu.total()), res.procs, per(res.cpu.client), per(res.cpu.masters), per(res.cpu.chunkservers), per(res.cpu.other))
		}
		if groups, grouped := c.BatchStats(); groups > groups0 {
			fmt.Fprintf(stdout, "  %d puts in %d groups (%.1f per group)\n", grouped-grouped0, groups-groups0, float64(grouped-grouped0)/float64(groups-groups0))
		}
		if res.firstErr != nil {
			fmt.Fprintf(stdout, "  first error: %v\n", oneLine(res.firstErr))
		}
	}
	return nil
}

type phaseResult struct {
	ok, failed int
	elapsed    time.Duration
	lat        []time.Duration
	cpu        cpuTimes
	procs      int
	firstErr   error
}

func (r phaseResult) pct(p int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := min(len(r.lat)-1, len(r.lat)*p/100)
	return r.lat[i].Round(10 * time.Microsecond)
}

func runPhase(ctx context.Context, name string, n, conc int, op func(int) error, stdout io.Writer) (phaseResult, error) {
	var bar *progressbar.ProgressBar
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && stdout == os.Stdout {
		bar = progressbar.NewOptions(n, progressbar.OptionSetDescription(name), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString("ops"), progressbar.OptionClearOnFinish())
	}
	cpu0, procs := clusterCPU()
	var next atomic.Int64
	var mu sync.Mutex
	res := phaseResult{lat: make([]time.Duration, 0, n)}
	var wg sync.WaitGroup
	start := time.Now()
	lastPrint := start
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				err := op(i)
				d := time.Since(t0)
				mu.Lock()
				if err == nil {
					res.ok++
					res.lat = append(res.lat, d)
				} else {
					res.failed++
					if res.firstErr == nil {
						res.firstErr = err
					}
				}
				done := res.ok + res.failed
				if bar != nil {
					bar.Add(1)
				} else if time.Since(lastPrint) > 2*time.Second {
					lastPrint = time.Now()
					fmt.Fprintf(stdout, "  %s: %d/%d\n", name, done, n)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if bar != nil {
		bar.Finish()
	}
	cpu1, _ := clusterCPU()
	res.cpu, res.procs = cpu1.sub(cpu0), procs
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench %s: %w", name, err)
	}
	return res, nil
}

// cpuTimes is user+system CPU time by role.
type cpuTimes struct{ client, masters, chunkservers, other time.Duration }

func (c cpuTimes) total() time.Duration { return c.client + c.masters + c.chunkservers + c.other }

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{c.client - o.client, c.masters - o.masters, c.chunkservers - o.chunkservers, c.other - o.other}
}

// clusterCPU is the user+system CPU time used so far by this process and
// by every process on the machine whose command is `rais` (the masters and
// chunk servers of `rais dev`), by role, and how many of those there are.
func clusterCPU() (cpuTimes, int) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	t := cpuTimes{client: time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))}
	procs := 0
	tick := 100.0 // USER_HZ on Linux
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "rais" {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// Fields after the ")" of the command name: utime is the 14th
		// field of the line, stime the 15th.
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		used := time.Duration((ut + st) / tick * float64(time.Second))
		procs++
		args, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		switch a := strings.Split(string(args), "\x00"); {
		case len(a) > 1 && a[1] == "master":
			t.masters += used
		case len(a) > 1 && a[1] == "chunkserver":
			t.chunkservers += used
		default:
			t.other += used
		}
	}
	return t, procs
}

func parseSize(s string) (int, error) {
	mult := 1
	for _, u := range []struct {
		suffix string
		m      int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1000}, {"MB", 1000000}, {"K", 1 << 10}, {"M", 1 << 20}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 || v*mult > 1<<30 {
		return 0, fmt.Errorf("size %q: want a number with an optional B/KiB/MiB suffix, at most 1 GiB", s)
	}
	return v * mult, nil
}
