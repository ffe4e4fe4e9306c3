package master

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"time"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// placementView is the volume and chunk-server maps at one placement
// version. The maps are shared: read them, never modify them.
type placementView struct {
	ver     uint64
	volumes map[raisfs.VolumeID]*fsmpb.Volume
	servers map[string]*fsmpb.Server
}

// placement returns the current volumes and servers, from a cache that is
// refreshed only when a volume or server record changed: put and look-up
// paths read them on every request, and they change rarely.
func (s *Server) placement() (*placementView, error) {
	v := s.fsm.PlacementVersion()
	if p := s.placementCache.Load(); p != nil && p.ver == v {
		return p, nil
	}
	vols, err := s.fsm.Volumes()
	if err != nil {
		return nil, err
	}
	servers, err := s.fsm.Servers()
	if err != nil {
		return nil, err
	}
	p := &placementView{ver: v, volumes: vols, servers: servers}
	s.placementCache.Store(p)
	return p, nil
}

// candidate is a chunk server that may receive a new volume.
type candidate struct {
	id, dc, rack string
	free         int64
}

// place picks copies distinct servers for a new volume: spread over data
// centers first, then racks, and within that weighted by free space.
// It fails with raisfs.ErrNoPlacement rather than place fewer copies or
// fewer data centers than asked (never silent under-replication).
func place(cands []candidate, copies, minDCs int, rng *rand.Rand) ([]string, error) {
	return placeMore(cands, nil, copies, minDCs, rng)
}

// placeMore picks n more servers for a volume whose remaining members are
// have (repair, drain), under the same rules as place: the new copies go
// first to data centers and racks that have none.
func placeMore(cands, have []candidate, n, minDCs int, rng *rand.Rand) ([]string, error) {
	copies := n
	if len(cands) < n {
		return nil, fmt.Errorf("need %d chunk servers with space, have %d: %w", n, len(cands), raisfs.ErrNoPlacement)
	}
	dcs := map[string]bool{}
	for _, c := range append(append([]candidate(nil), cands...), have...) {
		dcs[c.dc] = true
	}
	if minDCs > 1 && len(dcs) < minDCs {
		return nil, fmt.Errorf("need copies in %d data centers, servers with space are in %d: %w", minDCs, len(dcs), raisfs.ErrNoPlacement)
	}
	rest := append([]candidate(nil), cands...)
	sort.Slice(rest, func(i, j int) bool { return rest[i].id < rest[j].id }) // determinism for a seeded rng
	usedDC, usedRack := map[string]bool{}, map[string]bool{}
	for _, c := range have {
		usedDC[c.dc] = true
		usedRack[c.dc+"/"+c.rack] = true
	}
	var out []string
	for len(out) < copies {
		tier := func(c candidate) int {
			switch {
			case !usedDC[c.dc]:
				return 0
			case !usedRack[c.dc+"/"+c.rack]:
				return 1
			}
			return 2
		}
		best := 3
		for _, c := range rest {
			best = min(best, tier(c))
		}
		var pool []int
		var total float64
		for i, c := range rest {
			if tier(c) == best {
				pool = append(pool, i)
				total += float64(c.free) + 1
			}
		}
		x := rng.Float64() * total
		pick := pool[len(pool)-1]
		for _, i := range pool {
			x -= float64(rest[i].free) + 1
			if x < 0 {
				pick = i
				break
			}
		}
		c := rest[pick]
		out = append(out, c.id)
		usedDC[c.dc] = true
		usedRack[c.dc+"/"+c.rack] = true
		rest = append(rest[:pick], rest[pick+1:]...)
	}
	return out, nil
}

// candidates are the alive, non-draining servers that reported enough
// free space to this leader.
func (s *Server) candidates(servers map[string]*fsmpb.Server) []candidate {
	var out []candidate
	for id, srv := range servers {
		if srv.State != fsmpb.ServerState_SERVER_ALIVE {
			continue
		}
		free, ok := s.registry.free(id)
		if !ok || free < s.cfg.MinFreeBytes {
			continue
		}
		out = append(out, candidate{id: id, dc: srv.Dc, rack: srv.Rack, free: free})
	}
	return out
}

// unheard counts the servers recorded alive that this leader has not heard
// from yet, while it is younger than ServerDownAfter (after that, such a
// server is marked down), and says how long it has led.
func (s *Server) unheard(servers map[string]*fsmpb.Server) (int, time.Duration) {
	var age time.Duration
	if since := s.registry.started(); !since.IsZero() {
		age = time.Since(since)
	} // else Raft made this master leader a moment ago and the registry is not reset yet: as new as it gets
	if age >= s.cfg.ServerDownAfter {
		return 0, age
	}
	n := 0
	for id, srv := range servers {
		if _, ok := s.registry.get(id); !ok && srv.State == fsmpb.ServerState_SERVER_ALIVE {
			n++
		}
	}
	return n, age
}

