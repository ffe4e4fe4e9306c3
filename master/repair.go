package master

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// Repair keeps every volume at its class's copy count. The leader looks at
// every volume's members each RepairInterval:
//
//   - a member is lost when its server is retired, has been silent past
//     RepairAfter, reports the volume missing or failed, has reported
//     corrupt needles for longer than corruptGrace (they are first put
//     back from healthy members: fillCorrupt), or when fsck found its copy
//     lacking blobs it could not fill; it is leaving
//     when its server is draining (it still serves, and is a good source);
//   - a volume whose staying members are fewer than its copies is planned,
//     the fewest live copies first (the GFS order: one copy left is
//     urgent, two is not);
//   - an open volume is sealed first, on the masters and then on its live
//     members: new writes go to fully replicated volumes, and the copy is
//     one verified stream of a volume that no longer changes;
//   - new members are placed under the rules of new volumes, copy the
//     volume straight from a live member (chunk server to chunk server,
//     rate-limited), and their copy is checked against the source's size
//     and live-blob count; only then is the membership committed, and
//     only if the volume's epoch did not move meanwhile;
//   - copies on servers that are no longer members (a lost member that
//     came back, a drained one) are dropped once the volume is whole.
//
// The plan is recomputed from the replicated state every round, so a new
// leader simply carries on: a copy the old leader left half done is
// replaced (the copy is asked to replace any local leftover).

// memberHealth classifies a volume's members.
type memberHealth struct {
	keep    []string // members that stay
	sources []string // members that can be copied from now
	lost    []string // members to remove
	leaving []string // draining members: serve until replaced, then removed
}

// repairPlan is one volume below its target.
type repairPlan struct {
	id     raisfs.VolumeID
	vol    *fsmpb.Volume
	class  *fsmpb.ReplicationClass
	health memberHealth
	need   int // copies to add
}

func (s *Server) memberHealth(id raisfs.VolumeID, vol *fsmpb.Volume, servers map[string]*fsmpb.Server, now time.Time) memberHealth {
	var h memberHealth
	for _, m := range vol.Members {
		srv, ok := servers[m]
		if !ok || srv.State == fsmpb.ServerState_SERVER_RETIRED {
			h.lost = append(h.lost, m)
			continue
		}
		if srv.State == fsmpb.ServerState_SERVER_DOWN {
			// Marked down ServerDownAfter after its last heartbeat.
			silent := now.Sub(time.Unix(0, srv.SinceUnixNano)) + s.cfg.ServerDownAfter
			if silent >= s.cfg.RepairAfter {
				h.lost = append(h.lost, m)
			} else {
				h.keep = append(h.keep, m) // may come back: wait
			}
			continue
		}
		if _, forced := s.forceReplace.Load(copyKey{id, m}); forced {
			h.lost = append(h.lost, m)
			continue
		}
		if hb, heard := s.registry.get(m); heard {
			rep, has := hb.vols[uint64(id)]
			// A volume is reported from the heartbeat after its creation
			// (or after the member joined it) on; an older heartbeat may
			// not list it yet.
			since := max(vol.CreatedUnixNano, vol.MembersChangedUnixNano)
			settled := hb.at.Sub(time.Unix(0, since)) > 2*s.cfg.HeartbeatInterval+time.Second
			if (has && rep.Failed) || (!has && settled) {
				h.lost = append(h.lost, m)
				continue
			}
			// Corrupt needles are first put back from healthy members
			// (fillCorrupt); a copy that stays corrupt is replaced whole.
			if has && rep.CorruptNeedles > 0 {
				first, _ := s.corruptSince.LoadOrStore(copyKey{id, m}, now)
				if now.Sub(first.(time.Time)) > corruptGrace {
					h.lost = append(h.lost, m)
					continue
				}
			} else if has {
				s.corruptSince.Delete(copyKey{id, m})
			}
		}
		h.sources = append(h.sources, m)
		_, moving := s.moves.Load(copyKey{id, m})
		if srv.State == fsmpb.ServerState_SERVER_DRAINING || moving {
			h.leaving = append(h.leaving, m)
		} else {
			h.keep = append(h.keep, m)
		}
	}
	return h
}

