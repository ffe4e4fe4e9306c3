package master

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/internal/netx"
	"github.com/raisfs/raisfs/raftfsm"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// Server is one master: a Raft member hosting the replicated state, and
// the gRPC API in front of it. Any master answers any request; followers
// forward writes (and linearizable reads) to the leader.
type Server struct {
	masterpb.UnimplementedMasterServer

	cfg Config
	log *slog.Logger

	fsm       *raftfsm.FSM
	logStore  logStore
	snaps     raft.SnapshotStore
	transport *raft.NetworkTransport
	raft      *raft.Raft

	grpc    *grpc.Server
	apiLn   net.Listener
	httpSrv *http.Server
	httpLn  net.Listener
	peers   *peerConns   // gRPC connections to other masters, for forwarding
	chunks  *http.Client // to chunk servers (volume creation, deletes)
	metrics *metrics

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // background loops

	ready          atomic.Bool              // leader, and its first barrier is applied: reads may be served
	lease          readLease                // reads without a quorum round, on the leader
	raftCut        atomic.Bool              // set by tests: this master's Raft traffic fails (a partition)
	opsChecked     atomic.Pointer[opsCheck] // the configuration opsReady last found ready
	repairing      atomic.Int64             // volumes being repaired by this leader
	repairingBytes atomic.Int64             // their bytes to copy
	forceReplace   sync.Map                 // copyKey → true: copies fsck found damaged, replaced by repair
	moves          sync.Map                 // copyKey → target server id: rebalance moves not done yet
	corruptSince   sync.Map                 // copyKey → time.Time: when the copy first reported corrupt needles
	placementCache atomic.Pointer[placementView]
	registry       *registry // soft state of chunk servers, on the leader
	watches        *watchRegistry
	watchesClosed  chan struct{} // closed by Close: watch streams end
	volMu          sync.Mutex    // serialises volume creation on the leader

	closeOnce sync.Once
	closeErr  error
}

// New opens the master's stores, starts Raft and the API. It does not
// bootstrap a cluster: call Bootstrap with the initial members on a fresh
// cluster (a no-op when state exists), or AddMaster from a running one.
func New(cfg Config) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.withDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("master dir: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.ID),
		ctx:      ctx,
		cancel:   cancel,
		peers:    newPeerConns(),
		chunks:   &http.Client{Transport: &http.Transport{DialContext: netx.Dial, MaxIdleConnsPerHost: 16}},
		registry: newRegistry(),
		watches:  newWatchRegistry(),

		watchesClosed: make(chan struct{}),
	}
	defer func() {
		if err != nil {
			s.Close()
			// Listeners handed in are ours to close, used or not.
			for _, ln := range []net.Listener{cfg.RaftListener, cfg.APIListener, cfg.HTTPListener} {
				if ln != nil {
					ln.Close()
				}
			}
		}
	}()
	if s.fsm, err = raftfsm.Open(filepath.Join(cfg.Dir, "state.db"), s.log); err != nil {
		return nil, err
	}
	hlog := newHCLogger(s.log.With("subsystem", "raft"))
	if s.logStore, err = openLogStore(cfg, hlog); err != nil {
		return nil, err
	}
	if s.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hlog); err != nil {
		return nil, fmt.Errorf("open snapshots: %w", err)
	}
	raftLn, err := listen(cfg.RaftListener, cfg.RaftAddr, "raft")
	if err != nil {
		return nil, err
	}
	if s.transport, err = newRaftTransport(raftLn, &s.raftCut, hlog); err != nil {
		raftLn.Close()
		return nil, err
	}
	rc, err := s.raftConfig(hlog)
	if err != nil {
		return nil, err
	}
	// A restarted master has forgotten the leader it acknowledged and
	// would vote at once; waiting out the longest read lease that the
	// acknowledgement may have granted keeps that lease honest.
	if cfg.ReadLease > 0 {
		time.Sleep(cfg.ReadLease)
	}
	logs, err := raft.NewLogCache(4096, s.logStore)
	if err != nil {
		return nil, err
	}
	if s.raft, err = raft.NewRaft(rc, fsmAdapter{s.fsm}, logs, s.logStore, s.snaps, s.transport); err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	s.metrics = newMetrics(s)

	if s.apiLn, err = listen(cfg.APIListener, cfg.APIAddr, "api"); err != nil {
		return nil, err
	}
	s.grpc = grpc.NewServer(grpc.ChainUnaryInterceptor(s.unaryInterceptor), grpc.ChainStreamInterceptor(streamInterceptor))
	masterpb.RegisterMasterServer(s.grpc, s)
	s.goLoop("grpc", func(ctx context.Context) {
		if err := s.grpc.Serve(s.apiLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("grpc serve", "err", err)
		}
	})
	if cfg.HTTPAddr != "" || cfg.HTTPListener != nil {
		if s.httpLn, err = listen(cfg.HTTPListener, cfg.HTTPAddr, "http"); err != nil {
			return nil, err
		}
		s.httpSrv = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		s.goLoop("http", func(ctx context.Context) {
			if err := s.httpSrv.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http serve", "err", err)
			}
		})
	}
	s.goLoop("leadership", s.leadershipLoop)
	s.goLoop("announce", s.announceLoop)
	if cfg.ReadLease > 0 {
		s.goLoop("lease clock", s.leaseClockLoop)
	}
	s.log.Info("master started", "raft", s.RaftAddr(), "api", s.APIAddr())
	return s, nil
}

