package master

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// orphanGrace is how long fsck waits before it re-checks what looked
// wrong: an upload committed, or a blob deleted, while the lists were
// being read is not a problem.
const orphanGrace = 2 * time.Second

// copyKey names one member's copy of a volume.
type copyKey struct {
	vol    raisfs.VolumeID
	member string
}

// Fsck implements masterpb.MasterServer.
func (s *Server) Fsck(ctx context.Context, req *masterpb.FsckRequest) (*masterpb.FsckResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.Fsck); ok || err != nil {
		return resp, err
	}
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	return s.fsck(ctx, req)
}

// fsckLoop runs fsck with repair every FsckEvery while this master leads:
// orphaned uploads are reclaimed and copies with gaps replaced without an
// operator, which is the members' anti-entropy at the granularity of a
// whole copy.
func (s *Server) fsckLoop(ctx context.Context) {
	if s.cfg.FsckEvery <= 0 {
		return
	}
	for sleepCtx(ctx, s.cfg.FsckEvery) {
		if err := s.readBarrier(ctx); err != nil {
			continue
		}
		if _, err := s.fsck(ctx, &masterpb.FsckRequest{Repair: true}); err != nil && ctx.Err() == nil {
			s.log.Warn("periodic fsck failed", "err", err)
		}
	}
}

func (s *Server) fsck(ctx context.Context, req *masterpb.FsckRequest) (*masterpb.FsckResponse, error) {
	maxEx := int(req.MaxExamples)
	if maxEx == 0 {
		maxEx = 20
	}
	resp := &masterpb.FsckResponse{}
	example := func(format string, args ...any) {
		if len(resp.Examples) < maxEx {
			resp.Examples = append(resp.Examples, fmt.Sprintf(format, args...))
		}
	}
	p, err := s.placement()
	if err != nil {
		return nil, err
	}
	expected := map[raisfs.VolumeID]map[raisfs.Hash]bool{}
	err = s.fsm.ForEachBlob(func(h raisfs.Hash, b *fsmpb.Blob) bool {
		resp.Blobs++
		v := raisfs.VolumeID(b.Volume)
		if expected[v] == nil {
			expected[v] = map[raisfs.Hash]bool{}
		}
		expected[v][h] = true
		return ctx.Err() == nil
	})
	if err != nil {
		return nil, err
	}
	ids := make([]raisfs.VolumeID, 0, len(p.volumes))
	for id := range p.volumes {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })

	type finding struct {
		copyKey
		hash raisfs.Hash
	}
	var missing, corrupt, orphans []finding
	holders := map[raisfs.VolumeID]map[raisfs.Hash][]string{} // members holding each expected blob
	for _, id := range ids {
		vol := p.volumes[id]
		if vol.State != fsmpb.VolumeState_VOLUME_WRITABLE && vol.State != fsmpb.VolumeState_VOLUME_SEALED {
			continue
		}
		resp.Volumes++
		for _, m := range vol.Members {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			srv := p.servers[m]
			if srv == nil || srv.State == fsmpb.ServerState_SERVER_DOWN || srv.State == fsmpb.ServerState_SERVER_RETIRED {
				resp.CopiesUnchecked++
				example("volume %d on %s: not checked (server down or retired)", id, m)
				continue
			}
			have, err := s.listNeedles(ctx, srv.Address, id)
			if err != nil {
				resp.CopiesUnchecked++
				example("volume %d on %s: not checked: %v", id, m, err)
				continue
			}
			resp.CopiesChecked++
			ck := copyKey{id, m}
			for h := range expected[id] {
				switch have[h] {
				case "live":
					if holders[id] == nil {
						holders[id] = map[raisfs.Hash][]string{}
					}
					holders[id][h] = append(holders[id][h], m)
				case "corrupt":
					corrupt = append(corrupt, finding{ck, h})
				default:
					missing = append(missing, finding{ck, h})
				}
			}
			for h, st := range have {
				if st == "live" && !expected[id][h] {
					orphans = append(orphans, finding{ck, h})
				}
			}
		}
	}
	// Re-check against the state as it is now: what was committed or
	// deleted while the lists were read is fine.
	if len(missing)+len(orphans) > 0 {
		t := time.NewTimer(orphanGrace)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	inVolume := func(f finding) bool {
		b, err := s.fsm.Blob(f.hash[:])
		return err == nil && raisfs.VolumeID(b.Volume) == f.vol
	}
	replace := map[copyKey]bool{}
	for _, f := range missing {
		if !inVolume(f) {
			continue
		}
		resp.Missing++
		example("volume %d on %s: blob %s missing", f.vol, f.member, f.hash)
		if !req.Repair {
			continue
		}
		// Anti-entropy: put the blob back from a member that has it; only
		// if that fails is the whole copy replaced.
		if s.fill(ctx, p, f.vol, f.hash, f.member, holders[f.vol][f.hash]) {
			resp.NeedlesFilled++
			continue
		}
		replace[f.copyKey] = true
	}
	for _, f := range corrupt {
		resp.Corrupt++
		example("volume %d on %s: blob %s corrupt", f.vol, f.member, f.hash)
		replace[f.copyKey] = true
	}
	var real []finding
	for _, f := range orphans {
		if inVolume(f) || s.fsm.IsPendingDelete(f.hash, f.vol) {
			continue // committed meanwhile, or queued for deletion already
		}
		real = append(real, f)
		resp.Orphaned++
		example("volume %d on %s: needle %s has no blob record (orphan)", f.vol, f.member, f.hash)
	}
	if req.Repair {
		queued := map[copyKey]bool{} // by volume and hash, once for all members
		for _, f := range real {
			k := copyKey{f.vol, f.hash.String()}
			if queued[k] {
				continue
			}
			queued[k] = true
			if _, err := s.apply(ctx, &fsmpb.QueueDelete{Hash: f.hash[:], Volume: uint64(f.vol)}); err != nil {
				example("volume %d: could not queue orphan %s for deletion: %v", f.vol, f.hash, err)
				continue
			}
			resp.OrphansQueued++
		}
	}
	if req.Repair {
		// A damaged copy is replaced from an undamaged member (repair copies
		// only from members not marked). When every checked copy of a
		// volume is damaged, none is replaced: each may hold blobs the
		// others lack (a class whose write quorum is below its copies),
		// and a whole-copy replacement could lose them.
		damaged := map[raisfs.VolumeID]int{}
		for k := range replace {
			damaged[k.vol]++
		}
		for k := range replace {
			if damaged[k.vol] >= len(p.volumes[k.vol].Members) {
				example("volume %d: every copy lacks some blobs; not replaced (needs a needle-level repair)", k.vol)
				continue
			}
			s.forceReplace.Store(k, true)
			resp.CopiesQueued++
		}
	}
	resp.UnderReplicated = uint32(s.underReplicated(p.volumes, p.servers))
	s.log.Info("fsck", "repair", req.Repair, "volumes", resp.Volumes, "blobs", resp.Blobs, "missing", resp.Missing,
		"corrupt", resp.Corrupt, "orphaned", resp.Orphaned, "unchecked", resp.CopiesUnchecked, "under_replicated", resp.UnderReplicated)
	return resp, nil
}

