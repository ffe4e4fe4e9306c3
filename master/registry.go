package master

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// registry is the leader's soft state about chunk servers: when each was
// last heard from and what it reported. It is not replicated: a new leader
// starts empty and gives every server a full ServerDownAfter to report.
type registry struct {
	mu      sync.Mutex
	since   time.Time // when this leader started listening
	servers map[string]heartbeat
	bad     []badReplica // reported by clients, newest last, bounded
}

// badReplica is a client's report that a replica failed a read. Repair
// (the self-healing work) consumes these; until then they are logged,
// counted and kept for inspection.
type badReplica struct {
	at      time.Time
	volume  uint64
	hash    []byte
	replica string
	reason  string
}

const maxBadReports = 1024

func (r *registry) reportBad(b badReplica) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) == maxBadReports {
		r.bad = r.bad[1:]
	}
	r.bad = append(r.bad, b)
}

type heartbeat struct {
	at     time.Time
	report *masterpb.HeartbeatRequest
	vols   map[uint64]*masterpb.VolumeReport // report.Volumes by id
}

func newHeartbeat(at time.Time, req *masterpb.HeartbeatRequest) heartbeat {
	hb := heartbeat{at: at, report: req, vols: make(map[uint64]*masterpb.VolumeReport, len(req.Volumes))}
	for _, v := range req.Volumes {
		hb.vols[v.Id] = v
	}
	return hb
}

func newRegistry() *registry { return &registry{servers: map[string]heartbeat{}} }

func (r *registry) reset(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.since = now
	r.servers = map[string]heartbeat{}
}

// started is when this leader began listening to heartbeats; zero before
// its leadership loop has taken office (Raft may already call it leader)
// and after it lost office.
func (r *registry) started() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.since
}

func (r *registry) put(id string, hb heartbeat) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.servers[id] = hb
}

func (r *registry) get(id string) (heartbeat, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	hb, ok := r.servers[id]
	return hb, ok
}

// lastSeen is when id was last heard from, or when this leader started.
func (r *registry) lastSeen(id string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if hb, ok := r.servers[id]; ok {
		return hb.at
	}
	return r.since
}

// volumeReport is the largest size the members of volume id reported for
// it, and whether any reported it sealed or failed. It runs for every
// candidate volume of every put, so it looks at the members only.
func (r *registry) volumeReport(id uint64, members []string) (size int64, sealed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range members {
		if v, ok := r.servers[m].vols[id]; ok {
			size = max(size, v.SizeBytes)
			sealed = sealed || v.Sealed || v.Failed
		}
	}
	return size, sealed
}

// volumeLive is the live-blob count server reported for volume id.
func (r *registry) volumeLive(id uint64, server string) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.servers[server].vols[id]
	if !ok {
		return 0, false
	}
	return v.LiveBlobs, true
}

func (r *registry) free(id string) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	hb, ok := r.servers[id]
	if !ok {
		return 0, false
	}
	return hb.report.FreeBytes, true
}

// Heartbeat implements masterpb.MasterServer. Registration and address or
// failure-domain changes are committed; capacity is soft state.
func (s *Server) Heartbeat(ctx context.Context, req *masterpb.HeartbeatRequest) (*masterpb.HeartbeatResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.Heartbeat); ok || err != nil {
		return resp, err
	}
	if !raisfs.ValidNodeID(req.Id) || req.Address == "" {
		return nil, fmt.Errorf("heartbeat: bad id or address: %w", raisfs.ErrInvalidArgument)
	}
	s.registry.put(req.Id, newHeartbeat(time.Now(), req))
	p, err := s.placement()
	if err != nil {
		return nil, err
	}
	servers := p.servers
	cur, known := servers[req.Id]
	if !known || cur.Address != req.Address || cur.Dc != req.Dc || cur.Rack != req.Rack || cur.State == fsmpb.ServerState_SERVER_DOWN {
		r, err := s.apply(ctx, &fsmpb.UpsertServer{Id: req.Id, Address: req.Address, Dc: req.Dc, Rack: req.Rack})
		if err != nil {
			return nil, err
		}
		if r.Created {
			s.log.Info("chunk server registered", "id", req.Id, "address", req.Address, "dc", req.Dc, "rack", req.Rack)
		} else if known && cur.State == fsmpb.ServerState_SERVER_DOWN {
			s.log.Info("chunk server back", "id", req.Id)
		}
	}
	// Volumes their members sealed (full) take no more puts.
	if p, err := s.placement(); err == nil {
		vols := p.volumes
		for _, v := range req.Volumes {
			if vol, ok := vols[raisfs.VolumeID(v.Id)]; ok && (v.Sealed || v.Failed) && vol.State == fsmpb.VolumeState_VOLUME_WRITABLE {
				if _, err := s.apply(ctx, &fsmpb.SetVolumeState{Id: v.Id, State: fsmpb.VolumeState_VOLUME_SEALED}); err != nil {
					return nil, err
				}
			}
		}
	}
	return &masterpb.HeartbeatResponse{LeaseKey: s.fsm.LeaseKey(), IntervalMs: s.cfg.HeartbeatInterval.Milliseconds()}, nil
}

