package master

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/internal/failpoint"
	"github.com/raisfs/raisfs/internal/netx"
	"github.com/raisfs/raisfs/internal/rpcerr"
	"github.com/raisfs/raisfs/raftfsm"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// defaultRPCTimeout bounds a call whose caller set no deadline: nothing
// waits on Raft forever.
const defaultRPCTimeout = 10 * time.Second

const forwardedKey = "x-rais-forwarded"

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultRPCTimeout)
		defer cancel()
	}
	resp, err := handler(ctx, req)
	return resp, rpcerr.ToStatus(err)
}

// streamInterceptor gives stream handlers' errors (WatchRecords) the same
// status codes and reasons as unary calls: a client tells "not the leader"
// from "fell behind" by errors.Is, not by reading messages.
func streamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return rpcerr.ToStatus(handler(srv, ss))
}

// peerConns caches gRPC client connections to other masters.
type peerConns struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeerConns() *peerConns { return &peerConns{conns: map[string]*grpc.ClientConn{}} }

func (p *peerConns) get(addr string) (masterpb.MasterClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return masterpb.NewMasterClient(c), nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(netx.DialContext))
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return masterpb.NewMasterClient(c), nil
}

func (p *peerConns) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = map[string]*grpc.ClientConn{}
}

// leader returns a client for the current leader, waiting (bounded by ctx)
// through an election. ok is false when this master is the leader.
func (s *Server) leader(ctx context.Context) (masterpb.MasterClient, bool, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 && s.raft.State() != raft.Leader {
		// Forwarded here by a master that thought we lead; we do not (any
		// more). Do not bounce it around: the caller retries.
		return nil, false, fmt.Errorf("forwarded to a non-leader: %w", raisfs.ErrNotLeader)
	}
	for {
		if s.raft.State() == raft.Leader {
			return nil, false, nil
		}
		if _, id := s.raft.LeaderWithID(); id != "" {
			ms, err := s.fsm.Masters()
			if addr := ms[string(id)].APIAddress; err == nil && addr != "" {
				c, err := s.peers.get(addr)
				if err != nil {
					return nil, false, err
				}
				return c, true, nil
			}
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return nil, false, fmt.Errorf("no leader known: %w: %w", raisfs.ErrNotLeader, ctx.Err())
		}
	}
}

func forwardCtx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, forwardedKey, "1")
}

// forward runs call against the leader if this master does not lead; ok
// is false when the caller should handle the request locally.
func forward[Req, Resp any](s *Server, ctx context.Context, req Req, call func(masterpb.MasterClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (resp Resp, ok bool, err error) {
	c, remote, err := s.leader(ctx)
	if err != nil || !remote {
		return resp, remote, err
	}
	s.metrics.forwarded.Inc()
	resp, err = call(c, forwardCtx(ctx), req)
	return resp, true, err
}

// applyAnywhere applies op on the leader: locally, or through the
// AnnounceMaster RPC for SetMaster (the only op followers originate).
func (s *Server) applyAnywhere(ctx context.Context, op *fsmpb.SetMaster) error {
	c, remote, err := s.leader(ctx)
	if err != nil {
		return err
	}
	if !remote {
		_, err := s.apply(ctx, op)
		return err
	}
	_, err = c.AnnounceMaster(forwardCtx(ctx), &masterpb.AddMasterRequest{Id: op.Id, ApiAddress: op.ApiAddress, OpsVersion: op.OpsVersion})
	return err
}

// AnnounceMaster implements masterpb.MasterServer.
func (s *Server) AnnounceMaster(ctx context.Context, req *masterpb.AddMasterRequest) (*masterpb.AddMasterResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.AnnounceMaster); ok || err != nil {
		return resp, err
	}
	if !raisfs.ValidNodeID(req.Id) || req.ApiAddress == "" {
		return nil, fmt.Errorf("announce master: bad id or address: %w", raisfs.ErrInvalidArgument)
	}
	_, err := s.apply(ctx, &fsmpb.SetMaster{Id: req.Id, ApiAddress: req.ApiAddress, OpsVersion: req.OpsVersion})
	return &masterpb.AddMasterResponse{}, err
}

// AddMaster implements masterpb.MasterServer: adds a voter to the group.
func (s *Server) AddMaster(ctx context.Context, req *masterpb.AddMasterRequest) (*masterpb.AddMasterResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.AddMaster); ok || err != nil {
		return resp, err
	}
	if !raisfs.ValidNodeID(req.Id) || req.RaftAddress == "" {
		return nil, fmt.Errorf("add master: bad id or raft address: %w", raisfs.ErrInvalidArgument)
	}
	defer s.lease.freeze()()
	if err := s.raft.AddVoter(raft.ServerID(req.Id), raft.ServerAddress(req.RaftAddress), 0, timeLeft(ctx)).Error(); err != nil {
		return nil, fmt.Errorf("add master %s: %w: %w", req.Id, raisfs.ErrOutcomeUnknown, err)
	}
	if req.ApiAddress != "" {
		if _, err := s.apply(ctx, &fsmpb.SetMaster{Id: req.Id, ApiAddress: req.ApiAddress}); err != nil {
			return nil, err
		}
	}
	s.log.Info("master added", "id", req.Id, "raft", req.RaftAddress)
	return &masterpb.AddMasterResponse{}, nil
}