// planRepairs lists the volumes below target, most urgent first.
func (s *Server) planRepairs(p *placementView, now time.Time) []repairPlan {
	var plans []repairPlan
	for id, vol := range p.volumes {
		if vol.State != fsmpb.VolumeState_VOLUME_WRITABLE && vol.State != fsmpb.VolumeState_VOLUME_SEALED {
			continue
		}
		class, err := s.fsm.Class(vol.Class)
		if err != nil {
			continue
		}
		h := s.memberHealth(id, vol, p.servers, now)
		if need := int(class.Copies) - len(h.keep); need > 0 {
			plans = append(plans, repairPlan{id: id, vol: vol, class: class, health: h, need: need})
		}
	}
	sort.Slice(plans, func(i, j int) bool {
		a, b := plans[i], plans[j]
		if len(a.health.sources) != len(b.health.sources) {
			return len(a.health.sources) < len(b.health.sources)
		}
		return a.id < b.id
	})
	return plans
}

// repairLoop runs repairs while this master leads.
func (s *Server) repairLoop(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	running := map[raisfs.VolumeID]bool{}
	slots := make(chan struct{}, s.cfg.MaxRepairs)
	var compacting atomic.Bool
	for sleepCtx(ctx, s.cfg.RepairInterval) {
		p, err := s.placement()
		if err != nil {
			continue
		}
		plans := s.planRepairs(p, time.Now())
		s.metrics.underReplicated.Set(float64(len(plans)))
		for _, plan := range plans {
			mu.Lock()
			busy := running[plan.id]
			mu.Unlock()
			if busy {
				continue
			}
			if len(plan.health.sources) == 0 {
				s.log.Error("volume has no live copy: cannot repair until a member comes back", "volume", plan.id, "members", plan.vol.Members)
				continue
			}
			select {
			case slots <- struct{}{}:
			default:
				continue // all slots busy: the next round takes the rest
			}
			size, _ := s.registry.volumeReport(uint64(plan.id), plan.health.sources)
			mu.Lock()
			running[plan.id] = true
			s.repairing.Store(int64(len(running)))
			s.repairingBytes.Add(size * int64(plan.need))
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(running, plan.id)
					s.repairing.Store(int64(len(running)))
					s.repairingBytes.Add(-size * int64(plan.need))
					mu.Unlock()
					<-slots
				}()
				start := time.Now()
				if err := s.repairVolume(ctx, plan); err != nil {
					if ctx.Err() == nil {
						s.metrics.repairs.WithLabelValues("failed").Inc()
						s.log.Warn("volume repair failed; will retry", "volume", plan.id, "err", err)
					}
					return
				}
				s.metrics.repairs.WithLabelValues("done").Inc()
				s.log.Info("volume repaired", "volume", plan.id, "took", time.Since(start).Round(time.Millisecond))
			})
		}
		s.moves.Range(func(k, _ any) bool { // moves overtaken by other changes
			if vol, ok := p.volumes[k.(copyKey).vol]; !ok || !slices.Contains(vol.Members, k.(copyKey).member) {
				s.moves.Delete(k)
			}
			return true
		})
		s.retireStaleCopies(ctx, p, running, &mu)
		s.finishDrains(ctx, p)
		s.fillCorrupt(ctx, p, running, &mu)
		if compacting.CompareAndSwap(false, true) {
			wg.Go(func() {
				defer compacting.Store(false)
				s.compactGarbage(ctx, p, running, &mu)
			})
		}
	}
}

