package chunkserver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/raisfs/raisfs"
)

func TestStore_PutGetDeleteReopen(t *testing.T) {
	fs := &faultFS{}
	cfg := testConfig(t, fs)
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	type blob struct {
		body []byte
		h    raisfs.Hash
	}
	var blobs []blob
	for i, n := range []int{0, 1, 4096, blockSize, blockSize + 1, 300 << 10, 2<<20 + 5} {
		body, h := payload(uint64(i), n)
		blobs = append(blobs, blob{body, h})
		mustPut(t, s, 1, body, h)
	}
	for _, b := range blobs {
		mustRead(t, s, 1, b.h, b.body)
	}
	ctx := context.Background()
	if err := s.Delete(ctx, 1, blobs[2].h); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if err := s.Delete(ctx, 1, blobs[2].h); err != nil {
		t.Fatalf("second Delete = %v, want nil (idempotent)", err)
	}
	if err := s.Delete(ctx, 1, raisfs.Hash{1}); !errors.Is(err, raisfs.ErrNotFound) {
		t.Fatalf("Delete(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := readBlob(s, 1, blobs[2].h); !errors.Is(err, raisfs.ErrNotFound) {
		t.Fatalf("read deleted = %v, want ErrNotFound", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}

	s2 := mustOpen(t, cfg)
	for i, b := range blobs {
		if i == 2 {
			if _, err := readBlob(s2, 1, b.h); !errors.Is(err, raisfs.ErrNotFound) {
				t.Fatalf("deleted blob after reopen: %v", err)
			}
			continue
		}
		mustRead(t, s2, 1, b.h, b.body)
	}
	// Re-putting a deleted blob brings it back.
	mustPut(t, s2, 1, blobs[2].body, blobs[2].h)
	mustRead(t, s2, 1, blobs[2].h, blobs[2].body)
}

func TestStore_Ranges(t *testing.T) {
	s := mustOpen(t, testConfig(t, &faultFS{}))
	mustCreate(t, s, 1)
	for _, n := range []int{1000, 3*blockSize + 123} {
		body, h := payload(uint64(n), n)
		mustPut(t, s, 1, body, h)
		b, err := s.Get(context.Background(), 1, h)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range [][2]int64{{0, 1}, {0, int64(n)}, {5, 100}, {blockSize - 3, 10}, {int64(n) - 1, 1}, {int64(n), 0}} {
			if r[0]+r[1] > int64(n) {
				continue
			}
			var buf bytes.Buffer
			if _, err := b.WriteRange(&buf, r[0], r[1]); err != nil {
				t.Fatalf("WriteRange(%v) = %v", r, err)
			}
			if !bytes.Equal(buf.Bytes(), body[r[0]:r[0]+r[1]]) {
				t.Fatalf("size %d range %v: wrong bytes", n, r)
			}
		}
		if _, err := b.WriteRange(io.Discard, int64(n)-1, 2); !errors.Is(err, raisfs.ErrInvalidArgument) {
			t.Fatalf("range past end: %v", err)
		}
		b.Close()
	}
}

func TestStore_BadPutsChangeNothing(t *testing.T) {
	fs := &faultFS{}
	cfg := testConfig(t, fs)
	cfg.MaxBlobSize = 3 << 20
	cfg.SpoolThreshold = 64 << 10
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	dir := cfg.Dirs[0]
	dat := dataPath(dir, 1)
	before := fileSize(t, dat)
	ctx := context.Background()
	big, bigH := payload(1, 3<<20+1)
	small, smallH := payload(2, 5000)
	mid, midH := payload(3, 200<<10) // spools to a temp file
	errClient := errors.New("client went away")
	for _, tc := range []struct {
		name string
		h    raisfs.Hash
		r    io.Reader
		size int64
		want error
	}{
		{"oversize declared", bigH, bytes.NewReader(big), int64(len(big)), raisfs.ErrTooLarge},
		{"oversize undeclared", bigH, bytes.NewReader(big), -1, raisfs.ErrTooLarge},
		{"wrong hash", bigH, bytes.NewReader(small), int64(len(small)), raisfs.ErrHashMismatch},
		{"short body", smallH, bytes.NewReader(small[:100]), int64(len(small)), raisfs.ErrSizeMismatch},
		{"long body", smallH, bytes.NewReader(append(slices.Clone(small), 1)), int64(len(small)), raisfs.ErrSizeMismatch},
		{"client disconnect in memory", smallH, &failingReader{bytes.NewReader(small), 1000, errClient}, int64(len(small)), errClient},
		{"client disconnect spooled", midH, &failingReader{bytes.NewReader(mid), 150 << 10, errClient}, int64(len(mid)), errClient},
		{"unknown volume", smallH, bytes.NewReader(small), int64(len(small)), raisfs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vol := raisfs.VolumeID(1)
			if tc.name == "unknown volume" {
				vol = 99
			}
			_, err := s.Put(ctx, vol, tc.h, tc.r, tc.size)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Put = %v, want %v", err, tc.want)
			}
			if got := fileSize(t, dat); got != before {
				t.Fatalf("data file grew from %d to %d", before, got)
			}
			if tmp := tmpFiles(t, dir); len(tmp) != 0 {
				t.Fatalf("spool files left behind: %v", tmp)
			}
			if _, err := readBlob(s, 1, tc.h); !errors.Is(err, raisfs.ErrNotFound) {
				t.Fatalf("blob visible after failed put: %v", err)
			}
		})
	}
	// The volume still works.
	mustPut(t, s, 1, mid, midH)
	mustRead(t, s, 1, midH, mid)
}

