package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/master"
)

func parsePeers(s string) ([]master.Peer, error) {
	var peers []master.Peer
	seen := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !raisfs.ValidNodeID(id) || addr == "" {
			return nil, fmt.Errorf("--peers entry %q: want ID=HOST:PORT", p)
		}
		if seen[id] {
			return nil, fmt.Errorf("--peers: %s listed twice", id)
		}
		seen[id] = true
		peers = append(peers, master.Peer{ID: id, RaftAddr: addr})
	}
	return peers, nil
}

func runMaster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	def := master.DefaultConfig()
	fl := flag.NewFlagSet("rais master", flag.ContinueOnError)
	fl.SetOutput(stderr)
	id := fl.String("id", "", "this master's id, stable across restarts, [A-Za-z0-9._-] (required)")
	dir := fl.String("dir", "", "directory for the Raft log, snapshots and the metadata state (required)")
	raftAddr := fl.String("raft-addr", "127.0.0.1:7300", "HOST:PORT for Raft traffic between masters")
	apiAddr := fl.String("api-addr", "127.0.0.1:7200", "HOST:PORT of the gRPC API for clients, chunk servers and raisadm")
	httpAddr := fl.String("http-addr", "", "HOST:PORT serving /metrics and /healthz (empty: none)")
	peers := fl.String("peers", "", "the initial masters as ID=RAFT-HOST:PORT,...; used once, to form a new cluster (include this master)")
	copies := fl.Int("copies", def.DefaultCopies, "copies of each message in the default replication class, set when the cluster is first formed")
	downAfter := fl.Duration("server-down-after", def.ServerDownAfter, "a chunk server silent this long is marked down")
	volSize := fl.Int64("volume-size", def.VolumeSizeLimit, "size at which a volume is full: match the chunk servers' --volume-size")
	writable := fl.Int("writable-volumes", 0, "writable volumes kept open per replication class (0: one per copies-sized group of live chunk servers, at least 1)")
	repairAfter := fl.Duration("repair-after", def.RepairAfter, "a volume member silent this long is replaced by a new copy (members that lost the volume or are draining are replaced at once)")
	maxRepairs := fl.Int("max-repairs", def.MaxRepairs, "volume copies the leader runs at once")
	fsckEvery := fl.Duration("fsck-every", def.FsckEvery, "the leader checks every copy against the metadata and repairs what it finds this often (negative: never)")
	repairRate := fl.Int64("repair-rate-mib", 0, "limit each volume copy to this many MiB/s (0: unlimited)")
	readLease := fl.Duration("read-lease", 0, "after a quorum confirms the leader, linearizable reads skip that round for this long (default: half the Raft heartbeat timeout; negative: never skip)")
	logStore := fl.String("log-store", "", "Raft log store: wal (raft-wal, faster commits) or boltdb (raft-boltdb) (default: what the dir holds, wal for a new one); fixed once the dir exists")
	logLevel := fl.String("log-level", "info", "log level: debug, info, warn or error")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: rais master --id ID --dir DIR --raft-addr H:P --api-addr H:P --peers ID=H:P,... [flags]\n\n"+
			"Runs a master: a member of the Raft group that holds the metadata (message key → blob →\n"+
			"volume → chunk servers). Start 3 or 5 with the same --peers; any minority may fail.\n"+
			"SIGINT or SIGTERM shuts it down cleanly (handing leadership over); a second one exits at once.\n\nflags:\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "rais master: unexpected argument %q\n", fl.Arg(0))
		return errUsage
	}
	if !raisfs.ValidNodeID(*id) || *dir == "" {
		fmt.Fprintln(stderr, "rais master: --id (1-64 characters of [A-Za-z0-9._-]) and --dir are required")
		return errUsage
	}
	var ps []master.Peer
	if *peers != "" {
		var err error
		if ps, err = parsePeers(*peers); err != nil {
			fmt.Fprintf(stderr, "rais master: %v\n", err)
			return errUsage
		}
	}
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(master.GCPercent)
	}
	cfg := master.Config{
		ID: *id, Dir: *dir, RaftAddr: *raftAddr, APIAddr: *apiAddr, HTTPAddr: *httpAddr,
		DefaultCopies: *copies, ServerDownAfter: *downAfter, LogStore: *logStore, ReadLease: *readLease, WritableVolumes: *writable, VolumeSizeLimit: *volSize, Logger: logger,
		RepairAfter: *repairAfter, MaxRepairs: *maxRepairs, RepairBytesPerSec: *repairRate << 20, FsckEvery: *fsckEvery,
	}
	lns, err := inheritedListeners()
	if err != nil {
		return err
	}
	cfg.RaftListener, cfg.APIListener, cfg.HTTPListener = lns["raft"], lns["api"], lns["http"]
	s, err := master.New(cfg)
	if err != nil {
		return err
	}
	defer func() {
		if err := s.Close(); err != nil {
			logger.Error("closing master", "err", err)
		}
	}()
	if len(ps) > 0 {
		if err := s.Bootstrap(ps); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "RAIS_MASTER=%s raft=%s\n", s.APIAddr(), s.RaftAddr())
	<-ctx.Done()
	logger.Info("shutting down")
	return nil
}