// RemoveMaster implements masterpb.MasterServer.
func (s *Server) RemoveMaster(ctx context.Context, req *masterpb.RemoveMasterRequest) (*masterpb.RemoveMasterResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.RemoveMaster); ok || err != nil {
		return resp, err
	}
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, err
	}
	found := false
	for _, srv := range cf.Configuration().Servers {
		found = found || string(srv.ID) == req.Id
	}
	if !found {
		return nil, fmt.Errorf("master %q: %w", req.Id, raisfs.ErrNotFound)
	}
	defer s.lease.freeze()()
	if err := s.raft.RemoveServer(raft.ServerID(req.Id), 0, timeLeft(ctx)).Error(); err != nil {
		return nil, fmt.Errorf("remove master %s: %w: %w", req.Id, raisfs.ErrOutcomeUnknown, err)
	}
	if req.Id != s.cfg.ID {
		if _, err := s.apply(ctx, &fsmpb.SetMaster{Id: req.Id, Remove: true}); err != nil {
			return nil, err
		}
	}
	s.log.Info("master removed", "id", req.Id)
	return &masterpb.RemoveMasterResponse{}, nil
}

func timeLeft(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return defaultRPCTimeout
}

func hashFrom(b []byte) (raisfs.Hash, error) {
	var h raisfs.Hash
	if len(b) != raisfs.HashSize {
		return h, fmt.Errorf("hash of %d bytes, want %d: %w", len(b), raisfs.HashSize, raisfs.ErrInvalidArgument)
	}
	copy(h[:], b)
	return h, nil
}

// replicas resolves volume members to addresses.
func (s *Server) replicas(members []string) []*masterpb.Replica {
	var servers map[string]*fsmpb.Server
	if p, err := s.placement(); err == nil {
		servers = p.servers
	}
	out := make([]*masterpb.Replica, 0, len(members))
	for _, id := range members {
		r := &masterpb.Replica{Id: id}
		if srv, ok := servers[id]; ok {
			r.Address = srv.Address
		}
		out = append(out, r)
	}
	return out
}

// BeginPut implements masterpb.MasterServer.
func (s *Server) BeginPut(ctx context.Context, req *masterpb.BeginPutRequest) (*masterpb.BeginPutResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.BeginPut); ok || err != nil {
		return resp, err
	}
	p, err := s.checkPut(ctx, req, !req.DeferCommit)
	if err != nil || p.answer != nil {
		return p.answer, err
	}
	vid, vol, err := s.writableVolume(ctx, p.class, p.hash)
	if err != nil {
		return nil, err
	}
	return s.grantPut(p, vid, vol), nil
}