func TestStore_ConcurrentPutsOfOneHashStoreOnce(t *testing.T) {
	s := mustOpen(t, testConfig(t, &faultFS{}))
	mustCreate(t, s, 1)
	body, h := payload(7, 50000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for range 16 {
		wg.Go(func() {
			c, err := s.Put(context.Background(), 1, h, bytes.NewReader(body), int64(len(body)))
			if err != nil {
				t.Errorf("Put = %v", err)
			}
			if c {
				mu.Lock()
				created++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if created != 1 {
		t.Errorf("%d puts reported created, want 1", created)
	}
	st := s.Status().Volumes[0]
	if want := superblockSize + needleLen(int64(len(body))); st.SizeBytes != want {
		t.Errorf("volume is %d bytes, want %d (one needle)", st.SizeBytes, want)
	}
}

func TestStore_HighWaterMarkRefusesPuts(t *testing.T) {
	fs := &faultFS{}
	cfg := testConfig(t, fs)
	cfg.HighWater = 0.9
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	fs.setUsage(func(string) DiskUsage { return DiskUsage{Total: 1000 << 20, Free: 101 << 20} })
	body, h := payload(1, 4096)
	mustPut(t, s, 1, body, h)
	big, bigH := payload(2, 2<<20)
	if _, err := s.Put(context.Background(), 1, bigH, bytes.NewReader(big), int64(len(big))); !errors.Is(err, raisfs.ErrNoSpace) {
		t.Fatalf("Put past high water = %v, want ErrNoSpace", err)
	}
	if err := s.CreateVolume(context.Background(), 2); err != nil {
		t.Fatalf("CreateVolume below high water = %v", err)
	}
	fs.setUsage(func(string) DiskUsage { return DiskUsage{Total: 1000 << 20, Free: 50 << 20} })
	if _, err := s.Put(context.Background(), 1, bigH, bytes.NewReader(big), -1); !errors.Is(err, raisfs.ErrNoSpace) {
		t.Fatalf("Put (unknown size) past high water = %v, want ErrNoSpace", err)
	}
	if err := s.CreateVolume(context.Background(), 3); !errors.Is(err, raisfs.ErrNoSpace) {
		t.Fatalf("CreateVolume past high water = %v, want ErrNoSpace", err)
	}
	// Deletes still work, so space can be freed.
	if err := s.Delete(context.Background(), 1, h); err != nil {
		t.Fatalf("Delete past high water = %v", err)
	}
	if st := s.Status(); st.Dirs[0].Writable {
		t.Errorf("status says dir writable past high water: %+v", st.Dirs[0])
	}
}

func TestStore_ENOSPCMidWriteLeavesVolumeConsistent(t *testing.T) {
	fs := &faultFS{}
	cfg := testConfig(t, fs)
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	first, firstH := payload(1, 10000)
	mustPut(t, s, 1, first, firstH)
	dat := dataPath(cfg.Dirs[0], 1)
	before := fileSize(t, dat)

	fs.setWriteErr(enospcAfter(3000))
	body, h := payload(2, 20000)
	_, err := s.Put(context.Background(), 1, h, bytes.NewReader(body), int64(len(body)))
	if !errors.Is(err, raisfs.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put on full disk = %v, want ErrNoSpace wrapping ENOSPC", err)
	}
	if got := fileSize(t, dat); got != before {
		t.Fatalf("data file is %d bytes after ENOSPC, want %d (partial write reclaimed)", got, before)
	}
	fs.setWriteErr(nil)
	mustPut(t, s, 1, body, h)
	s.Close()
	s2 := mustOpen(t, cfg)
	mustRead(t, s2, 1, firstH, first)
	mustRead(t, s2, 1, h, body)
}

func TestStore_FsyncFailureMakesVolumeReadOnly(t *testing.T) {
	fs := &faultFS{}
	cfg := testConfig(t, fs)
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	good, goodH := payload(1, 1000)
	mustPut(t, s, 1, good, goodH)
	fs.setSyncErr(func(name string) error {
		if strings.HasSuffix(name, ".dat") {
			return &os.PathError{Op: "fsync", Path: name, Err: syscall.EIO}
		}
		return nil
	})
	body, h := payload(2, 1000)
	if _, err := s.Put(context.Background(), 1, h, bytes.NewReader(body), int64(len(body))); !errors.Is(err, raisfs.ErrUnavailable) {
		t.Fatalf("Put with failing fsync = %v, want ErrUnavailable", err)
	}
	if _, err := readBlob(s, 1, h); !errors.Is(err, raisfs.ErrNotFound) {
		t.Fatalf("unsynced blob visible: %v", err)
	}
	fs.setSyncErr(nil)
	if _, err := s.Put(context.Background(), 1, h, bytes.NewReader(body), int64(len(body))); !errors.Is(err, raisfs.ErrUnavailable) {
		t.Fatalf("Put after fsync failure = %v, want ErrUnavailable (volume read-only)", err)
	}
	mustRead(t, s, 1, goodH, good)
	if st := s.Status().Volumes[0]; st.Failed == "" {
		t.Errorf("status does not report the failed volume: %+v", st)
	}
}

func TestStore_SealAtSizeAndByRequest(t *testing.T) {
	cfg := testConfig(t, &faultFS{})
	cfg.VolumeSize = 64 << 10
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	mustCreate(t, s, 2)
	ctx := context.Background()
	var stored []raisfs.Hash
	var sealedErr error
	for i := range 100 {
		body, h := payload(uint64(i), 10000)
		if _, err := s.Put(ctx, 1, h, bytes.NewReader(body), int64(len(body))); err != nil {
			sealedErr = err
			break
		}
		stored = append(stored, h)
	}
	if !errors.Is(sealedErr, raisfs.ErrSealed) {
		t.Fatalf("Put into full volume = %v, want ErrSealed", sealedErr)
	}
	if err := s.Seal(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Seal(ctx, 2); err != nil {
		t.Fatalf("second Seal = %v", err)
	}
	body, h := payload(1000, 10)
	if _, err := s.Put(ctx, 2, h, bytes.NewReader(body), 10); !errors.Is(err, raisfs.ErrSealed) {
		t.Fatalf("Put into sealed volume = %v, want ErrSealed", err)
	}
	// Deletes still work on sealed volumes; the seal survives a restart.
	if err := s.Delete(ctx, 1, stored[0]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := mustOpen(t, cfg)
	for _, id := range []raisfs.VolumeID{1, 2} {
		if _, err := s2.Put(ctx, id, h, bytes.NewReader(body), 10); !errors.Is(err, raisfs.ErrSealed) {
			t.Fatalf("Put into volume %d after restart = %v, want ErrSealed", id, err)
		}
	}
	if _, err := readBlob(s2, 1, stored[0]); !errors.Is(err, raisfs.ErrNotFound) {
		t.Fatalf("deleted blob of sealed volume: %v", err)
	}
	for _, h := range stored[1:] {
		if _, err := readBlob(s2, 1, h); err != nil {
			t.Fatalf("blob of sealed volume: %v", err)
		}
	}
}

func TestStore_MultipleDirsAndLocking(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	fs := &faultFS{}
	fs.setUsage(func(p string) DiskUsage {
		if p == d2 {
			return DiskUsage{Total: 1 << 40, Free: 1 << 39}
		}
		return DiskUsage{Total: 1 << 40, Free: 1 << 30}
	})
	cfg := testConfig(t, fs, d1, d2)
	s := mustOpen(t, cfg)
	mustCreate(t, s, 5)
	if _, err := os.Stat(dataPath(d2, 5)); err != nil {
		t.Fatalf("volume not created on the emptier dir: %v", err)
	}
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Open of locked dirs = %v, want a lock error", err)
	}
	body, h := payload(1, 100)
	mustPut(t, s, 5, body, h)
	s.Close()
	s2 := mustOpen(t, cfg)
	mustRead(t, s2, 5, h, body)
	s2.Close()
	// The same volume in two dirs is refused, not guessed at.
	raw, _ := os.ReadFile(dataPath(d2, 5))
	os.WriteFile(dataPath(d1, 5), raw, 0o644)
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "both") {
		t.Fatalf("Open with duplicate volume = %v", err)
	}
}

func TestStore_BrokenVolumeDoesNotStopTheRest(t *testing.T) {
	cfg := testConfig(t, &faultFS{})
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	mustCreate(t, s, 2)
	body, h := payload(1, 100)
	mustPut(t, s, 2, body, h)
	s.Close()
	os.WriteFile(dataPath(cfg.Dirs[0], 1), []byte("not a volume"), 0o644)
	s2 := mustOpen(t, cfg)
	mustRead(t, s2, 2, h, body)
	if _, err := readBlob(s2, 1, h); !errors.Is(err, raisfs.ErrUnavailable) {
		t.Fatalf("read from broken volume = %v, want ErrUnavailable", err)
	}
	if st := s2.Status(); st.BrokenVolumes["1"] == "" {
		t.Fatalf("status does not list broken volume: %+v", st)
	}
}

func TestStore_StreamAndImport(t *testing.T) {
	src := mustOpen(t, testConfig(t, &faultFS{}))
	dst := mustOpen(t, testConfig(t, &faultFS{}))
	mustCreate(t, src, 3)
	ctx := context.Background()
	var hs []raisfs.Hash
	var bodies [][]byte
	for i := range 20 {
		body, h := payload(uint64(i), 1000*i)
		mustPut(t, src, 3, body, h)
		hs, bodies = append(hs, h), append(bodies, body)
	}
	src.Delete(ctx, 3, hs[0])
	var buf bytes.Buffer
	if _, err := src.StreamVolume(ctx, 3, &buf, nil); !errors.Is(err, raisfs.ErrInvalidArgument) {
		t.Fatalf("stream of open volume = %v, want ErrInvalidArgument", err)
	}
	if err := src.Seal(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := src.StreamVolume(ctx, 3, &buf, nil); err != nil {
		t.Fatal(err)
	}
	stream := buf.Bytes()

	// Torn, corrupt and mislabelled streams are refused and leave nothing.
	bad := slices.Clone(stream)
	bad[len(bad)/2] ^= 0x40
	for name, tc := range map[string]struct {
		id raisfs.VolumeID
		b  []byte
	}{
		"torn":    {3, stream[:len(stream)-100]},
		"corrupt": {3, bad},
		"other":   {4, stream},
		"empty":   {3, nil},
	} {
		if err := dst.ImportVolume(ctx, tc.id, bytes.NewReader(tc.b)); err == nil {
			t.Fatalf("%s stream imported", name)
		}
		if len(dst.Status().Volumes) != 0 || len(tmpFiles(t, dst.cfg.Dirs[0])) != 0 {
			t.Fatalf("%s stream left something behind", name)
		}
	}
	if err := dst.ImportVolume(ctx, 3, bytes.NewReader(stream)); err != nil {
		t.Fatalf("ImportVolume = %v", err)
	}
	if err := dst.ImportVolume(ctx, 3, bytes.NewReader(stream)); !errors.Is(err, raisfs.ErrExists) {
		t.Fatalf("second ImportVolume = %v, want ErrExists", err)
	}
	for i, h := range hs {
		if i == 0 {
			if _, err := readBlob(dst, 3, h); !errors.Is(err, raisfs.ErrNotFound) {
				t.Fatalf("deleted blob came back in the copy: %v", err)
			}
			continue
		}
		mustRead(t, dst, 3, h, bodies[i])
	}
	if st := dst.Status().Volumes[0]; !st.Sealed {
		t.Errorf("imported volume not sealed: %+v", st)
	}
}

func TestStore_ListPages(t *testing.T) {
	s := mustOpen(t, testConfig(t, &faultFS{}))
	mustCreate(t, s, 1)
	want := map[raisfs.Hash]bool{}
	for i := range 57 {
		body, h := payload(uint64(i), 10)
		mustPut(t, s, 1, body, h)
		want[h] = true
	}
	var after raisfs.Hash
	seen := 0
	for {
		page, more, err := s.List(context.Background(), 1, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range page {
			if !want[n.Hash] || bytes.Compare(n.Hash[:], after[:]) <= 0 || n.State != "live" {
				t.Fatalf("unexpected or out-of-order entry %+v", n)
			}
			after = n.Hash
			seen++
		}
		if !more {
			break
		}
	}
	if seen != len(want) {
		t.Fatalf("listed %d needles, want %d", seen, len(want))
	}
}

func TestStore_ReadDetectsCorruption(t *testing.T) {
	cfg := testConfig(t, &faultFS{})
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	small, smallH := payload(1, 3000)
	large, largeH := payload(2, 5*blockSize)
	mustPut(t, s, 1, small, smallH)
	mustPut(t, s, 1, large, largeH)
	f, err := os.OpenFile(dataPath(cfg.Dirs[0], 1), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(off int64) {
		var b [1]byte
		f.ReadAt(b[:], off)
		b[0] ^= 0x08
		f.WriteAt(b[:], off)
	}
	flip(superblockSize + headerSize + 100)
	largeOff := superblockSize + needleLen(3000)
	flip(largeOff + headerSize + 3*blockSize + 7)
	f.Close()

	if _, err := readBlob(s, 1, smallH); !errors.Is(err, raisfs.ErrCorrupt) {
		t.Fatalf("read of rotten small blob = %v, want ErrCorrupt", err)
	}
	b, err := s.Get(context.Background(), 1, largeH)
	if err != nil {
		t.Fatalf("Get large = %v", err)
	}
	var buf bytes.Buffer
	n, err := b.WriteRange(&buf, 0, b.Size)
	b.Close()
	if !errors.Is(err, raisfs.ErrCorrupt) {
		t.Fatalf("read of rotten large blob = %v, want ErrCorrupt", err)
	}
	if n != 3*blockSize || !bytes.Equal(buf.Bytes(), large[:n]) {
		t.Fatalf("served %d bytes before the bad block; want exactly the %d good ones", n, 3*blockSize)
	}
	// Now marked: never served again, even a range that avoids the bad block.
	if _, err := s.Get(context.Background(), 1, largeH); !errors.Is(err, raisfs.ErrCorrupt) {
		t.Fatalf("Get after corruption found = %v, want ErrCorrupt", err)
	}
	// A fresh put of the same content repairs it.
	mustPut(t, s, 1, large, largeH)
	mustRead(t, s, 1, largeH, large)
	if got := filepath.Base(dataPath(cfg.Dirs[0], 1)); got != "vol-1.dat" {
		t.Fatalf("data file name = %s", got)
	}
}

// Between free-space readings, bytes written are counted against the
// reading, so the high-water mark holds without a statfs per put.
func TestStore_HighWaterHoldsBetweenUsageReadings(t *testing.T) {
	fs := &faultFS{}
	cfg := testConfig(t, fs)
	cfg.UsageCacheTTL = time.Hour
	cfg.HighWater = 1
	cfg.MinFreeBytes = 1 << 20
	fs.setUsage(func(string) DiskUsage { return DiskUsage{Total: 1 << 30, Free: 1<<20 + 100<<10} })
	s := mustOpen(t, cfg)
	mustCreate(t, s, 1)
	a, ah := payload(1, 60<<10)
	mustPut(t, s, 1, a, ah)
	b, bh := payload(2, 60<<10)
	if _, err := s.Put(context.Background(), 1, bh, bytes.NewReader(b), int64(len(b))); !errors.Is(err, raisfs.ErrNoSpace) {
		t.Fatalf("second put = %v, want ErrNoSpace (the first put's bytes count)", err)
	}
}

// PutMany of new blobs writes them in one go: one fsync for all of them,
// each readable, and all there after a reopen.
func TestStore_PutManySharesOneFsync(t *testing.T) {
	cfg := testConfig(t, &faultFS{})
	s := mustOpen(t, cfg)
	ctx := context.Background()
	mustCreate(t, s, 1)
	var blobs []BlobBody
	for i := range 8 {
		b, h := payload(uint64(100+i), 1000*i)
		blobs = append(blobs, BlobBody{Hash: h, Body: b})
	}
	before := testutil.ToFloat64(s.metrics.fsyncs)
	created, errs := s.PutMany(ctx, 1, blobs)
	for i := range blobs {
		if errs[i] != nil || !created[i] {
			t.Fatalf("blob %d: created %v, %v", i, created[i], errs[i])
		}
	}
	if n := testutil.ToFloat64(s.metrics.fsyncs) - before; n != 1 {
		t.Fatalf("%v fsyncs for one batch of new blobs, want 1", n)
	}
	check := func(s *Store) {
		t.Helper()
		for i, bl := range blobs {
			if got, err := readBlob(s, 1, bl.Hash); err != nil || !bytes.Equal(got, bl.Body) {
				t.Fatalf("blob %d reads back wrong (%v)", i, err)
			}
		}
	}
	check(s)
	// Again: every blob is held now (created false, nothing written).
	created, errs = s.PutMany(ctx, 1, blobs)
	for i := range blobs {
		if errs[i] != nil || created[i] {
			t.Fatalf("second put of blob %d: created %v, %v", i, created[i], errs[i])
		}
	}
	s.Close()
	check(mustOpen(t, cfg))
}