// writableVolume picks a volume of class to write blobs hs to (one that
// is not still deleting an earlier copy of any of them), creating one
// when fewer than the wanted number (Config.WritableVolumes) are open.
func (s *Server) writableVolume(ctx context.Context, class *fsmpb.ReplicationClass, hs ...raisfs.Hash) (raisfs.VolumeID, *fsmpb.Volume, error) {
	find := func() ([]raisfs.VolumeID, map[raisfs.VolumeID]*fsmpb.Volume, error) {
		p, err := s.placement()
		if err != nil {
			return nil, nil, err
		}
		vols, servers := p.volumes, p.servers
		var ids []raisfs.VolumeID
	next:
		for id, v := range vols {
			if v.State != fsmpb.VolumeState_VOLUME_WRITABLE || v.Class != class.Name || len(v.Members) < int(class.Copies) {
				continue
			}
			for _, m := range v.Members {
				if srv, ok := servers[m]; !ok || srv.State != fsmpb.ServerState_SERVER_ALIVE {
					continue next
				}
			}
			if size, sealed := s.registry.volumeReport(uint64(id), v.Members); sealed || size >= s.cfg.VolumeSizeLimit {
				continue
			}
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		return ids, vols, nil
	}
	ids, vols, err := find()
	if err != nil {
		return 0, nil, err
	}
	want := s.cfg.WritableVolumes
	if want == 0 {
		p, err := s.placement()
		if err != nil {
			return 0, nil, err
		}
		want = max(1, len(s.candidates(p.servers))/int(max(class.Copies, 1)))
	}
	if len(ids) < want {
		// One creation at a time. A request that has a volume to use does
		// not wait for another's creation; one that has none does.
		locked := false
		if len(ids) == 0 {
			s.volMu.Lock()
			locked = true
		} else {
			locked = s.volMu.TryLock()
		}
		if locked {
			ids, vols, err = find() // another request may have created one meanwhile
			if err == nil && len(ids) < want {
				if _, _, cerr := s.createVolume(ctx, class); cerr == nil {
					ids, vols, err = find()
				} else if len(ids) == 0 {
					err = cerr
				} else {
					s.log.Warn("could not open another writable volume", "class", class.Name, "err", cerr)
				}
			}
			s.volMu.Unlock()
		}
		if err != nil {
			return 0, nil, err
		}
	}
	usable := s.notDeleting(ids, hs)
	if len(usable) == 0 && len(ids) > 0 {
		// The content is queued for deletion in every writable volume
		// (its last key went less than a lease ago, and a put of the same
		// bytes cannot bind to what is being deleted: "Deleting safely"):
		// a mail client that deletes a message and appends it again, or a
		// message delivered again. Another volume takes it, up to a few
		// more than the cluster wants open (a client putting and deleting
		// the same bytes in a loop must not open volumes without end).
		s.volMu.Lock()
		ids, vols, err = find()
		if err == nil {
			if usable = s.notDeleting(ids, hs); len(usable) == 0 && len(ids) < want+maxExtraVolumes {
				if _, _, cerr := s.createVolume(ctx, class); cerr != nil {
					err = cerr
				} else if ids, vols, err = find(); err == nil {
					usable = s.notDeleting(ids, hs)
				}
			}
		}
		s.volMu.Unlock()
		if err != nil {
			return 0, nil, err
		}
	}
	if len(usable) == 0 {
		return 0, nil, fmt.Errorf("no writable volume for class %q: %w", class.Name, raisfs.ErrNoPlacement)
	}
	id := usable[rand.IntN(len(usable))]
	return id, vols[id], nil
}

// maxExtraVolumes bounds the writable volumes opened beyond the wanted
// number for content queued for deletion everywhere.
const maxExtraVolumes = 8

// notDeleting returns the volumes of ids in which none of hs is queued
// for deletion.
func (s *Server) notDeleting(ids []raisfs.VolumeID, hs []raisfs.Hash) []raisfs.VolumeID {
	var usable []raisfs.VolumeID
ids:
	for _, id := range ids {
		for _, h := range hs {
			if s.fsm.IsPendingDelete(h, id) {
				continue ids
			}
		}
		usable = append(usable, id)
	}
	return usable
}

// createVolume places a new volume, creates it on its members, and makes
// it writable. A volume whose creation fails on a member is abandoned.
func (s *Server) createVolume(ctx context.Context, class *fsmpb.ReplicationClass) (raisfs.VolumeID, *fsmpb.Volume, error) {
	p, err := s.placement()
	if err != nil {
		return 0, nil, err
	}
	servers := p.servers
	members, err := place(s.candidates(servers), int(class.Copies), int(class.MinDcs), rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	if err != nil {
		if n, age := s.unheard(servers); n > 0 {
			// A new leader knows no server's free space until it hears
			// from it: a transient state, not a full cluster.
			return 0, nil, fmt.Errorf("place a volume: this leader (elected %s ago) has not yet heard from %d alive chunk servers (%v): %w",
				age.Round(time.Millisecond), n, err, raisfs.ErrUnavailable)
		}
		return 0, nil, err
	}
	r, err := s.apply(ctx, &fsmpb.CreateVolume{Members: members, Class: class.Name})
	if err != nil {
		return 0, nil, err
	}
	id := r.VolumeID
	token := s.adminLease(id)
	for _, m := range members {
		if err := s.chunkCall(ctx, http.MethodPut, servers[m].Address, fmt.Sprintf("/v1/volumes/%d", id), token, http.StatusNoContent); err != nil {
			s.log.Warn("volume creation failed on a member; abandoning the volume", "volume", id, "member", m, "err", err)
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.apply(actx, &fsmpb.SetVolumeState{Id: uint64(id), State: fsmpb.VolumeState_VOLUME_ABANDONED})
			cancel()
			return 0, nil, fmt.Errorf("create volume %d on %s: %w: %w", id, m, raisfs.ErrUnavailable, err)
		}
	}
	if _, err := s.apply(ctx, &fsmpb.SetVolumeState{Id: uint64(id), State: fsmpb.VolumeState_VOLUME_WRITABLE}); err != nil {
		return 0, nil, err
	}
	s.log.Info("volume created", "volume", id, "members", members, "class", class.Name)
	vol, err := s.fsm.Volume(id)
	return id, vol, err
}

// chunkCall makes one data-API call to a chunk server.
func (s *Server) chunkCall(ctx context.Context, method, addr, path, token string, okCodes ...int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set(raisfs.LeaseHeader, token)
	resp, err := s.chunks.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	for _, c := range okCodes {
		if resp.StatusCode == c {
			return nil
		}
	}
	return fmt.Errorf("%s %s%s: status %d (%s)", method, addr, path, resp.StatusCode, resp.Header.Get("X-Rais-Error"))
}

// gcLoop carries out queued blob deletions: a tombstone on every member,
// then BlobGone. Members that are down are retried later.
//
// A deletion waits until it has been queued for longer than a lease
// lasts. A put whose lease was granted before the blob's last key went may
// have sent its bytes before the deletion (finding the needle there, so
// writing nothing) and commit after it: while the deletion is queued the
// state machine refuses that commit, and once the wait is over the lease
// has expired, so it refuses it too. Deleting sooner and clearing the
// queue entry could let that commit bind a key to bytes already gone.
func (s *Server) gcLoop(ctx context.Context) {
	for sleepCtx(ctx, time.Second) {
		pds, err := s.fsm.PendingDeletes(256, time.Now().Add(-s.cfg.LeaseTTL-s.cfg.ClockSkew))
		if err != nil || len(pds) == 0 {
			continue
		}
		servers, _ := s.fsm.Servers()
		for _, pd := range pds {
			if ctx.Err() != nil {
				return
			}
			done := true
			if vol, err := s.fsm.Volume(pd.Volume); err == nil && vol.State != fsmpb.VolumeState_VOLUME_ABANDONED {
				token := raisfs.Lease{Op: raisfs.LeaseOpDelete, Volume: pd.Volume, Hash: pd.Hash, Expiry: time.Now().Add(time.Minute)}.Sign(s.fsm.LeaseKey())
				for _, m := range vol.Members {
					srv, ok := servers[m]
					if !ok || srv.State == fsmpb.ServerState_SERVER_DOWN {
						done = false
						continue
					}
					path := fmt.Sprintf("/v1/volumes/%d/blobs/%s", pd.Volume, pd.Hash)
					if err := s.chunkCall(ctx, http.MethodDelete, srv.Address, path, token, http.StatusNoContent, http.StatusNotFound); err != nil {
						done = false
					}
				}
			}
			if done {
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				s.apply(actx, &fsmpb.BlobGone{Hash: pd.Hash[:], Volume: uint64(pd.Volume)})
				cancel()
			}
		}
	}
}
