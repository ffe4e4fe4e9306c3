package chunkserver

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/internal/netx"
)

// HeartbeatConfig configures a chunk server's membership in a cluster.
type HeartbeatConfig struct {
	ID      raisfs.NodeID
	Address string // data API address the masters and clients use
	DC      string
	Rack    string
	// Masters are the masters' API addresses; any one will do.
	Masters []string
	// Interval between heartbeats until a master says otherwise (default 1 s).
	Interval time.Duration
	Logger   *slog.Logger
}

// Heartbeater registers a chunk server with the master group, reports its
// capacity and volumes, and keeps the key that write leases are checked
// with. It is also the server's Authorizer: once the key is known, every
// write must carry a lease signed with it.
type Heartbeater struct {
	cfg   HeartbeatConfig
	store *Store
	log   *slog.Logger
	key   atomic.Pointer[[]byte]

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	next  int // master to try first
}

// NewHeartbeater returns a Heartbeater; Run starts it.
func NewHeartbeater(cfg HeartbeatConfig, store *Store) (*Heartbeater, error) {
	if len(cfg.Masters) == 0 {
		return nil, fmt.Errorf("heartbeat: no masters")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Heartbeater{cfg: cfg, store: store, log: cfg.Logger.With(LogKeySubsystem, "heartbeat"), conns: map[string]*grpc.ClientConn{}}, nil
}

// Run sends heartbeats until ctx is done, then closes its connections.
func (h *Heartbeater) Run(ctx context.Context) {
	defer h.close()
	interval := h.cfg.Interval
	failing := false
	for {
		resp, err := h.beat(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				h.log.Warn("heartbeat failed; will keep trying", "err", err)
			}
			failing = true
		case err == nil:
			if failing {
				h.log.Info("heartbeat reached the masters again")
			}
			failing = false
			if len(resp.LeaseKey) > 0 {
				k := resp.LeaseKey
				h.key.Store(&k)
			}
			if resp.IntervalMs > 0 {
				interval = time.Duration(resp.IntervalMs) * time.Millisecond
			}
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (h *Heartbeater) beat(ctx context.Context) (*masterpb.HeartbeatResponse, error) {
	st := h.store.Status()
	req := &masterpb.HeartbeatRequest{Id: string(h.cfg.ID), Address: h.cfg.Address, Dc: h.cfg.DC, Rack: h.cfg.Rack}
	seen := map[uint64]bool{} // dirs on one filesystem share its capacity: count it once
	for _, d := range st.Dirs {
		req.UsedBytes += d.UsedBytes
		if d.Error != "" || seen[d.FSID] {
			continue
		}
		seen[d.FSID] = true
		req.CapacityBytes += d.Total
		if d.Writable {
			req.FreeBytes += d.FreeBytes - d.Reserved
		}
	}
	for _, v := range st.Volumes {
		req.Volumes = append(req.Volumes, &masterpb.VolumeReport{Id: uint64(v.ID), SizeBytes: v.SizeBytes, LiveBlobs: v.LiveBlobs, Sealed: v.Sealed, Failed: v.Failed != "",
			CorruptNeedles: v.CorruptNeedles, GarbageBytes: v.GarbageByte})
	}
	var lastErr error
	h.mu.Lock()
	start := h.next
	h.mu.Unlock()
	for i := range h.cfg.Masters {
		addr := h.cfg.Masters[(start+i)%len(h.cfg.Masters)]
		c, err := h.client(addr)
		if err != nil {
			lastErr = err
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := c.Heartbeat(cctx, req)
		cancel()
		if err == nil {
			h.mu.Lock()
			h.next = (start + i) % len(h.cfg.Masters)
			h.mu.Unlock()
			return resp, nil
		}
		lastErr = fmt.Errorf("master %s: %w", addr, err)
	}
	return nil, lastErr
}

func (h *Heartbeater) client(addr string) (masterpb.MasterClient, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.conns[addr]; ok {
		return masterpb.NewMasterClient(c), nil
	}
	// A partitioned leader fails the heartbeat in ~2 s (netx), and the
	// next master is tried.
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(netx.DialContext))
	if err != nil {
		return nil, err
	}
	h.conns[addr] = c
	return masterpb.NewMasterClient(c), nil
}

func (h *Heartbeater) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = map[string]*grpc.ClientConn{}
}

// AuthorizeWrite implements Authorizer: the request must carry a lease for
// exactly this operation, signed with the cluster's key, not expired.
// Until the first heartbeat brings the key, writes are refused as
// unavailable.
func (h *Heartbeater) AuthorizeWrite(token string, op WriteOp) error {
	k := h.key.Load()
	if k == nil {
		return fmt.Errorf("not yet registered with the masters: %w", raisfs.ErrUnavailable)
	}
	leaseOp, hash := raisfs.LeaseOpAdmin, raisfs.Hash{}
	switch op.Kind {
	case "put":
		leaseOp, hash = raisfs.LeaseOpPut, op.Hash
	case "delete":
		leaseOp, hash = raisfs.LeaseOpDelete, op.Hash
	}
	return raisfs.VerifyLease(*k, token, leaseOp, op.Volume, hash, time.Now())
}

var _ Authorizer = (*Heartbeater)(nil)
