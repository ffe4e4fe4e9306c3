package master

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeebo/blake3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/chunkserver"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testCluster is n masters on loopback with real Raft over TCP.
type testCluster struct {
	t       testing.TB
	masters []*Server
	cfgs    []Config
	peers   []Peer
}

func testMasterConfig(t testing.TB, id, dir string) Config {
	cfg := DefaultConfig()
	cfg.ID = id
	cfg.Dir = dir
	cfg.RaftAddr = "127.0.0.1:0"
	cfg.APIAddr = "127.0.0.1:0"
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.ServerDownAfter = 1500 * time.Millisecond
	cfg.LeaseTTL = 10 * time.Second // deletions wait a lease's life
	cfg.ClockSkew = time.Millisecond
	cfg.MinFreeBytes = 1
	cfg.Logger = testLogger(t).With("master", id)
	return cfg
}

func mustCluster(t testing.TB, n int, mod func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	for i := range n {
		cfg := testMasterConfig(t, fmt.Sprintf("m%d", i+1), filepath.Join(t.TempDir(), fmt.Sprintf("m%d", i+1)))
		if mod != nil {
			mod(&cfg)
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatalf("New(%s) = %v", cfg.ID, err)
		}
		// Restarts reuse the ports the kernel gave the first start.
		cfg.RaftAddr, cfg.APIAddr = s.RaftAddr(), s.APIAddr()
		c.masters = append(c.masters, s)
		c.cfgs = append(c.cfgs, cfg)
		c.peers = append(c.peers, Peer{ID: cfg.ID, RaftAddr: s.RaftAddr()})
	}
	for _, s := range c.masters {
		if err := s.Bootstrap(c.peers); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, s := range c.masters {
			if s != nil {
				s.Close()
			}
		}
	})
	c.waitLeader()
	return c
}

// waitLeader waits for a leader that every live master agrees on and that
// has announced its API address, and for every live master's announced
// command set.
func (c *testCluster) waitLeader() *Server {
	c.t.Helper()
	var leader *Server
	testPoll(c.t, 10*time.Second, "a leader", func() bool {
		leader = nil
		for _, s := range c.masters {
			if s != nil && s.IsLeader() && s.ready.Load() {
				leader = s
			}
		}
		if leader == nil {
			return false
		}
		ms, _ := leader.fsm.Masters()
		if ms[leader.ID()].APIAddress == "" {
			return false
		}
		// Every live master has announced its command set (Txn waits
		// for that).
		for _, s := range c.masters {
			if s != nil && ms[s.ID()].OpsVersion != s.opsVersion() {
				return false
			}
		}
		return true
	})
	return leader
}

func (c *testCluster) follower() *Server {
	for _, s := range c.masters {
		if s != nil && !s.IsLeader() {
			return s
		}
	}
	c.t.Fatal("no follower")
	return nil
}

func (c *testCluster) index(s *Server) int {
	for i, m := range c.masters {
		if m == s {
			return i
		}
	}
	return -1
}

// stop closes master i (cleanly, or as a crash: no leadership transfer).
func (c *testCluster) stop(i int, crash bool) {
	c.t.Helper()
	s := c.masters[i]
	if crash {
		s.kill()
	} else if err := s.Close(); err != nil {
		c.t.Fatalf("Close(%s) = %v", s.ID(), err)
	}
	c.masters[i] = nil
}

func (c *testCluster) restart(i int) *Server {
	c.t.Helper()
	s, err := New(c.cfgs[i])
	if err != nil {
		c.t.Fatalf("restart %s: %v", c.cfgs[i].ID, err)
	}
	if err := s.Bootstrap(c.peers); err != nil {
		c.t.Fatal(err)
	}
	c.masters[i] = s
	return s
}

func client(t testing.TB, addr string) masterpb.MasterClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return masterpb.NewMasterClient(conn)
}