// checkBatch refuses a batch of more than maxBatch puts.
func checkBatch(n int) error {
	if n > maxBatch {
		return fmt.Errorf("%d puts in one batch, at most %d: %w", n, maxBatch, raisfs.ErrInvalidArgument)
	}
	return nil
}

// BeginPuts implements masterpb.MasterServer.
func (s *Server) BeginPuts(ctx context.Context, req *masterpb.BeginPutsRequest) (*masterpb.BeginPutsResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.BeginPuts); ok || err != nil {
		return resp, err
	}
	if err := checkBatch(len(req.Puts)); err != nil {
		return nil, err
	}
	resp := &masterpb.BeginPutsResponse{Results: make([]*masterpb.BeginPutResult, len(req.Puts))}
	// Items to upload, by class: each class's share goes to one volume.
	upload := map[string][]int{}
	checked := make([]putCheck, len(req.Puts))
	for i, put := range req.Puts {
		p, err := s.checkPut(ctx, put, false)
		switch {
		case errors.Is(err, raisfs.ErrNotLeader):
			return nil, err // the whole batch belongs elsewhere
		case err != nil:
			resp.Results[i] = &masterpb.BeginPutResult{Error: rpcerr.ToItem(err)}
		case p.answer != nil:
			resp.Results[i] = &masterpb.BeginPutResult{Put: p.answer}
		default:
			checked[i] = p
			upload[p.class.Name] = append(upload[p.class.Name], i)
		}
	}
	for _, items := range upload {
		hashes := make([]raisfs.Hash, len(items))
		for j, i := range items {
			hashes[j] = checked[i].hash
		}
		vid, vol, err := s.writableVolume(ctx, checked[items[0]].class, hashes...)
		for _, i := range items {
			if err != nil {
				resp.Results[i] = &masterpb.BeginPutResult{Error: rpcerr.ToItem(err)}
				continue
			}
			resp.Results[i] = &masterpb.BeginPutResult{Put: s.grantPut(checked[i], vid, vol)}
		}
	}
	return resp, nil
}

// maxBatch bounds the items of one BeginPuts or CommitPuts call.
const maxBatch = 1024

// putCheck is what checkPut found out about one put that needs an upload.
type putCheck struct {
	answer *masterpb.BeginPutResponse // final: nothing to upload
	class  *fsmpb.ReplicationClass
	hash   raisfs.Hash
}