// fill asks member to fetch blob h of volume id from one of holders.
func (s *Server) fill(ctx context.Context, p *placementView, id raisfs.VolumeID, h raisfs.Hash, member string, holders []string) bool {
	dst := p.servers[member]
	if dst == nil {
		return false
	}
	admin := s.adminLease(id)
	for _, src := range holders {
		srv := p.servers[src]
		if srv == nil || src == member {
			continue
		}
		err := s.chunkJSON(ctx, http.MethodPost, dst.Address, fmt.Sprintf("/v1/volumes/%d/blobs/%s/fill", id, h), admin,
			map[string]string{"source": srv.Address}, nil, time.Minute)
		if err == nil {
			return true
		}
		s.log.Warn("fill failed", "volume", id, "blob", h, "member", member, "source", src, "err", err)
	}
	return false
}

// listNeedles reads a member's whole needle list of volume id.
func (s *Server) listNeedles(ctx context.Context, addr string, id raisfs.VolumeID) (map[raisfs.Hash]string, error) {
	out := map[raisfs.Hash]string{}
	after := ""
	admin := s.adminLease(id)
	for {
		var page struct {
			Needles []struct {
				Hash  string `json:"hash"`
				State string `json:"state"`
			} `json:"needles"`
			Next string `json:"next"`
		}
		q := url.Values{"limit": {"10000"}}
		if after != "" {
			q.Set("after", after)
		}
		if err := s.chunkJSON(ctx, http.MethodGet, addr, fmt.Sprintf("/v1/volumes/%d/needles?%s", id, q.Encode()), admin, nil, &page, time.Minute); err != nil {
			return nil, err
		}
		for _, n := range page.Needles {
			h, err := raisfs.ParseHash(n.Hash)
			if err != nil {
				return nil, fmt.Errorf("needle list of volume %d on %s: %w", id, addr, err)
			}
			out[h] = n.State
		}
		if page.Next == "" {
			return out, nil
		}
		after = page.Next
	}
}