// compactGarbage compacts, one member at a time, the volumes whose members
// report garbage past the threshold. Volumes being copied are left alone:
// a copy is checked against its source's size.
func (s *Server) compactGarbage(ctx context.Context, p *placementView, running map[raisfs.VolumeID]bool, mu *sync.Mutex) {
	for id, vol := range p.volumes {
		if vol.State != fsmpb.VolumeState_VOLUME_WRITABLE && vol.State != fsmpb.VolumeState_VOLUME_SEALED {
			continue
		}
		for _, m := range vol.Members {
			if ctx.Err() != nil {
				return
			}
			hb, ok := s.registry.get(m)
			srv := p.servers[m]
			if !ok || srv == nil || srv.State != fsmpb.ServerState_SERVER_ALIVE {
				continue
			}
			rep, ok := hb.vols[uint64(id)]
			if !ok || rep.GarbageBytes < s.cfg.CompactMinBytes || float64(rep.GarbageBytes) < s.cfg.CompactGarbageRatio*float64(rep.SizeBytes) {
				continue
			}
			mu.Lock()
			busy := running[id]
			mu.Unlock()
			if busy {
				continue
			}
			token := s.adminLease(id)
			var res struct {
				BytesBefore int64 `json:"bytes_before"`
				BytesAfter  int64 `json:"bytes_after"`
			}
			if err := s.chunkJSON(ctx, http.MethodPost, srv.Address, fmt.Sprintf("/v1/volumes/%d/compact", id), token, nil, &res, time.Hour); err != nil {
				s.log.Warn("compaction failed", "volume", id, "member", m, "err", err)
				continue
			}
			s.metrics.compactions.Inc()
			s.log.Info("volume compacted", "volume", id, "member", m, "garbage", rep.GarbageBytes, "before", res.BytesBefore, "after", res.BytesAfter)
		}
	}
}

// repairVolume seals plan's volume if it is open, copies it to new
// members, verifies the copies and commits the new membership.
func (s *Server) repairVolume(ctx context.Context, plan repairPlan) error {
	id, vol := plan.id, plan.vol
	servers := s.mustServers()
	if vol.State == fsmpb.VolumeState_VOLUME_WRITABLE {
		if _, err := s.apply(ctx, &fsmpb.SetVolumeState{Id: uint64(id), State: fsmpb.VolumeState_VOLUME_SEALED}); err != nil {
			return fmt.Errorf("seal volume %d on the masters: %w", id, err)
		}
	}
	// Seal on the members too (idempotent): a copy streams only a sealed
	// volume, whose bytes no longer change.
	var sources []string
	for _, m := range plan.health.sources {
		if err := s.chunkCall(ctx, http.MethodPost, servers[m].Address, fmt.Sprintf("/v1/volumes/%d/seal", id), s.adminLease(id), http.StatusNoContent); err != nil {
			s.log.Warn("repair: cannot seal a source", "volume", id, "member", m, "err", err)
			continue
		}
		sources = append(sources, m)
	}
	if len(sources) == 0 {
		return fmt.Errorf("volume %d: no member could be sealed: %w", id, raisfs.ErrUnavailable)
	}
	// Most live blobs first: a member that missed writes is the last
	// choice.
	sort.SliceStable(sources, func(i, j int) bool {
		a, _ := s.registry.volumeLive(uint64(id), sources[i])
		b, _ := s.registry.volumeLive(uint64(id), sources[j])
		return a > b
	})
	// New members: not a current member, under the placement rules.
	var have []candidate
	for _, m := range plan.health.keep {
		if srv, ok := servers[m]; ok {
			have = append(have, candidate{id: m, dc: srv.Dc, rack: srv.Rack})
		}
	}
	var cands []candidate
	for _, c := range s.candidates(servers) {
		if !slices.Contains(vol.Members, c.id) {
			cands = append(cands, c)
		}
	}
	// A rebalance move names its target.
	var targets []string
	for _, m := range plan.health.leaving {
		to, ok := s.moves.Load(copyKey{id, m})
		if !ok || len(targets) == plan.need {
			continue
		}
		usable := false
		for _, c := range cands {
			usable = usable || c.id == to.(string)
		}
		if !usable || slices.Contains(targets, to.(string)) {
			s.moves.Delete(copyKey{id, m})
			return fmt.Errorf("volume %d: move from %s to %s cancelled: the target cannot take it now", id, m, to)
		}
		targets = append(targets, to.(string))
	}
	if len(targets) < plan.need {
		var rest []candidate
		for _, c := range cands {
			if !slices.Contains(targets, c.id) {
				rest = append(rest, c)
			}
		}
		for _, t := range targets {
			if srv, ok := servers[t]; ok {
				have = append(have, candidate{id: t, dc: srv.Dc, rack: srv.Rack})
			}
		}
		more, err := placeMore(rest, have, plan.need-len(targets), int(plan.class.MinDcs), rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
		if err != nil {
			return fmt.Errorf("volume %d: place %d new copies: %w", id, plan.need-len(targets), err)
		}
		targets = append(targets, more...)
	}
	src := ""
	for _, t := range targets {
		var err error
		if src, err = s.copyVolume(ctx, id, t, sources, servers); err != nil {
			return err
		}
	}
	members := append(slices.Clone(plan.health.keep), targets...)
	if _, err := s.apply(ctx, &fsmpb.SetVolumeState{Id: uint64(id), Members: members, Epoch: vol.Epoch, IfEpoch: true}); err != nil {
		return fmt.Errorf("volume %d: commit members %v: %w", id, members, err)
	}
	for _, m := range vol.Members {
		if !slices.Contains(members, m) {
			s.forceReplace.Delete(copyKey{id, m})
			s.moves.Delete(copyKey{id, m})
		}
	}
	s.log.Info("volume members changed", "volume", id, "members", members, "removed", append(plan.health.lost, plan.health.leaving...), "source", src)
	return nil
}

// copyVolume copies sealed volume id to target from the first of sources
// that succeeds, and checks the copy against that source's own figures
// (size and live blobs, read after the seal).
func (s *Server) copyVolume(ctx context.Context, id raisfs.VolumeID, target string, sources []string, servers map[string]*fsmpb.Server) (string, error) {
	type figures struct {
		SizeBytes int64 `json:"size_bytes"`
		LiveBlobs int64 `json:"live_blobs"`
	}
	admin := s.adminLease(id)
	var errs []string
	for _, src := range sources {
		var want, got figures
		if err := s.chunkJSON(ctx, http.MethodGet, servers[src].Address, fmt.Sprintf("/v1/volumes/%d", id), admin, nil, &want, 10*time.Second); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", src, err))
			continue
		}
		body := map[string]any{"source": servers[src].Address, "replace": true, "bytes_per_sec": s.cfg.RepairBytesPerSec}
		// A copy takes as long as the volume's size at the rate; the
		// leader's context ends it on loss of leadership.
		if err := s.chunkJSON(ctx, http.MethodPost, servers[target].Address, fmt.Sprintf("/v1/volumes/%d/replicate", id), s.adminLease(id), body, &got, time.Hour); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", src, err))
			continue
		}
		if got != want {
			errs = append(errs, fmt.Sprintf("%s: copy has %d bytes and %d blobs, source %d and %d", src, got.SizeBytes, got.LiveBlobs, want.SizeBytes, want.LiveBlobs))
			continue
		}
		s.metrics.repairBytes.Add(float64(got.SizeBytes))
		return src, nil
	}
	return "", fmt.Errorf("volume %d: copy to %s failed from every source (%s): %w", id, target, strings.Join(errs, "; "), raisfs.ErrUnavailable)
}

