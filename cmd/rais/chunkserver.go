package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/chunkserver"
)

func runChunkServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	def := chunkserver.DefaultConfig()
	fl := flag.NewFlagSet("rais chunkserver", flag.ContinueOnError)
	fl.SetOutput(stderr)
	id := fl.String("id", "", "this chunk server's id: stable across restarts, unique in the cluster, [A-Za-z0-9._-] (required)")
	dirs := fl.String("dir", "", "data directories, comma separated, one per disk; created if missing (required)")
	addr := fl.String("addr", "127.0.0.1:7400", "HOST:PORT for the data API, /healthz and /metrics; port 0 picks a free port")
	maxBlob := fl.Int64("max-blob-size", def.MaxBlobSize, "largest blob accepted, in bytes")
	volSize := fl.Int64("volume-size", def.VolumeSize, "size in bytes at which a volume seals itself")
	highWater := fl.Float64("high-water", def.HighWater, "fraction of a data dir's filesystem in use past which new blobs are refused")
	minFree := fl.Int64("min-free", def.MinFreeBytes, "bytes always kept free on each data dir's filesystem")
	batchWait := fl.Duration("max-batch-wait", def.MaxBatchWait, "longest the group committer waits to gather writers before an fsync")
	bodyIdle := fl.Duration("body-idle-timeout", def.BodyIdleTimeout, "end an upload whose client sends no bytes for this long; nothing of it is stored (negative: wait forever)")
	scrubEvery := fl.Duration("scrub-every", def.ScrubEvery, "start a pass that re-reads and verifies every stored needle this often (negative: never)")
	scrubRate := fl.Int64("scrub-rate-mib", def.ScrubBytesPerSec>>20, "the scrubber reads at most this many MiB/s")
	masters := fl.String("masters", "", "masters' API addresses, comma separated; empty runs stand-alone (writes need no lease)")
	advertise := fl.String("advertise", "", "HOST:PORT that masters and clients use to reach this server (default: the listening address)")
	dc := fl.String("dc", "", "data center this server is in, for placement across failure domains")
	rack := fl.String("rack", "", "rack this server is in, for placement across failure domains")
	logLevel := fl.String("log-level", "info", "log level: debug, info, warn or error")
	shutdownWait := fl.Duration("shutdown-timeout", 30*time.Second, "how long a graceful shutdown waits for requests in flight")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: rais chunkserver --id ID --dir DIR[,DIR2...] [--addr HOST:PORT] [flags]\n\n"+
			"Runs a chunk server: content-addressed blob storage in append-only volumes,\n"+
			"served over HTTP. SIGINT or SIGTERM shuts it down cleanly; a second one exits at once.\n\nflags:\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "rais chunkserver: unexpected argument %q\n", fl.Arg(0))
		return errUsage
	}
	if !raisfs.ValidNodeID(*id) {
		fmt.Fprintf(stderr, "rais chunkserver: --id %q: want 1-64 characters of [A-Za-z0-9._-]\n", *id)
		return errUsage
	}
	if *dirs == "" {
		fmt.Fprintln(stderr, "rais chunkserver: --dir is required")
		return errUsage
	}
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	logger = logger.With(chunkserver.LogKeyNode, *id)

	cfg := chunkserver.Config{
		Dirs:             strings.Split(*dirs, ","),
		MaxBlobSize:      *maxBlob,
		VolumeSize:       *volSize,
		HighWater:        *highWater,
		MinFreeBytes:     *minFree,
		MaxBatchWait:     *batchWait,
		BodyIdleTimeout:  *bodyIdle,
		Logger:           logger,
		ScrubEvery:       *scrubEvery,
		ScrubBytesPerSec: *scrubRate << 20,
	}
	store, err := chunkserver.Open(cfg)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			logger.Error("closing store", "err", err)
		}
	}()
	lns, err := inheritedListeners()
	if err != nil {
		return err
	}
	ln := lns["api"]
	if ln == nil {
		if ln, err = net.Listen("tcp", *addr); err != nil {
			return fmt.Errorf("listen %s: %w", *addr, err)
		}
	}
	var auth chunkserver.Authorizer
	hbDone := make(chan struct{})
	close(hbDone)
	if *masters != "" {
		addr := *advertise
		if addr == "" {
			addr = ln.Addr().String()
		}
		hb, err := chunkserver.NewHeartbeater(chunkserver.HeartbeatConfig{
			ID: raisfs.NodeID(*id), Address: addr, DC: *dc, Rack: *rack,
			Masters: strings.Split(*masters, ","), Logger: logger,
		}, store)
		if err != nil {
			return err
		}
		auth = hb
		hbDone = make(chan struct{})
		hbCtx, stopHB := context.WithCancel(context.WithoutCancel(ctx))
		defer func() { stopHB(); <-hbDone }()
		go func() { defer close(hbDone); hb.Run(hbCtx) }()
	}
	srv := &http.Server{
		Handler:           chunkserver.NewServer(raisfs.NodeID(*id), store, auth, logger),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	logger.Info("chunk server listening", "addr", ln.Addr().String(), "dirs", cfg.Dirs)
	fmt.Fprintf(stdout, "RAIS_CHUNKSERVER=%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *shutdownWait)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("graceful shutdown incomplete", "err", err)
		srv.Close()
	}
	<-errc
	return nil
}