// BadReplicaReports returns how many bad-replica reports this master has
// received while leading (at most the last 1024 are kept).
func (s *Server) BadReplicaReports() int {
	s.registry.mu.Lock()
	defer s.registry.mu.Unlock()
	return len(s.registry.bad)
}

// ReportBadReplica implements masterpb.MasterServer.
func (s *Server) ReportBadReplica(ctx context.Context, req *masterpb.ReportBadReplicaRequest) (*masterpb.ReportBadReplicaResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.ReportBadReplica); ok || err != nil {
		return resp, err
	}
	if req.Sealed {
		// Sealing early is harmless (a new volume opens), so a client's
		// word is enough; the member's next heartbeat says the same.
		vol, err := s.fsm.Volume(raisfs.VolumeID(req.Volume))
		if err != nil {
			return nil, err
		}
		if vol.State == fsmpb.VolumeState_VOLUME_WRITABLE {
			if _, err := s.apply(ctx, &fsmpb.SetVolumeState{Id: req.Volume, State: fsmpb.VolumeState_VOLUME_SEALED}); err != nil {
				return nil, err
			}
			s.log.Info("volume sealed: a member reported it full", "volume", req.Volume, "replica", req.Replica)
		}
		return &masterpb.ReportBadReplicaResponse{}, nil
	}
	if !raisfs.ValidNodeID(req.Replica) || len(req.Hash) != raisfs.HashSize {
		return nil, fmt.Errorf("report bad replica: bad replica id or hash: %w", raisfs.ErrInvalidArgument)
	}
	s.registry.reportBad(badReplica{at: time.Now(), volume: req.Volume, hash: req.Hash, replica: req.Replica, reason: req.Reason})
	s.metrics.badReplicas.Inc()
	s.log.Warn("client reported a bad replica", "volume", req.Volume, "hash", fmt.Sprintf("%x", req.Hash), "replica", req.Replica, "reason", req.Reason)
	return &masterpb.ReportBadReplicaResponse{}, nil
}

// monitorLoop marks chunk servers that stopped reporting as down.
func (s *Server) monitorLoop(ctx context.Context) {
	for sleepCtx(ctx, s.cfg.HeartbeatInterval/2) {
		servers, err := s.fsm.Servers()
		if err != nil {
			continue
		}
		now := time.Now()
		for id, srv := range servers {
			if srv.State != fsmpb.ServerState_SERVER_ALIVE && srv.State != fsmpb.ServerState_SERVER_DRAINING {
				continue
			}
			if silent := now.Sub(s.registry.lastSeen(id)); silent > s.cfg.ServerDownAfter && srv.State == fsmpb.ServerState_SERVER_ALIVE {
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := s.apply(actx, &fsmpb.SetServerState{Id: id, State: fsmpb.ServerState_SERVER_DOWN})
				cancel()
				if err == nil {
					s.log.Warn("chunk server down: no heartbeat", "id", id, "silent", silent.Round(time.Millisecond))
				}
			}
		}
	}
}