// corruptGrace: a copy whose corrupt needles cannot be put back within
// this is replaced whole.
const corruptGrace = 30 * time.Second

// fillCorrupt puts back, from other members, the needles a member found
// corrupt: far cheaper than copying the volume, and possible even when
// every spare server is full or two copies of a volume are each damaged
// in a different place (found by the chaos harness).
func (s *Server) fillCorrupt(ctx context.Context, p *placementView, running map[raisfs.VolumeID]bool, mu *sync.Mutex) {
	for id, vol := range p.volumes {
		if vol.State != fsmpb.VolumeState_VOLUME_WRITABLE && vol.State != fsmpb.VolumeState_VOLUME_SEALED {
			continue
		}
		mu.Lock()
		busy := running[id]
		mu.Unlock()
		if busy {
			continue
		}
		for _, m := range vol.Members {
			hb, ok := s.registry.get(m)
			if !ok || hb.vols[uint64(id)] == nil || hb.vols[uint64(id)].CorruptNeedles == 0 || p.servers[m] == nil {
				continue
			}
			list, err := s.listNeedles(ctx, p.servers[m].Address, id)
			if err != nil {
				continue
			}
			var others []string
			for _, o := range vol.Members {
				if o != m {
					others = append(others, o)
				}
			}
			for h, st := range list {
				if st != "corrupt" {
					continue
				}
				if b, err := s.fsm.Blob(h[:]); err != nil || raisfs.VolumeID(b.Volume) != id {
					continue // not a live blob of this volume: deletion or fsck reclaims it
				}
				if s.fill(ctx, p, id, h, m, others) {
					s.log.Info("corrupt needle put back", "volume", id, "member", m, "blob", h)
				}
			}
		}
	}
}