// raftConfig builds raft.Config from raft's defaults, overriding only what
// RAIS-FS sets.
func (s *Server) raftConfig(hlog hclog.Logger) (*raft.Config, error) {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(s.cfg.ID)
	c.Logger = hlog
	c.HeartbeatTimeout = s.cfg.HeartbeatTimeout
	c.ElectionTimeout = s.cfg.ElectionTimeout
	c.LeaderLeaseTimeout = s.cfg.LeaderLeaseTimeout
	c.SnapshotThreshold = s.cfg.SnapshotThreshold
	c.SnapshotInterval = 30 * time.Second
	c.TrailingLogs = 10240
	c.BatchApplyCh = true
	c.MaxAppendEntries = 512
	// The state machine's file is durable with its applied index (see
	// raftfsm.FSM.Apply), so restoring the last snapshot at start would
	// only throw newer state away and replay it. Skip it, unless the
	// state file is behind the newest snapshot (lost or replaced): then
	// the snapshot must be restored.
	metas, err := s.snaps.List()
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	c.NoSnapshotRestoreOnStart = len(metas) == 0 || s.fsm.AppliedIndex() >= metas[0].Index
	if !c.NoSnapshotRestoreOnStart {
		s.log.Warn("state file is behind the newest snapshot; restoring it", "applied", s.fsm.AppliedIndex(), "snapshot", metas[0].Index)
	}
	if err := raft.ValidateConfig(c); err != nil {
		return nil, fmt.Errorf("raft config: %w", err)
	}
	return c, nil
}

// logStore is a Raft log and stable store that can be closed.
type logStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// walStore closes raft-wal's metadata database too, which WAL.Close
// leaves open (a restart in the same process would block on its lock).
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

func (w walStore) Close() error {
	err := w.WAL.Close()
	if merr := w.meta.Close(); err == nil {
		err = merr
	}
	return err
}

// openLogStore opens the configured Raft log store. A directory keeps the
// kind it was created with: switching needs a fresh directory (or adding
// a new master and removing the old one).
func openLogStore(cfg Config, hlog hclog.Logger) (logStore, error) {
	boltPath, walDir := filepath.Join(cfg.Dir, "raft.db"), filepath.Join(cfg.Dir, "wal")
	_, boltErr := os.Stat(boltPath)
	_, walErr := os.Stat(walDir)
	kind := cfg.LogStore
	if kind == "" {
		// Whatever the directory holds; a new one gets the WAL (faster
		// commits: see ARCHITECTURE.md, "Master group").
		kind = "wal"
		if boltErr == nil {
			kind = "boltdb"
		}
	}
	switch {
	case kind == "wal" && boltErr == nil:
		return nil, fmt.Errorf("raft log store: %s holds a boltdb log (raft.db); it cannot switch to wal", cfg.Dir)
	case kind == "boltdb" && walErr == nil:
		return nil, fmt.Errorf("raft log store: %s holds a wal log; start with --log-store wal", cfg.Dir)
	}
	if kind == "wal" {
		if err := os.MkdirAll(walDir, 0o755); err != nil {
			return nil, fmt.Errorf("raft log store: %w", err)
		}
		meta := &metadb.BoltMetaDB{}
		w, err := wal.Open(walDir, wal.WithLogger(hlog), wal.WithMetaStore(meta))
		if err != nil {
			meta.Close()
			return nil, fmt.Errorf("open raft wal %s: %w", walDir, err)
		}
		return walStore{w, meta}, nil
	}
	b, err := raftboltdb.New(raftboltdb.Options{
		Path: boltPath, BoltOptions: &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType},
	})
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", boltPath, err)
	}
	return b, nil
}