// checkPut validates one put and answers it when no bytes need to move:
// the key holds this content already (stored), or the content is stored
// under another key (dedup: bound now when bindDedup, else answered
// dedup for the caller to commit with volume 0).
func (s *Server) checkPut(ctx context.Context, req *masterpb.BeginPutRequest, bindDedup bool) (putCheck, error) {
	if err := raftfsm.ValidateKey(req.Key); err != nil {
		return putCheck{}, err
	}
	h, err := hashFrom(req.Hash)
	if err != nil {
		return putCheck{}, err
	}
	if req.Size < 0 {
		return putCheck{}, fmt.Errorf("size %d: %w", req.Size, raisfs.ErrInvalidArgument)
	}
	class, err := s.fsm.Class(req.Class)
	if err != nil {
		return putCheck{}, err
	}
	// No read barrier: the checks below read the leader's own state, which
	// may trail the last commits by a few milliseconds. That is safe: the
	// commit (PutObject) re-checks everything in the state machine, and
	// the worst a stale answer causes is an upload the commit then
	// resolves (idempotent retry, dedup or conflict).
	if s.raft.State() != raft.Leader {
		return putCheck{}, fmt.Errorf("begin put: %w", raisfs.ErrNotLeader)
	}
	// Retry of a committed put, or a conflict.
	obj, err := s.fsm.Object(req.Key)
	if err == nil && string(obj.Hash) != string(req.Hash) {
		// A conflict is an answer, not a hint the commit re-checks: it
		// must come from the current state. This leader's state may trail
		// (just elected, or deposed and not yet aware): confirm first.
		// Found by the chaos harness.
		if err := s.readBarrier(ctx); err != nil {
			return putCheck{}, err
		}
		obj, err = s.fsm.Object(req.Key)
		if err == nil && string(obj.Hash) != string(req.Hash) {
			return putCheck{}, fmt.Errorf("key is bound to other content: %w", raisfs.ErrConflict)
		}
	}
	if err == nil && string(obj.Hash) == string(req.Hash) {
		return putCheck{answer: &masterpb.BeginPutResponse{Stored: true}}, nil
	}
	// Dedup: the content is stored already; bind the key now (or, for a
	// commit in a transaction or a batch, say so and let it bind the key).
	if blob, err := s.fsm.Blob(req.Hash); err == nil && blob.Size == req.Size {
		if !bindDedup {
			return putCheck{answer: &masterpb.BeginPutResponse{Dedup: true}}, nil
		}
		_, err := s.apply(ctx, &fsmpb.PutObject{Key: req.Key, Hash: req.Hash, Size: req.Size, Class: class.Name})
		if err == nil {
			s.metrics.dedups.Inc()
			return putCheck{answer: &masterpb.BeginPutResponse{Stored: true}}, nil
		}
		if !isBlobGone(err) {
			return putCheck{}, err
		}
		// Deleted meanwhile: upload it like a new blob.
	}
	return putCheck{class: class, hash: h}, nil
}

// grantPut answers a put that needs an upload: volume vid, its replicas,
// a signed write lease for the blob.
func (s *Server) grantPut(p putCheck, vid raisfs.VolumeID, vol *fsmpb.Volume) *masterpb.BeginPutResponse {
	expiry := time.Now().Add(s.cfg.LeaseTTL)
	lease := raisfs.Lease{Op: raisfs.LeaseOpPut, Volume: vid, Hash: p.hash, Expiry: expiry}.Sign(s.fsm.LeaseKey())
	quorum := p.class.WriteQuorum
	if quorum == 0 || quorum > uint32(len(vol.Members)) {
		quorum = uint32(len(vol.Members))
	}
	return &masterpb.BeginPutResponse{
		Volume: uint64(vid), Replicas: s.replicas(vol.Members), Lease: lease,
		LeaseExpiryUnixNano: expiry.UnixNano(), WriteQuorum: quorum,
	}
}

func isBlobGone(err error) bool { return errors.Is(err, raftfsm.ErrBlobGone) }

// checkPutLease checks that lease is this master group's write lease for
// blob hash in volume, expiring at expiryUnixNano: it proves the group
// chose the volume for this blob; the expiry is what the state machine
// checks against commit time.
func (s *Server) checkPutLease(hash []byte, volume uint64, lease string, expiryUnixNano int64) error {
	h, err := hashFrom(hash)
	if err != nil {
		return err
	}
	expiry, err := raisfs.CheckLease(s.fsm.LeaseKey(), lease, raisfs.LeaseOpPut, raisfs.VolumeID(volume), h)
	if err != nil {
		return err
	}
	if expiry.UnixNano() != expiryUnixNano {
		return fmt.Errorf("lease expiry does not match the token: %w", raisfs.ErrPermissionDenied)
	}
	return nil
}

// CommitPut implements masterpb.MasterServer.
func (s *Server) CommitPut(ctx context.Context, req *masterpb.CommitPutRequest) (*masterpb.CommitPutResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.CommitPut); ok || err != nil {
		return resp, err
	}
	if err := s.checkPutLease(req.Hash, req.Volume, req.Lease, req.LeaseExpiryUnixNano); err != nil {
		return nil, err
	}
	r, err := s.apply(ctx, putObject(req))
	if err != nil {
		return nil, err
	}
	if r.Created {
		s.metrics.puts.Inc()
	}
	return &masterpb.CommitPutResponse{Created: r.Created}, nil
}