// retireStaleCopies drops copies held by servers that are not members of
// a volume that is whole again (a replaced member that came back, a
// drained server), and copies of abandoned volumes. Volumes being
// repaired are left alone: their new copies are not members yet.
func (s *Server) retireStaleCopies(ctx context.Context, p *placementView, running map[raisfs.VolumeID]bool, mu *sync.Mutex) {
	for sid, srv := range p.servers {
		if srv.State != fsmpb.ServerState_SERVER_ALIVE && srv.State != fsmpb.ServerState_SERVER_DRAINING {
			continue
		}
		hb, ok := s.registry.get(sid)
		if !ok {
			continue
		}
		for vid := range hb.vols {
			id := raisfs.VolumeID(vid)
			vol, known := p.volumes[id]
			if !known || slices.Contains(vol.Members, sid) {
				continue // unknown ids are left for fsck to report
			}
			mu.Lock()
			busy := running[id]
			mu.Unlock()
			if busy {
				continue
			}
			if vol.State != fsmpb.VolumeState_VOLUME_ABANDONED {
				class, err := s.fsm.Class(vol.Class)
				if err != nil {
					continue
				}
				if h := s.memberHealth(id, vol, p.servers, time.Now()); len(h.keep) < int(class.Copies) {
					continue // not whole: the old copy may still be needed
				}
			}
			token := s.adminLease(id)
			if err := s.chunkCall(ctx, http.MethodDelete, srv.Address, fmt.Sprintf("/v1/volumes/%d", id), token, http.StatusNoContent, http.StatusNotFound); err != nil {
				s.log.Warn("cannot drop a stale copy", "volume", id, "server", sid, "err", err)
				continue
			}
			s.log.Info("stale copy dropped", "volume", id, "server", sid)
		}
	}
}

// finishDrains retires draining servers that are no longer a member of any
// volume: they hold nothing that is needed.
func (s *Server) finishDrains(ctx context.Context, p *placementView) {
	for sid, srv := range p.servers {
		if srv.State != fsmpb.ServerState_SERVER_DRAINING {
			continue
		}
		member := false
		for _, vol := range p.volumes {
			if vol.State != fsmpb.VolumeState_VOLUME_ABANDONED && slices.Contains(vol.Members, sid) {
				member = true
				break
			}
		}
		if member {
			continue
		}
		if _, err := s.apply(ctx, &fsmpb.SetServerState{Id: sid, State: fsmpb.ServerState_SERVER_RETIRED}); err == nil {
			s.log.Info("drain finished: server retired", "server", sid)
		}
	}
}

func (s *Server) mustServers() map[string]*fsmpb.Server {
	if p, err := s.placement(); err == nil {
		return p.servers
	}
	return map[string]*fsmpb.Server{}
}

// adminLease signs a one-minute admin lease on volume id (create, seal,
// copy, compact, drop, fill, list).
func (s *Server) adminLease(id raisfs.VolumeID) string {
	return raisfs.Lease{Op: raisfs.LeaseOpAdmin, Volume: id, Expiry: time.Now().Add(time.Minute)}.Sign(s.fsm.LeaseKey())
}

// chunkJSON calls a chunk server's admin API with a JSON body (if in is
// not nil) and decodes a JSON answer into out.
func (s *Server) chunkJSON(ctx context.Context, method, addr, path, token string, in, out any, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return err
	}
	req.Header.Set(raisfs.LeaseHeader, token)
	resp, err := s.chunks.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s%s: %w: %w", method, addr, path, raisfs.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("%s %s%s: status %d (%s): %s", method, addr, path, resp.StatusCode, resp.Header.Get("X-Rais-Error"), bytes.TrimSpace(msg))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s %s%s: bad answer: %w", method, addr, path, err)
	}
	return nil
}