// Bootstrap forms a new cluster from peers (which must include this
// master). On a master that already has state it does nothing, so every
// initial master can be started with the same peer list every time.
func (s *Server) Bootstrap(peers []Peer) error {
	has, err := raft.HasExistingState(s.logStore, s.logStore, s.snaps)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if has {
		return nil
	}
	var conf raft.Configuration
	self := false
	for _, p := range peers {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
		self = self || p.ID == s.cfg.ID
	}
	if !self {
		return fmt.Errorf("bootstrap: peers %v do not include this master (%s)", peers, s.cfg.ID)
	}
	if err := s.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}

// RaftAddr is the Raft transport's address.
func (s *Server) RaftAddr() string { return string(s.transport.LocalAddr()) }

// APIAddr is the gRPC API's address.
func (s *Server) APIAddr() string { return s.apiLn.Addr().String() }

// HTTPAddr is the metrics address, or "" if none.
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// ID is this master's id.
func (s *Server) ID() string { return s.cfg.ID }

// IsLeader reports whether this master is the Raft leader.
func (s *Server) IsLeader() bool { return s.raft != nil && s.raft.State() == raft.Leader }

// FSM exposes the state machine for reads (tests, tools).
func (s *Server) FSM() *raftfsm.FSM { return s.fsm }

// goLoop runs fn in a goroutine owned by the server: Close cancels ctx and
// waits for it.
func (s *Server) goLoop(name string, fn func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn(s.ctx)
	}()
}

// Close shuts the master down in order: stop client traffic, hand off
// leadership, stop background loops, shut Raft down, close the transport,
// close the stores last. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	var errs []error
	s.closeWatches() // the gRPC server's graceful stop waits for streams
	if s.grpc != nil {
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			s.grpc.Stop()
		}
	}
	if s.httpSrv != nil {
		s.httpSrv.Close()
	}
	s.lease.close() // the transfer's target may be elected at once
	if s.raft != nil && s.raft.State() == raft.Leader {
		if err := s.raft.LeadershipTransfer().Error(); err != nil {
			s.log.Info("leadership transfer on shutdown", "err", err)
		}
	}
	s.cancel()
	s.wg.Wait()
	if s.raft != nil {
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
	}
	if s.transport != nil {
		s.transport.Close()
	}
	s.peers.close()
	if s.logStore != nil {
		if err := s.logStore.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.fsm != nil {
		if err := s.fsm.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// leadershipLoop starts the leader's duties when this master wins an
// election and stops them when it loses.
func (s *Server) leadershipLoop(ctx context.Context) {
	type duty struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var cur *duty
	stop := func() {
		s.ready.Store(false)
		if cur != nil {
			cur.cancel()
			<-cur.done
			cur = nil
		}
	}
	defer stop()
	ch := s.raft.LeaderCh()
	for {
		select {
		case <-ctx.Done():
			return
		case leader := <-ch:
			stop()
			if !leader {
				s.log.Info("lost leadership")
				// Until the next term's reset: nothing heard, not yet
				// started (placement answers "unavailable", not "full").
				s.registry.reset(time.Time{})
				continue
			}
			s.log.Info("became leader")
			// What the last term heard from chunk servers is stale, and a
			// put may arrive before the duties below are under way: from
			// now on, placement knows it has not heard from them yet.
			s.registry.reset(time.Now())
			dctx, cancel := context.WithCancel(ctx)
			cur = &duty{cancel: cancel, done: make(chan struct{})}
			go func(d *duty) {
				defer close(d.done)
				s.leaderDuties(dctx)
			}(cur)
		}
	}
}

// leaderDuties runs while this master leads.
func (s *Server) leaderDuties(ctx context.Context) {
	// Reads are linearizable only once everything committed by earlier
	// leaders is applied here.
	for ctx.Err() == nil {
		if err := s.raft.Barrier(5 * time.Second).Error(); err == nil {
			break
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return
		}
	}
	if err := s.initCluster(ctx); err != nil {
		s.log.Warn("initialise cluster", "err", err)
	}
	// Commit one command of this term. Raft's own entries (the no-op of a
	// new term, barriers) never reach the state machine, so until a
	// command of this term is applied the state machine's index can trail
	// the commit index and readBarrier would wait for nothing.
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.apply(actx, &fsmpb.SetMaster{Id: s.cfg.ID, ApiAddress: s.APIAddr(), OpsVersion: s.opsVersion()})
		cancel()
		if err == nil {
			break
		}
		if s.raft.State() != raft.Leader || !sleepCtx(ctx, 50*time.Millisecond) {
			return
		}
	}
	s.ready.Store(true)
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){s.monitorLoop, s.gcLoop, s.repairLoop, s.fsckLoop} {
		wg.Add(1)
		go func() { defer wg.Done(); loop(ctx) }()
	}
	wg.Wait()
}

