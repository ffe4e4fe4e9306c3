package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/raisfs/raisfs/internal/chaos"
)

// errChaosFailed makes rais chaos exit 1 after printing its report.
var errChaosFailed = errors.New("a checker failed")

func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("rais chaos", flag.ContinueOnError)
	fl.SetOutput(stderr)
	duration := fl.Duration("duration", time.Minute, "how long the workload runs under faults")
	seed := fl.Uint64("seed", uint64(time.Now().UnixNano()), "draws the workload and the fault schedule: the same seed replays the same schedule")
	dir := fl.String("dir", "", "directory for the cluster, logs and, on failure, the evidence (default: a new temp dir)")
	servers := fl.Int("chunkservers", 5, "chunk servers (at least 5)")
	clients := fl.Int("clients", 6, "concurrent workload clients")
	keys := fl.Int("keys", 40, "size of the key space (small: operations overlap on keys)")
	heal := fl.Duration("heal-bound", 2*time.Minute, "after the faults, full redundancy and a clean fsck must come within this")
	verbose := fl.Bool("v", false, "log each fault as it happens")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: rais chaos [--duration D] [--seed N] [flags]\n\n"+
			"Starts 3 masters and N chunk servers as child processes, runs concurrent clients that put,\n"+
			"get, stat and delete self-describing messages while faults are injected (kill -9 and restart\n"+
			"of chunk servers and masters, the leader included; SIGSTOP pauses; bytes flipped and volume\n"+
			"files cut short on disk), heals everything, then checks: every acknowledged put reads back,\n"+
			"no read returned wrong bytes, deleted keys stay deleted, the history is linearizable\n"+
			"(porcupine), and the cluster is back at full redundancy with fsck clean. Exit 0 only if all\n"+
			"pass; on a failure the report, history and fault schedule are left in --dir.\n\nflags:\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fl.NArg() > 0 || *servers < 5 || *clients < 1 || *keys < 1 || *duration <= 0 {
		fmt.Fprintln(stderr, "rais chaos: want no arguments, at least 5 chunk servers, 1 client, 1 key and a positive duration")
		return errUsage
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "rais-chaos-")
		if err != nil {
			return err
		}
		*dir = d
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	fmt.Fprintf(stdout, "chaos: seed %d, %s, cluster in %s\n", *seed, *duration, *dir)
	rep, err := chaos.Run(ctx, chaos.Config{
		Bin: self, Dir: *dir, Seed: *seed, Duration: *duration, ChunkServers: *servers,
		Clients: *clients, Keys: *keys, HealBound: *heal, Logger: logger,
	})
	if err != nil {
		return err
	}
	chaos.PrintReport(stdout, rep, fmt.Sprintf("rais chaos --seed %d --duration %s --chunkservers %d --clients %d --keys %d", *seed, *duration, *servers, *clients, *keys))
	if !rep.OK() {
		return errChaosFailed
	}
	os.RemoveAll(*dir)
	return nil
}
