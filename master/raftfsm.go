package master

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/raisfs/raisfs/raftfsm"
)

// fsmAdapter hosts a raftfsm.FSM as hashicorp/raft's BatchingFSM: a batch
// of committed entries is applied in one bbolt transaction.
type fsmAdapter struct{ f *raftfsm.FSM }

var _ raft.BatchingFSM = fsmAdapter{}

func (a fsmAdapter) ApplyBatch(logs []*raft.Log) []any {
	entries := make([]raftfsm.Entry, len(logs))
	for i, l := range logs {
		entries[i] = raftfsm.Entry{Index: l.Index}
		if l.Type == raft.LogCommand {
			entries[i].Data = l.Data
		}
	}
	rs := a.f.Apply(entries)
	out := make([]any, len(rs))
	for i := range rs {
		out[i] = rs[i]
	}
	return out
}

func (a fsmAdapter) Apply(l *raft.Log) any { return a.ApplyBatch([]*raft.Log{l})[0] }

func (a fsmAdapter) Snapshot() (raft.FSMSnapshot, error) {
	s, err := a.f.Snapshot()
	if err != nil {
		return nil, err
	}
	return snapshot{s}, nil
}

func (a fsmAdapter) Restore(r io.ReadCloser) error {
	defer r.Close()
	return a.f.Restore(r)
}

type snapshot struct{ s *raftfsm.Snapshot }

// Persist streams the bbolt image; it runs concurrently with Apply.
func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s snapshot) Release() { s.s.Release() }