func putObject(req *masterpb.CommitPutRequest) *fsmpb.PutObject {
	return &fsmpb.PutObject{
		Key: req.Key, Hash: req.Hash, Size: req.Size, Class: req.Class,
		Volume: req.Volume, LeaseExpiryUnixNano: req.LeaseExpiryUnixNano,
	}
}

// CommitPuts implements masterpb.MasterServer. The items are proposed
// together (applyPuts), so Raft carries them in one round: one log write,
// one message per follower, one state-file transaction.
func (s *Server) CommitPuts(ctx context.Context, req *masterpb.CommitPutsRequest) (*masterpb.CommitPutsResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.CommitPuts); ok || err != nil {
		return resp, err
	}
	if err := checkBatch(len(req.Puts)); err != nil {
		return nil, err
	}
	resp := &masterpb.CommitPutsResponse{Results: make([]*masterpb.CommitPutResult, len(req.Puts))}
	ops := make([]*fsmpb.PutObject, 0, len(req.Puts))
	var items []int
	for i, put := range req.Puts {
		// Volume 0 dedups onto a stored blob: no bytes were written under
		// a lease (the state machine refuses it if there is no such blob).
		if put.Volume != 0 {
			if err := s.checkPutLease(put.Hash, put.Volume, put.Lease, put.LeaseExpiryUnixNano); err != nil {
				resp.Results[i] = &masterpb.CommitPutResult{Error: rpcerr.ToItem(err)}
				continue
			}
		}
		ops = append(ops, putObject(put))
		items = append(items, i)
	}
	for j, r := range s.applyPuts(ctx, ops) {
		res := &masterpb.CommitPutResult{Created: r.Created, Error: rpcerr.ToItem(r.Err)}
		if r.Created && r.Err == nil {
			s.metrics.puts.Inc()
		}
		resp.Results[items[j]] = res
	}
	return resp, nil
}

// applyPuts commits puts, each succeeding or failing on its own: as one
// PutObjects entry once every master's build applies it (command set 3),
// else as one entry per put, proposed without waiting between them.
func (s *Server) applyPuts(ctx context.Context, puts []*fsmpb.PutObject) []raftfsm.Result {
	if len(puts) > 1 && s.opsReady(raftfsm.OpsPutObjects) == nil {
		r := s.applyAll(ctx, []any{&fsmpb.PutObjects{Puts: puts}})[0]
		if r.Err == nil && len(r.Items) != len(puts) {
			r.Err = fmt.Errorf("apply: %d results for %d puts: %w", len(r.Items), len(puts), raisfs.ErrOutcomeUnknown)
		}
		if r.Err != nil {
			out := make([]raftfsm.Result, len(puts))
			for i := range out {
				out[i].Err = r.Err
			}
			return out
		}
		return r.Items
	}
	ops := make([]any, len(puts))
	for i, p := range puts {
		ops[i] = p
	}
	return s.applyAll(ctx, ops)
}

// Lookup implements masterpb.MasterServer.
func (s *Server) Lookup(ctx context.Context, req *masterpb.LookupRequest) (*masterpb.LookupResponse, error) {
	if !req.AllowStale && !failpoint.StaleReads {
		if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.Lookup); ok || err != nil {
			return resp, err
		}
		if err := s.readBarrier(ctx); err != nil {
			return nil, err
		}
	}
	if err := raftfsm.ValidateKey(req.Key); err != nil {
		return nil, err
	}
	obj, blob, vol, err := s.fsm.ObjectWithBlob(req.Key)
	if err != nil {
		return nil, err
	}
	return &masterpb.LookupResponse{
		Hash: obj.Hash, Size: obj.Size, Class: obj.Class, CreatedUnixNano: obj.CreatedUnixNano,
		Volume: blob.Volume, Replicas: s.replicas(vol.Members),
	}, nil
}

