package master

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/api/txnpb"
	"github.com/raisfs/raisfs/internal/failpoint"
	"github.com/raisfs/raisfs/raftfsm"
)

// Txn implements masterpb.MasterServer: one Raft entry, applied only if
// its compares hold. A Txn is not idempotent in general (a retried one
// whose first attempt committed fails its compares), so an ambiguous
// outcome is reported as such and the caller re-reads.
func (s *Server) Txn(ctx context.Context, req *txnpb.Txn) (*masterpb.TxnResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.Txn); ok || err != nil {
		return resp, err
	}
	if err := raftfsm.ValidateTxn(req); err != nil {
		return nil, err
	}
	if err := s.opsReady(raftfsm.OpsTxn); err != nil {
		return nil, fmt.Errorf("txn: %w", err)
	}
	// Commits of uploads carry the write lease the upload was made under,
	// checked as CommitPut checks it; the state machine checks its expiry.
	for _, op := range req.Ops {
		c, ok := op.Op.(*txnpb.TxnOp_CommitObject)
		if !ok || c.CommitObject.Volume == 0 {
			continue
		}
		if err := s.checkPutLease(c.CommitObject.Hash, c.CommitObject.Volume, c.CommitObject.Lease, c.CommitObject.LeaseExpiryUnixNano); err != nil {
			return nil, fmt.Errorf("txn: commit %q: %w", c.CommitObject.Key, err)
		}
	}
	// Clients that cache a record this transaction may write drop it
	// first (watch.go), and may cache it again once the entry has applied
	// or certainly never will: when ctx ends first, only Raft's answer
	// says so.
	keys := writtenRecords(req)
	if len(keys) == 0 || failpoint.SkipCacheInvalidation {
		r, err := s.apply(ctx, req)
		if err != nil {
			return nil, err
		}
		return &masterpb.TxnResponse{Revision: r.Revision}, nil
	}
	end, err := s.invalidate(ctx, keys, writerWatch(ctx))
	if err != nil {
		return nil, fmt.Errorf("txn: %w", err)
	}
	start := time.Now()
	f, err := s.propose(req, applyTimeout(ctx))
	if err != nil {
		end()
		return nil, err
	}
	r := s.await(ctx, f, start)
	if ctx.Err() == nil {
		end() // await saw Raft's answer
	} else {
		// Raft answers every proposal (applied, leadership lost, or
		// shutdown), so this goroutine ends with it.
		go func() { f.Error(); end() }()
	}
	if r.Err != nil {
		return nil, r.Err
	}
	return &masterpb.TxnResponse{Revision: r.Revision}, nil
}

// Records implements masterpb.MasterServer: a linearizable read on the
// leader (it sees every Txn acknowledged before the call began).
func (s *Server) Records(ctx context.Context, req *masterpb.RecordsRequest) (*masterpb.RecordsResponse, error) {
	if resp, ok, err := forward(s, ctx, req, masterpb.MasterClient.Records); ok || err != nil {
		return resp, err
	}
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	limit := int(req.Limit)
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	// Pages stay well under gRPC's 4 MiB message limit.
	recs, more, next, rev, err := s.fsm.Records(req.Prefix, req.After, limit, 2<<20, req.MinVersion)
	if err != nil {
		return nil, err
	}
	resp := &masterpb.RecordsResponse{More: more, Revision: rev, Next: next}
	for _, r := range recs {
		resp.Records = append(resp.Records, &masterpb.RecordEntry{Key: r.Key, Value: r.Value, Version: r.Version})
	}
	return resp, nil
}

// opsReady reports whether every master in the Raft configuration has
// announced that its build applies command set want (see
// raftfsm.OpsVersion). During a rolling upgrade a master still on an
// older build would stop at the first entry it cannot apply; until all
// have announced, commands of the newer set are refused as unavailable
// (callers retry later; an MTA defers the delivery). A positive answer is
// remembered for the configuration it was given for.
func (s *Server) opsReady(want uint32) error {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("raft configuration: %w", err)
	}
	var ids []string
	for _, srv := range f.Configuration().Servers {
		ids = append(ids, string(srv.ID))
	}
	if p := s.opsChecked.Load(); p != nil && p.want >= want && slices.Equal(p.ids, ids) {
		return nil
	}
	ms, err := s.fsm.Masters()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if ms[id].OpsVersion < want {
			return fmt.Errorf("master %s has not announced a build that applies this command (it runs an older version, or has not started since the upgrade): upgrade and start every master: %w", id, raisfs.ErrUnavailable)
		}
	}
	s.opsChecked.Store(&opsCheck{want: want, ids: ids})
	return nil
}

// opsCheck is a configuration (its servers, in order) that opsReady found
// ready for command set want.
type opsCheck struct {
	want uint32
	ids  []string
}
