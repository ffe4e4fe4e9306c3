package chunkserver

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/raisfs/raisfs"
)

func TestCompact_DropsGarbageKeepsLive(t *testing.T) {
	cfg := testConfig(t, &faultFS{})
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	ctx := context.Background()
	var bodies [][]byte
	var hashes []raisfs.Hash
	for i := range 40 {
		body, h := payload(uint64(i), 2000+i*500)
		mustPut(t, s, 1, body, h)
		bodies, hashes = append(bodies, body), append(hashes, h)
	}
	for i := 0; i < 40; i += 2 {
		if err := s.Delete(ctx, 1, hashes[i]); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Compact(ctx, 1)
	if err != nil {
		t.Fatalf("Compact = %v", err)
	}
	if res.BytesAfter >= res.BytesBefore || res.Blobs != 20 {
		t.Fatalf("Compact = %+v, want smaller volume with 20 blobs", res)
	}
	verify := func(s *Store) {
		t.Helper()
		for i, h := range hashes {
			if i%2 == 0 {
				if _, err := readBlob(s, 1, h); !errors.Is(err, raisfs.ErrNotFound) {
					t.Fatalf("deleted blob %d after compaction: %v", i, err)
				}
			} else {
				mustRead(t, s, 1, h, bodies[i])
			}
		}
	}
	verify(s)
	st := s.Status().Volumes[0]
	if st.Generation != 2 || st.GarbageByte != 0 || st.SizeBytes != res.BytesAfter {
		t.Fatalf("status after compaction = %+v", st)
	}
	s.Close()
	s2 := mustOpen(t, cfg)
	verify(s2)
	// It keeps taking writes, and compacting again is harmless.
	body, h := payload(1000, 100)
	mustPut(t, s2, 1, body, h)
	if _, err := s2.Compact(ctx, 1); err != nil {
		t.Fatal(err)
	}
	verify(s2)
	mustRead(t, s2, 1, h, body)
}

// The durability protocol, as a trace of filesystem operations: the new
// files are complete and synced before they replace the old ones, and the
// directory is synced after.
func TestCompact_DurabilityOrder(t *testing.T) {
	fs := &faultFS{}
	s := mustOpen(t, testConfig(t, fs))
	mustCreate(t, s, 1)
	body, h := payload(1, 1000)
	mustPut(t, s, 1, body, h)
	fs.startTrace()
	if _, err := s.Compact(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(fs.stopTrace(), "\n")
	want := strings.Join([]string{
		"create vol-1.dat.cpd",
		"sync vol-1.dat.cpd",
		"create vol-1.idx.cpx",
		"sync vol-1.idx.cpx",
		"rename vol-1.dat.cpd vol-1.dat",
		"rename vol-1.idx.cpx vol-1.idx",
		"syncdir",
	}, "\n")
	if got != want {
		t.Fatalf("compaction trace:\n%s\nwant:\n%s", got, want)
	}
}

// Crash images of a compaction: before the first rename, and between the
// two renames. Both must open to the right content.
func TestCompact_CrashImages(t *testing.T) {
	cfg := testConfig(t, &faultFS{})
	dir := cfg.Dirs[0]
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	ctx := context.Background()
	var bodies [][]byte
	var hashes []raisfs.Hash
	for i := range 10 {
		body, h := payload(uint64(i), 3000)
		mustPut(t, s, 1, body, h)
		bodies, hashes = append(bodies, body), append(hashes, h)
	}
	for i := range 5 {
		s.Delete(ctx, 1, hashes[i])
	}
	s.Close()
	oldData, _ := os.ReadFile(dataPath(dir, 1))
	oldIdx, _ := os.ReadFile(indexPath(dir, 1))
	s = mustOpen(t, cfg)
	if _, err := s.Compact(ctx, 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	newData, _ := os.ReadFile(dataPath(dir, 1))
	newIdx, _ := os.ReadFile(indexPath(dir, 1))

	for name, files := range map[string]map[string][]byte{
		"before renames":  {".dat": oldData, ".idx": oldIdx, ".dat.cpd": newData, ".idx.cpx": newIdx},
		"between renames": {".dat": newData, ".idx": oldIdx},
		"torn temp files": {".dat": oldData, ".idx": oldIdx, ".dat.cpd": newData[:len(newData)/2]},
	} {
		t.Run(name, func(t *testing.T) {
			for ext, b := range files {
				os.WriteFile(strings.TrimSuffix(dataPath(dir, 1), ".dat")+ext, b, 0o644)
			}
			s := mustOpen(t, cfg)
			for i, h := range hashes {
				if i < 5 {
					if _, err := readBlob(s, 1, h); !errors.Is(err, raisfs.ErrNotFound) {
						t.Fatalf("deleted blob %d: %v", i, err)
					}
				} else {
					mustRead(t, s, 1, h, bodies[i])
				}
			}
			s.Close()
			for _, ext := range []string{".dat.cpd", ".idx.cpx"} {
				if _, err := os.Stat(strings.TrimSuffix(dataPath(dir, 1), ".dat") + ext); !os.IsNotExist(err) {
					t.Fatalf("leftover %s not removed: %v", ext, err)
				}
			}
		})
	}
}

// Many writers, deleters and readers on one volume while it is compacted
// again and again. Every acknowledged put that was not deleted must read
// back intact, before and after a restart; no read may return wrong bytes.
func TestCompact_OnlineUnderLoad(t *testing.T) {
	cfg := testConfig(t, &faultFS{})
	cfg.VolumeSize = 1 << 30
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	live := map[raisfs.Hash][]byte{}
	deleted := map[raisfs.Hash]bool{}
	var seq atomic.Uint64
	var wg sync.WaitGroup
	const writers = 6
	perWriter := 60
	if testing.Short() {
		perWriter = 20
	}
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				body, h := payload(seq.Add(1), 500+(i*997)%20000)
				if _, err := s.Put(ctx, 1, h, bytes.NewReader(body), int64(len(body))); err != nil {
					t.Errorf("Put = %v", err)
					return
				}
				mu.Lock()
				live[h] = body
				mu.Unlock()
				if i%3 == w%3 {
					if err := s.Delete(ctx, 1, h); err != nil {
						t.Errorf("Delete = %v", err)
						return
					}
					mu.Lock()
					delete(live, h)
					deleted[h] = true
					mu.Unlock()
				}
			}
		})
	}
	var readers sync.WaitGroup
	var reads atomic.Int64
	for range 3 {
		readers.Go(func() {
			for ctx.Err() == nil {
				mu.Lock()
				var h raisfs.Hash
				var want []byte
				for k, v := range live {
					h, want = k, v
					break
				}
				mu.Unlock()
				if want == nil {
					continue
				}
				got, err := readBlob(s, 1, h)
				if err != nil {
					// Deleted between our look-up and the read.
					mu.Lock()
					_, still := live[h]
					mu.Unlock()
					if still && !errors.Is(err, raisfs.ErrNotFound) {
						t.Errorf("read %s = %v", h, err)
					}
					continue
				}
				if !bytes.Equal(got, want) {
					t.Errorf("read %s returned wrong bytes", h)
				}
				reads.Add(1)
			}
		})
	}
	compactions := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		if _, err := s.Compact(ctx, 1); err != nil {
			t.Fatalf("Compact = %v", err)
		}
		compactions++
	}
	cancel()
	readers.Wait()
	t.Logf("%d compactions, %d verified reads, %d live, %d deleted", compactions, reads.Load(), len(live), len(deleted))
	check := func(s *Store) {
		t.Helper()
		for h, body := range live {
			mustRead(t, s, 1, h, body)
		}
		for h := range deleted {
			if _, err := readBlob(s, 1, h); !errors.Is(err, raisfs.ErrNotFound) {
				t.Fatalf("deleted %s came back: %v", h, err)
			}
		}
	}
	check(s)
	s.Close()
	check(mustOpen(t, cfg))
}