// initCluster commits what a new cluster needs once (the lease key and the
// default class) and this master's API address.
func (s *Server) initCluster(ctx context.Context) error {
	if s.fsm.LeaseKey() == nil {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		copies := uint32(s.cfg.DefaultCopies)
		quorum := copies // durable on every copy before a put is acknowledged
		if _, err := s.apply(actx, &fsmpb.InitCluster{LeaseKey: key, DefaultClass: &fsmpb.ReplicationClass{
			Name: raftfsm.DefaultClass, Copies: copies, WriteQuorum: quorum,
		}}); err != nil {
			return err
		}
	}
	return nil
}

// announceLoop makes sure this master's API address and command set are
// in the replicated state, so others can forward to it, status can list
// it, and the leader knows which commands every master applies.
func (s *Server) announceLoop(ctx context.Context) {
	for {
		ms, err := s.fsm.Masters()
		if err == nil && ms[s.cfg.ID] == (raftfsm.MasterInfo{APIAddress: s.APIAddr(), OpsVersion: s.opsVersion()}) {
			// Checked every second: a record rewritten without this
			// master's command set (AddMaster writes only the address)
			// holds transactions back until it is announced again.
			if !sleepCtx(ctx, time.Second) {
				return
			}
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err = s.applyAnywhere(actx, &fsmpb.SetMaster{Id: s.cfg.ID, ApiAddress: s.APIAddr(), OpsVersion: s.opsVersion()})
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Debug("announce api address", "err", err)
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return
		}
	}
}

// opsVersion is the command set this master announces: its build's,
// unless a test pretends to be an older build.
func (s *Server) opsVersion() uint32 {
	if s.cfg.opsVersion != 0 {
		return s.cfg.opsVersion
	}
	return raftfsm.OpsVersion
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// apply proposes op through Raft on this master (which must lead) and
// waits for it to be applied, or for ctx. It returns the FSM's domain
// rejection, raisfs.ErrNotLeader (did not commit) or
// raisfs.ErrOutcomeUnknown (may have committed).
func (s *Server) apply(ctx context.Context, op any) (raftfsm.Result, error) {
	r := s.applyAll(ctx, []any{op})[0]
	return r, r.Err
}

// applyAll proposes ops one after another without waiting between them,
// so Raft commits them together, and waits for each. Each result's Err
// says how that op fared (as apply's error would).
func (s *Server) applyAll(ctx context.Context, ops []any) []raftfsm.Result {
	results := make([]raftfsm.Result, len(ops))
	timeout := applyTimeout(ctx)
	start := time.Now()
	futures := make([]raft.ApplyFuture, len(ops))
	for i, op := range ops {
		futures[i], results[i].Err = s.propose(op, timeout)
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		results[i] = s.await(ctx, f, start)
	}
	return results
}

// applyTimeout is how long a proposal may wait to be taken by Raft:
// until ctx's deadline, or 10 s.
func applyTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return 10 * time.Second
}

