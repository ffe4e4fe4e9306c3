package chunkserver

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/raisfs/raisfs"
)

// recoveryFixture is a volume with a few needles, closed cleanly, and the
// bytes of its files.
type recoveryFixture struct {
	cfg    Config
	data   []byte
	index  []byte
	bodies [][]byte
	hashes []raisfs.Hash
	ends   []int64 // end offset of each needle in data
}

func newRecoveryFixture(t *testing.T, sizes []int) *recoveryFixture {
	t.Helper()
	cfg := testConfig(t, &faultFS{})
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	fx := &recoveryFixture{cfg: cfg}
	end := int64(superblockSize)
	for i, n := range sizes {
		body, h := payload(uint64(i+100), n)
		mustPut(t, s, 1, body, h)
		end += needleLen(int64(n))
		fx.bodies, fx.hashes, fx.ends = append(fx.bodies, body), append(fx.hashes, h), append(fx.ends, end)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var err error
	if fx.data, err = os.ReadFile(dataPath(cfg.Dirs[0], 1)); err != nil {
		t.Fatal(err)
	}
	if fx.index, err = os.ReadFile(indexPath(cfg.Dirs[0], 1)); err != nil {
		t.Fatal(err)
	}
	if int64(len(fx.data)) != end {
		t.Fatalf("data file is %d bytes, want %d", len(fx.data), end)
	}
	return fx
}

// reopen writes the given file contents (index nil: no index file) into a
// fresh dir and opens a store on it.
func (fx *recoveryFixture) reopen(t *testing.T, dir string, data, index []byte) *Store {
	t.Helper()
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dataPath(dir, 1), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if index != nil {
		if err := os.WriteFile(indexPath(dir, 1), index, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fx.cfg
	cfg.Dirs = []string{dir}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open after crash = %v", err)
	}
	return s
}

// check asserts that exactly the needles ending at or before cut survive,
// intact, and that the volume takes a new write.
func (fx *recoveryFixture) check(t *testing.T, s *Store, cut int64) {
	t.Helper()
	lastEnd := int64(superblockSize)
	for i, h := range fx.hashes {
		got, err := readBlob(s, 1, h)
		if fx.ends[i] <= cut {
			if err != nil || string(got) != string(fx.bodies[i]) {
				t.Fatalf("cut %d: needle %d (ends %d) lost or damaged: %v", cut, i, fx.ends[i], err)
			}
			lastEnd = fx.ends[i]
		} else if !errors.Is(err, raisfs.ErrNotFound) {
			t.Fatalf("cut %d: torn needle %d (ends %d) is visible: %v", cut, i, fx.ends[i], err)
		}
	}
	if st := s.Status().Volumes[0]; st.SizeBytes != lastEnd {
		t.Fatalf("cut %d: volume is %d bytes after recovery, want %d", cut, st.SizeBytes, lastEnd)
	}
	body, h := payload(999, 777)
	mustPut(t, s, 1, body, h)
	mustRead(t, s, 1, h, body)
}

func TestRecovery_TornDataTail(t *testing.T) {
	fx := newRecoveryFixture(t, []int{5000, 100, 0, 3000, blockSize + 500, 40})
	dir := filepath.Join(t.TempDir(), "crash")
	start := fx.ends[2] // cut inside the last three needles
	var cuts []int64
	step := int64(97) // a prime, so cuts land at every alignment
	if testing.Short() {
		step = 997
	}
	for c := start; c <= int64(len(fx.data)); c += step {
		cuts = append(cuts, c)
	}
	for _, e := range fx.ends {
		cuts = append(cuts, e-1, e, e+1)
	}
	n := 0
	for _, cut := range cuts {
		if cut < start || cut > int64(len(fx.data)) {
			continue
		}
		// With the full index (it may name needles the cut removed), with
		// no index, and with a torn index.
		for _, idx := range [][]byte{fx.index, nil, fx.index[:superblockSize+2*indexEntrySize+13]} {
			s := fx.reopen(t, dir, fx.data[:cut], idx)
			fx.check(t, s, cut)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// A second start after recovery sees the same thing.
			cfg := fx.cfg
			cfg.Dirs = []string{dir}
			s2 := mustOpen(t, cfg)
			for i, h := range fx.hashes {
				if fx.ends[i] <= cut {
					mustRead(t, s2, 1, h, fx.bodies[i])
				}
			}
			s2.Close()
			n++
		}
	}
	t.Logf("recovered from %d crash images", n)
}

func TestRecovery_TornIndexTail(t *testing.T) {
	fx := newRecoveryFixture(t, []int{5000, 100, 0, 3000, blockSize + 500, 40})
	dir := filepath.Join(t.TempDir(), "crash")
	for cut := 0; cut <= len(fx.index); cut += 5 {
		s := fx.reopen(t, dir, fx.data, fx.index[:cut])
		fx.check(t, s, int64(len(fx.data)))
		s.Close()
	}
}

func TestRecovery_BitFlips(t *testing.T) {
	fx := newRecoveryFixture(t, []int{5000, 100, 3000, blockSize + 500, 40, 9000})
	dir := filepath.Join(t.TempDir(), "crash")
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		data := append([]byte(nil), fx.data...)
		off := superblockSize + r.Int64N(int64(len(data))-superblockSize)
		data[off] ^= 1 << r.IntN(8)
		victim := 0
		for fx.ends[victim] <= off {
			victim++
		}
		// No index: recovery must scan every needle and skip the bad one.
		for _, idx := range [][]byte{nil, fx.index} {
			s := fx.reopen(t, dir, data, idx)
			for i, h := range fx.hashes {
				got, err := readBlob(s, 1, h)
				if i == victim {
					if err == nil && string(got) != string(fx.bodies[i]) {
						t.Fatalf("flip at %d: damaged needle %d served wrong bytes", off, i)
					}
					if err != nil && !errors.Is(err, raisfs.ErrCorrupt) && !errors.Is(err, raisfs.ErrNotFound) {
						t.Fatalf("flip at %d: needle %d: %v", off, i, err)
					}
					continue
				}
				if err != nil || string(got) != string(fx.bodies[i]) {
					t.Fatalf("flip at %d (needle %d, index %v): needle %d lost: %v", off, victim, idx != nil, i, err)
				}
			}
			s.Close()
		}
	}
}
