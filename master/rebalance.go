package master

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// Rebalancing moves whole volumes, like repair: a move makes the source
// member "leaving" for that volume and names the target, and the repair
// loop seals, copies, verifies and commits it like any other repair, then
// drops the old copy. Planned moves are the leader's soft state: after a
// leader change the operator runs the command again, which plans from
// where the cluster stands (it is safe to repeat).

// Rebalance implements masterpb.MasterServer.
func (s *Server) Rebalance(ctx context.Context, req *masterpb.RebalanceRequest) (*masterpb.RebalanceResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.Rebalance); ok || err != nil {
		return resp, err
	}
	spread := req.Spread
	if spread == 0 {
		spread = 0.1
	}
	if spread < 0 || spread >= 1 {
		return nil, fmt.Errorf("spread %g: want a fraction in (0, 1): %w", spread, raisfs.ErrInvalidArgument)
	}
	p, err := s.placement()
	if err != nil {
		return nil, err
	}
	moves, before, after := s.planRebalance(p, spread)
	resp := &masterpb.RebalanceResponse{SpreadBefore: before, SpreadAfter: after}
	for _, m := range moves {
		resp.Moves = append(resp.Moves, &masterpb.VolumeMove{Volume: uint64(m.vol), From: m.member, To: m.to, Bytes: m.bytes})
	}
	if !req.DryRun {
		for _, m := range moves {
			s.moves.Store(m.copyKey, m.to)
		}
		s.log.Info("rebalance planned", "moves", len(moves), "spread_before", before, "spread_after", after)
	}
	return resp, nil
}

type move struct {
	copyKey        // the volume and the member it leaves
	to      string // the member it goes to
	bytes   int64
}

// planRebalance moves volumes from the fullest to the emptiest alive
// server, one at a time, while that narrows the spread of used/capacity,
// keeping each volume's copies on distinct servers and racks.
func (s *Server) planRebalance(p *placementView, spread float64) ([]move, float64, float64) {
	type load struct {
		id, dc, rack string
		used, cap    int64
	}
	loads := map[string]*load{}
	for id, srv := range p.servers {
		if srv.State != fsmpb.ServerState_SERVER_ALIVE {
			continue
		}
		hb, ok := s.registry.get(id)
		if !ok || hb.report.CapacityBytes <= 0 {
			continue
		}
		loads[id] = &load{id: id, dc: srv.Dc, rack: srv.Rack, used: hb.report.UsedBytes, cap: hb.report.CapacityBytes}
	}
	ratio := func(l *load) float64 { return float64(l.used) / float64(l.cap) }
	extremes := func() (hi, lo *load) {
		for _, l := range loads {
			if hi == nil || ratio(l) > ratio(hi) || (ratio(l) == ratio(hi) && l.id < hi.id) {
				hi = l
			}
			if lo == nil || ratio(l) < ratio(lo) || (ratio(l) == ratio(lo) && l.id < lo.id) {
				lo = l
			}
		}
		return hi, lo
	}
	if len(loads) < 2 {
		return nil, 0, 0
	}
	hi, lo := extremes()
	before := ratio(hi) - ratio(lo)
	// Volume sizes as the members report them; volumes already moving or
	// being repaired are not planned again.
	members := map[raisfs.VolumeID][]string{}
	size := map[raisfs.VolumeID]int64{}
	var ids []raisfs.VolumeID
	for id, vol := range p.volumes {
		if vol.State != fsmpb.VolumeState_VOLUME_WRITABLE && vol.State != fsmpb.VolumeState_VOLUME_SEALED {
			continue
		}
		if sz, _ := s.registry.volumeReport(uint64(id), vol.Members); sz > 0 {
			size[id] = sz
			members[id] = slices.Clone(vol.Members)
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		return size[ids[i]] > size[ids[j]] || (size[ids[i]] == size[ids[j]] && ids[i] < ids[j])
	})
	moved := map[raisfs.VolumeID]bool{}
	s.moves.Range(func(k, _ any) bool { moved[k.(copyKey).vol] = true; return true })
	var plan []move
	for range 10000 {
		hi, lo := extremes()
		gap := ratio(hi) - ratio(lo)
		if gap <= spread {
			break
		}
		found := false
		for _, id := range ids {
			if moved[id] || !slices.Contains(members[id], hi.id) || slices.Contains(members[id], lo.id) {
				continue
			}
			// The move must narrow the gap between the two, not swap it.
			after := max(ratio(hi)-float64(size[id])/float64(hi.cap), ratio(lo)+float64(size[id])/float64(lo.cap)) -
				min(ratio(hi)-float64(size[id])/float64(hi.cap), ratio(lo)+float64(size[id])/float64(lo.cap))
			if after >= gap {
				continue
			}
			// Keep the copies on distinct racks when they are now.
			rackClash := false
			for _, m := range members[id] {
				if o, ok := loads[m]; ok && m != hi.id && o.dc == lo.dc && o.rack == lo.rack {
					rackClash = true
				}
			}
			if rackClash {
				continue
			}
			plan = append(plan, move{copyKey: copyKey{id, hi.id}, to: lo.id, bytes: size[id]})
			moved[id] = true
			hi.used -= size[id]
			lo.used += size[id]
			for i, m := range members[id] {
				if m == hi.id {
					members[id][i] = lo.id
				}
			}
			found = true
			break
		}
		if !found {
			break
		}
	}
	hi, lo = extremes()
	return plan, before, ratio(hi) - ratio(lo)
}
