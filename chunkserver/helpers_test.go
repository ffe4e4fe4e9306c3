package chunkserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/raisfs/raisfs"
)

// testLogger sends logs to t.Log, so they show only for failing tests.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// testConfig is a small-volume config on one temp dir with a fault FS.
func testConfig(t testing.TB, fs *faultFS, dirs ...string) Config {
	if len(dirs) == 0 {
		dirs = []string{t.TempDir()}
	}
	cfg := DefaultConfig()
	cfg.Dirs = dirs
	cfg.FS = fs
	cfg.VolumeSize = 4 << 20
	cfg.MinFreeBytes = 1
	cfg.HighWater = 1
	cfg.UsageCacheTTL = -1 // tests change the fake free space and expect it to count at once
	cfg.ScrubEvery = -1    // scrub tests turn it on
	cfg.Logger = testLogger(t)
	return cfg
}

func mustOpen(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCreate(t testing.TB, s *Store, id raisfs.VolumeID) {
	t.Helper()
	if err := s.CreateVolume(context.Background(), id); err != nil {
		t.Fatalf("CreateVolume(%d) = %v", id, err)
	}
}

// payload returns n self-describing bytes for seed, and their hash.
func payload(seed uint64, n int) ([]byte, raisfs.Hash) {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, fmt.Sprintf("blob %d ", seed))
	return b, blake3.Sum256(b)
}

func mustPut(t testing.TB, s *Store, id raisfs.VolumeID, body []byte, h raisfs.Hash) {
	t.Helper()
	if _, err := s.Put(context.Background(), id, h, bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatalf("Put(%d, %s) = %v", id, h, err)
	}
}

func readBlob(s *Store, id raisfs.VolumeID, h raisfs.Hash) ([]byte, error) {
	b, err := s.Get(context.Background(), id, h)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	var buf bytes.Buffer
	if _, err := b.WriteRange(&buf, 0, b.Size); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func mustRead(t testing.TB, s *Store, id raisfs.VolumeID, h raisfs.Hash, want []byte) {
	t.Helper()
	got, err := readBlob(s, id, h)
	if err != nil {
		t.Fatalf("read %d/%s = %v", id, h, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d/%s: got %d bytes, want %d (content differs)", id, h, len(got), len(want))
	}
}

// testPoll waits for cond with a deadline, for eventual conditions.
func testPoll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return fi.Size()
}

func tmpFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatalf("read tmp dir: %v", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// failingReader returns n bytes of r, then err: a client that went away.
type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	p = p[:min(len(p), f.n)]
	k, err := f.r.Read(p)
	f.n -= k
	return k, err
}