// propose hands op to Raft; await waits for its outcome.
func (s *Server) propose(op any, timeout time.Duration) (raft.ApplyFuture, error) {
	data, err := raftfsm.Encode(time.Now().UnixNano(), op)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("apply: %w", context.DeadlineExceeded)
	}
	return s.raft.Apply(data, timeout), nil
}

// await waits for a proposed entry's outcome, or for ctx (an unknown
// outcome: the entry may still commit).
func (s *Server) await(ctx context.Context, f raft.ApplyFuture, start time.Time) raftfsm.Result {
	done := make(chan struct{})
	go func() { f.Error(); close(done) }() // ends when raft answers (commit, loss, shutdown)
	select {
	case <-done:
	case <-ctx.Done():
		return raftfsm.Result{Err: fmt.Errorf("apply: %w: %w", raisfs.ErrOutcomeUnknown, ctx.Err())}
	}
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrRaftShutdown):
			return raftfsm.Result{Err: fmt.Errorf("apply: %w: %w", raisfs.ErrNotLeader, err)}
		default:
			return raftfsm.Result{Err: fmt.Errorf("apply: %w: %w", raisfs.ErrOutcomeUnknown, err)}
		}
	}
	s.metrics.applySeconds.Observe(time.Since(start).Seconds())
	r, ok := f.Response().(raftfsm.Result)
	if !ok {
		return raftfsm.Result{Err: fmt.Errorf("apply: unexpected response %T", f.Response())}
	}
	return r
}

// readBarrier makes a read on the leader linearizable: leadership is
// confirmed with a quorum after the read began (or by a read lease, see
// readLease), and the state machine has applied everything committed
// before it.
func (s *Server) readBarrier(ctx context.Context) error {
	for !s.ready.Load() {
		if s.raft.State() != raft.Leader {
			return fmt.Errorf("read: %w", raisfs.ErrNotLeader)
		}
		if !sleepCtx(ctx, 5*time.Millisecond) {
			return ctx.Err()
		}
	}
	idx := s.raft.CommitIndex()
	if s.leaseRead() {
		s.metrics.readBarriers.WithLabelValues("lease").Inc()
	} else {
		s.metrics.readBarriers.WithLabelValues("quorum").Inc()
		term, start := s.raft.CurrentTerm(), time.Now()
		f := s.raft.VerifyLeader()
		done := make(chan struct{})
		go func() { f.Error(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := f.Error(); err != nil {
			return fmt.Errorf("read: %w: %w", raisfs.ErrNotLeader, err)
		}
		if s.cfg.ReadLease > 0 {
			s.lease.extend(term, start, time.Now(), s.cfg.ReadLease)
		}
	}
	for s.fsm.AppliedIndex() < idx {
		if !sleepCtx(ctx, time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

// hclog bridge: raft logs through slog.

type hcWriter struct{ log *slog.Logger }

func (w hcWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	switch {
	case strings.Contains(line, "[ERROR]"):
		w.log.Error(line)
	case strings.Contains(line, "[WARN]"):
		w.log.Warn(line)
	case strings.Contains(line, "[DEBUG]"), strings.Contains(line, "[TRACE]"):
		w.log.Debug(line)
	default:
		w.log.Info(line)
	}
	return len(p), nil
}

func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name: "raft", Level: hclog.Info, Output: hcWriter{l}, DisableTime: true,
	})
}

var _ io.Writer = hcWriter{}

// kill stops the master as abruptly as the process allows short of
// exiting: no graceful gRPC drain, no leadership transfer. For tests.
func (s *Server) kill() {
	s.closeOnce.Do(func() {
		s.grpc.Stop()
		if s.httpSrv != nil {
			s.httpSrv.Close()
		}
		s.transport.Close() // peers see the connection drop at once
		s.cancel()
		s.wg.Wait()
		s.raft.Shutdown().Error()
		s.peers.close()
		s.logStore.Close()
		s.fsm.Close()
	})
}
