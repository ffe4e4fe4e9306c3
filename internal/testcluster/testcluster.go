// Package testcluster starts a real RAIS-FS cluster inside a test process:
// masters running Raft over TCP on loopback and chunk servers writing real
// files, on ports the kernel picks. Tests of the client SDK and the
// integration suite use it; nothing else may import it.
package testcluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/chunkserver"
	"github.com/raisfs/raisfs/master"
)

// Options size a cluster.
type Options struct {
	Masters      int   // default 3
	ChunkServers int   // default 3
	Copies       int   // default replication class copies (default 3)
	VolumeSize   int64 // size at which volumes seal (default: the chunk server's)
	// HeartbeatInterval is how often chunk servers report to the masters
	// (default 100 ms); a new leader places nothing until they have.
	HeartbeatInterval time.Duration
}

// Cluster is a running cluster. Its parts stop when the test ends.
type Cluster struct {
	t          testing.TB
	volumeSize int64
	heartbeat  time.Duration
	Masters    []*master.Server
	Chunks     []*ChunkServer
}

// ChunkServer is one running chunk server.
type ChunkServer struct {
	ID    string
	Addr  string
	Dir   string
	Store *chunkserver.Store
	srv   *http.Server
	stop  context.CancelFunc
	done  chan struct{}
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// Logger sends logs to t.Log, shown only for failing tests.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Start starts a cluster and waits until it can take puts.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Masters == 0 {
		o.Masters = 3
	}
	if o.ChunkServers == 0 {
		o.ChunkServers = 3
	}
	if o.Copies == 0 {
		o.Copies = 3
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 100 * time.Millisecond
	}
	c := &Cluster{t: t, volumeSize: o.VolumeSize, heartbeat: o.HeartbeatInterval}
	var peers []master.Peer
	for i := range o.Masters {
		cfg := master.DefaultConfig()
		cfg.ID = fmt.Sprintf("m%d", i+1)
		cfg.Dir = filepath.Join(t.TempDir(), cfg.ID)
		cfg.RaftAddr, cfg.APIAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.HeartbeatInterval = o.HeartbeatInterval
		cfg.ServerDownAfter = max(2*time.Second, 3*o.HeartbeatInterval)
		cfg.MinFreeBytes = 1
		cfg.DefaultCopies = o.Copies
		if o.VolumeSize > 0 {
			cfg.VolumeSizeLimit = o.VolumeSize
		}
		cfg.Logger = Logger(t).With("master", cfg.ID)
		s, err := master.New(cfg)
		if err != nil {
			t.Fatalf("start master %s: %v", cfg.ID, err)
		}
		c.Masters = append(c.Masters, s)
		peers = append(peers, master.Peer{ID: cfg.ID, RaftAddr: s.RaftAddr()})
	}
	t.Cleanup(c.Stop)
	for _, s := range c.Masters {
		if err := s.Bootstrap(peers); err != nil {
			t.Fatal(err)
		}
	}
	for i := range o.ChunkServers {
		c.StartChunkServer(fmt.Sprintf("cs%d", i+1), t.TempDir())
	}
	c.WaitReady(o.ChunkServers)
	return c
}

// MasterAddrs are the live masters' API addresses.
func (c *Cluster) MasterAddrs() []string {
	var out []string
	for _, s := range c.Masters {
		if s != nil {
			out = append(out, s.APIAddr())
		}
	}
	return out
}

// Leader waits for and returns the leader.
func (c *Cluster) Leader() *master.Server {
	c.t.Helper()
	var l *master.Server
	poll(c.t, 15*time.Second, "a leader", func() bool {
		for _, s := range c.Masters {
			if s != nil && s.IsLeader() {
				l = s
				return true
			}
		}
		return false
	})
	return l
}

// WaitReady waits until a leader knows n live chunk servers.
func (c *Cluster) WaitReady(n int) {
	c.t.Helper()
	poll(c.t, 15*time.Second, fmt.Sprintf("%d live chunk servers", n), func() bool {
		l := c.Leader()
		st, err := l.Status(context.Background(), &masterpb.StatusRequest{})
		if err != nil {
			return false
		}
		alive := 0
		for _, cs := range st.Chunkservers {
			if cs.State == "alive" && cs.FreeBytes > 0 {
				alive++
			}
		}
		return alive >= n && l.FSM().LeaseKey() != nil
	})
}

// StartChunkServer starts (or restarts, on the same dir) a chunk server.
func (c *Cluster) StartChunkServer(id, dir string) *ChunkServer {
	c.t.Helper()
	cfg := chunkserver.DefaultConfig()
	cfg.Dirs = []string{dir}
	cfg.MinFreeBytes = 1
	cfg.HighWater = 1
	if c.volumeSize > 0 {
		cfg.VolumeSize = c.volumeSize
	}
	cfg.Logger = Logger(c.t).With("cs", id)
	store, err := chunkserver.Open(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	hb, err := chunkserver.NewHeartbeater(chunkserver.HeartbeatConfig{
		ID: raisfs.NodeID(id), Address: ln.Addr().String(), Masters: c.MasterAddrs(),
		Interval: c.heartbeat, Logger: cfg.Logger,
	}, store)
	if err != nil {
		c.t.Fatal(err)
	}
	srv := &http.Server{Handler: chunkserver.NewServer(raisfs.NodeID(id), store, hb, cfg.Logger)}
	go srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	cs := &ChunkServer{ID: id, Addr: ln.Addr().String(), Dir: dir, Store: store, srv: srv, stop: cancel, done: make(chan struct{})}
	go func() { hb.Run(ctx); close(cs.done) }()
	for i, old := range c.Chunks {
		if old.ID == id {
			c.Chunks[i] = cs
			return cs
		}
	}
	c.Chunks = append(c.Chunks, cs)
	return cs
}

// Close stops a chunk server (its files stay).
func (cs *ChunkServer) Close() {
	if cs.stop == nil {
		return
	}
	cs.stop()
	<-cs.done
	cs.srv.Close()
	cs.Store.Close()
	cs.stop = nil
}

// StopMaster stops master i.
func (c *Cluster) StopMaster(i int) {
	if c.Masters[i] != nil {
		c.Masters[i].Close()
		c.Masters[i] = nil
	}
}

// Stop stops everything.
func (c *Cluster) Stop() {
	for _, cs := range c.Chunks {
		cs.Close()
	}
	for i := range c.Masters {
		c.StopMaster(i)
	}
}

func poll(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