// Delete implements masterpb.MasterServer.
func (s *Server) Delete(ctx context.Context, req *masterpb.DeleteRequest) (*masterpb.DeleteResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.Delete); ok || err != nil {
		return resp, err
	}
	_, err := s.apply(ctx, &fsmpb.DeleteObject{Key: req.Key})
	if err != nil {
		return nil, err
	}
	return &masterpb.DeleteResponse{}, nil
}

// List implements masterpb.MasterServer.
func (s *Server) List(ctx context.Context, req *masterpb.ListRequest) (*masterpb.ListResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.List); ok || err != nil {
		return resp, err
	}
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	limit := int(req.Limit)
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	objs, more, err := s.fsm.List(req.Prefix, req.After, limit)
	if err != nil {
		return nil, err
	}
	resp := &masterpb.ListResponse{More: more}
	for _, o := range objs {
		resp.Entries = append(resp.Entries, &masterpb.ListEntry{Key: o.Key, Hash: o.Hash, Size: o.Size, CreatedUnixNano: o.CreatedUnixNano})
	}
	return resp, nil
}

// Status implements masterpb.MasterServer. It is served by any master from
// its own state (it may lag the leader by a few entries) and marks the
// leader as this master sees it.
func (s *Server) Status(ctx context.Context, req *masterpb.StatusRequest) (*masterpb.StatusResponse, error) {
	// The registry's soft state (free space, suspect) lives on the leader.
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.Status); ok && err == nil {
		return resp, nil
	}
	resp := &masterpb.StatusResponse{}
	st := s.fsm.Stats()
	resp.Objects, resp.Bytes, resp.Blobs, resp.AppliedIndex = st.Objects, st.Bytes, st.Blobs, st.AppliedIndex
	apis, _ := s.fsm.Masters()
	_, leaderID := s.raft.LeaderWithID()
	if cf := s.raft.GetConfiguration(); cf.Error() == nil {
		for _, srv := range cf.Configuration().Servers {
			resp.Masters = append(resp.Masters, &masterpb.MasterStatus{
				Id: string(srv.ID), Address: apis[string(srv.ID)].APIAddress, RaftAddress: string(srv.Address),
				Leader: srv.ID == leaderID, Voter: srv.Suffrage == raft.Voter,
			})
		}
	}
	p, err := s.placement()
	if err != nil {
		return nil, err
	}
	servers, vols := p.servers, p.volumes
	resp.Volumes = uint32(len(vols))
	perServer := map[string]uint32{}
	for _, v := range vols {
		if v.State == fsmpb.VolumeState_VOLUME_ABANDONED {
			continue
		}
		for _, m := range v.Members {
			perServer[m]++
		}
	}
	resp.UnderReplicated = uint32(s.underReplicated(vols, servers))
	resp.Repairing = uint32(s.repairing.Load())
	resp.RepairingBytes = s.repairingBytes.Load()
	s.moves.Range(func(_, _ any) bool { resp.MovesPending++; return true })
	now := time.Now()
	for id, srv := range servers {
		cs := &masterpb.ChunkServerStatus{Id: id, Address: srv.Address, Dc: srv.Dc, Rack: srv.Rack, Volumes: perServer[id], State: stateName(srv.State)}
		if hb, ok := s.registry.get(id); ok {
			cs.UsedBytes, cs.FreeBytes = hb.report.UsedBytes, hb.report.FreeBytes
			if srv.State == fsmpb.ServerState_SERVER_ALIVE && now.Sub(hb.at) > s.cfg.ServerDownAfter/3 {
				cs.State = "suspect"
			}
		}
		resp.Chunkservers = append(resp.Chunkservers, cs)
	}
	sort.Slice(resp.Chunkservers, func(i, j int) bool { return resp.Chunkservers[i].Id < resp.Chunkservers[j].Id })
	sort.Slice(resp.Masters, func(i, j int) bool { return resp.Masters[i].Id < resp.Masters[j].Id })
	return resp, nil
}