func testPoll(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testChunkServer is a real chunk server (store, HTTP API, heartbeats).
type testChunkServer struct {
	id    string
	addr  string
	dir   string
	store *chunkserver.Store
	srv   *http.Server
	stop  context.CancelFunc
	done  chan struct{}
}

func startChunkServer(t testing.TB, id, dc, rack string, masters []string) *testChunkServer {
	t.Helper()
	return startChunkServerDir(t, id, dc, rack, masters, t.TempDir())
}

// startChunkServerDir starts a chunk server on dir (a restart when dir
// was another's).
func startChunkServerDir(t testing.TB, id, dc, rack string, masters []string, dir string) *testChunkServer {
	t.Helper()
	cfg := chunkserver.DefaultConfig()
	cfg.Dirs = []string{dir}
	cfg.MinFreeBytes = 1
	cfg.HighWater = 1
	cfg.Logger = testLogger(t).With("cs", id)
	store, err := chunkserver.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hb, err := chunkserver.NewHeartbeater(chunkserver.HeartbeatConfig{
		ID: raisfs.NodeID(id), Address: ln.Addr().String(), DC: dc, Rack: rack, Masters: masters,
		Interval: 100 * time.Millisecond, Logger: cfg.Logger,
	}, store)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: chunkserver.NewServer(raisfs.NodeID(id), store, hb, cfg.Logger)}
	go srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	cs := &testChunkServer{id: id, dir: dir, addr: ln.Addr().String(), store: store, srv: srv, stop: cancel, done: make(chan struct{})}
	go func() { hb.Run(ctx); close(cs.done) }()
	t.Cleanup(cs.close)
	return cs
}

func (cs *testChunkServer) close() {
	if cs.stop == nil {
		return
	}
	cs.stop()
	<-cs.done
	cs.srv.Close()
	cs.store.Close()
	cs.stop = nil
}

// put runs the whole put protocol as the SDK will: BeginPut, upload to
// every replica with the lease, CommitPut.
func put(t testing.TB, c masterpb.MasterClient, key string, body []byte) error {
	t.Helper()
	ctx := ctxT(t)
	h := blake3.Sum256(body)
	bp, err := c.BeginPut(ctx, &masterpb.BeginPutRequest{Key: []byte(key), Hash: h[:], Size: int64(len(body))})
	if err != nil {
		return fmt.Errorf("BeginPut: %w", err)
	}
	if bp.Stored {
		return nil
	}
	for _, r := range bp.Replicas {
		req, _ := http.NewRequestWithContext(ctx, "PUT", fmt.Sprintf("http://%s/v1/volumes/%d/blobs/%x", r.Address, bp.Volume, h), bytes.NewReader(body))
		req.Header.Set(raisfs.LeaseHeader, bp.Lease)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("upload to %s: %w", r.Id, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 && resp.StatusCode != 200 {
			return fmt.Errorf("upload to %s: status %d %s", r.Id, resp.StatusCode, resp.Header.Get(chunkserver.ErrorHeader))
		}
	}
	_, err = c.CommitPut(ctx, &masterpb.CommitPutRequest{Key: []byte(key), Hash: h[:], Size: int64(len(body)), Volume: bp.Volume, Lease: bp.Lease, LeaseExpiryUnixNano: bp.LeaseExpiryUnixNano})
	if err != nil {
		return fmt.Errorf("CommitPut: %w", err)
	}
	return nil
}

// get reads key back from any replica and checks its hash.
func get(t testing.TB, c masterpb.MasterClient, key string) ([]byte, error) {
	t.Helper()
	lr, err := c.Lookup(ctxT(t), &masterpb.LookupRequest{Key: []byte(key)})
	if err != nil {
		return nil, err
	}
	var lastErr error
	for _, r := range lr.Replicas {
		resp, err := http.Get(fmt.Sprintf("http://%s/v1/volumes/%d/blobs/%x", r.Address, lr.Volume, lr.Hash))
		if err != nil {
			lastErr = err
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			lastErr = fmt.Errorf("replica %s: %d %v", r.Id, resp.StatusCode, err)
			continue
		}
		if h := blake3.Sum256(b); !bytes.Equal(h[:], lr.Hash) {
			lastErr = fmt.Errorf("replica %s returned wrong bytes", r.Id)
			continue
		}
		return b, nil
	}
	return nil, lastErr
}
