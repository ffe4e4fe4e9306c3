package raftfsm

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// BenchmarkApplyPutBatch measures one Raft entry carrying a batch of puts
// (what the SDK's batcher commits) applied to a state that already holds
// 50,000 objects, each with its own blob: the masters' per-entry cost on
// the small-put path.
//
//	go test ./raftfsm -run '^$' -bench BenchmarkApplyPutBatch
func BenchmarkApplyPutBatch(b *testing.B) {
	for _, per := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("puts=%d", per), func(b *testing.B) {
			f, err := Open(filepath.Join(b.TempDir(), "state.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			now := time.Now().UnixNano()
			seq := 0
			apply := applier(b, f, now)
			put := func() *fsmpb.PutObject {
				seq++
				h := make([]byte, 32)
				binary.LittleEndian.PutUint64(h, uint64(seq)*0x9e3779b97f4a7c15)
				binary.LittleEndian.PutUint64(h[8:], uint64(seq))
				return &fsmpb.PutObject{Key: fmt.Appendf(nil, "bench/%08d", seq), Hash: h, Size: 4096, Volume: 1, LeaseExpiryUnixNano: now + 1e12}
			}
			apply(&fsmpb.UpsertServer{Id: "cs1", Address: "a:1"})
			apply(&fsmpb.CreateVolume{Members: []string{"cs1"}})
			for range 50 {
				ops := make([]any, 1000)
				for i := range ops {
					ops[i] = put()
				}
				apply(ops...)
			}
			b.ResetTimer()
			for range b.N {
				batch := &fsmpb.PutObjects{}
				for range per {
					batch.Puts = append(batch.Puts, put())
				}
				apply(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/put")
		})
	}
}