func stateName(st fsmpb.ServerState) string {
	switch st {
	case fsmpb.ServerState_SERVER_ALIVE:
		return "alive"
	case fsmpb.ServerState_SERVER_DOWN:
		return "down"
	case fsmpb.ServerState_SERVER_DRAINING:
		return "draining"
	case fsmpb.ServerState_SERVER_RETIRED:
		return "retired"
	}
	return "unknown"
}

// underReplicated counts live volumes with fewer healthy members than
// their class asks for.
func (s *Server) underReplicated(vols map[raisfs.VolumeID]*fsmpb.Volume, servers map[string]*fsmpb.Server) int {
	n := 0
	for _, v := range vols {
		if v.State != fsmpb.VolumeState_VOLUME_WRITABLE && v.State != fsmpb.VolumeState_VOLUME_SEALED {
			continue
		}
		want := len(v.Members)
		if c, err := s.fsm.Class(v.Class); err == nil {
			want = int(c.Copies)
		}
		healthy := 0
		for _, m := range v.Members {
			if srv, ok := servers[m]; ok && srv.State == fsmpb.ServerState_SERVER_ALIVE {
				healthy++
			}
		}
		if healthy < want {
			n++
		}
	}
	return n
}

// Drain implements masterpb.MasterServer.
func (s *Server) Drain(ctx context.Context, req *masterpb.DrainRequest) (*masterpb.DrainResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.Drain); ok || err != nil {
		return resp, err
	}
	p, err := s.placement()
	if err != nil {
		return nil, err
	}
	srv, ok := p.servers[req.Id]
	if !ok {
		return nil, fmt.Errorf("chunk server %q: %w", req.Id, raisfs.ErrNotFound)
	}
	want := fsmpb.ServerState_SERVER_DRAINING
	switch {
	case req.Undrain:
		want = fsmpb.ServerState_SERVER_ALIVE
	case srv.State == fsmpb.ServerState_SERVER_RETIRED:
		want = srv.State // drained already: running it again changes nothing
	case srv.State == fsmpb.ServerState_SERVER_DOWN:
		return nil, fmt.Errorf("chunk server %s is down: its volumes are repaired from other members, nothing to drain: %w", req.Id, raisfs.ErrInvalidArgument)
	}
	if srv.State != want {
		if _, err := s.apply(ctx, &fsmpb.SetServerState{Id: req.Id, State: want}); err != nil {
			return nil, err
		}
		s.log.Info("chunk server state set by an operator", "id", req.Id, "state", stateName(want))
	}
	n := uint32(0)
	for _, v := range p.volumes {
		if v.State != fsmpb.VolumeState_VOLUME_ABANDONED && slices.Contains(v.Members, req.Id) {
			n++
		}
	}
	return &masterpb.DrainResponse{State: stateName(want), Volumes: n}, nil
}

// SetClass implements masterpb.MasterServer.
func (s *Server) SetClass(ctx context.Context, req *masterpb.SetClassRequest) (*masterpb.SetClassResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.SetClass); ok || err != nil {
		return resp, err
	}
	if req.MinDcs > req.Copies {
		return nil, fmt.Errorf("class %q: %d copies cannot span %d data centers: %w", req.Name, req.Copies, req.MinDcs, raisfs.ErrInvalidArgument)
	}
	_, err := s.apply(ctx, &fsmpb.SetClass{Class: &fsmpb.ReplicationClass{Name: req.Name, Copies: req.Copies, WriteQuorum: req.WriteQuorum, MinDcs: req.MinDcs}})
	if err != nil {
		return nil, err
	}
	s.log.Info("replication class set", "name", req.Name, "copies", req.Copies, "write_quorum", req.WriteQuorum, "min_dcs", req.MinDcs)
	return &masterpb.SetClassResponse{}, nil
}
