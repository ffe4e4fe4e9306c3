package chunkserver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeebo/blake3"

	"github.com/raisfs/raisfs"
)

// The chunk server's performance targets, measured over loopback HTTP
// against real files, with the disk's own fsync'd-append rate as the
// reference in the same run:
//
//	go test ./chunkserver -run '^$' -bench BenchmarkChunkServer -benchtime 3s
//
// Figures and their meaning are in ARCHITECTURE.md ("Performance").

func BenchmarkChunkServer(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("RawFsyncAppend/%dKiB", size>>10), func(b *testing.B) { benchRawAppend(b, size) })
	}
	for _, size := range []int{4 << 10, 64 << 10} {
		for _, conc := range []int{1, 16} {
			b.Run(fmt.Sprintf("Put/%dKiB/c%d", size>>10, conc), func(b *testing.B) { benchPut(b, size, conc, 0) })
		}
	}
	for _, size := range []int{4 << 10, 64 << 10} {
		for _, conc := range []int{1, 16} {
			b.Run(fmt.Sprintf("Get/%dKiB/c%d", size>>10, conc), func(b *testing.B) { benchGet(b, size, conc) })
		}
	}
	b.Run("PutSlowFsync5ms/4KiB/c16", func(b *testing.B) { benchPut(b, 4<<10, 16, 5*time.Millisecond) })
}

// benchRawAppend is the reference: one writer appending size-byte records
// to a file with an fsync after each, as a naive store would.
func benchRawAppend(b *testing.B, size int) {
	f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

type benchServer struct {
	url    string
	client *http.Client
	store  *Store
	fs     *faultFS
}

func newBenchServer(b *testing.B, syncDelay time.Duration) *benchServer {
	fs := &faultFS{syncDelay: syncDelay}
	cfg := DefaultConfig()
	cfg.Dirs = []string{b.TempDir()}
	cfg.FS = fs
	cfg.VolumeSize = 8 << 30
	cfg.MinFreeBytes = 1
	cfg.HighWater = 1
	cfg.Logger = testLogger(b)
	s, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(NewServer("bench", s, nil, cfg.Logger))
	b.Cleanup(func() { hs.Close(); s.Close() })
	// A write buffer that holds a whole small request sends it in one syscall.
	tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64, WriteBufferSize: 128 << 10}
	bs := &benchServer{url: hs.URL, client: &http.Client{Transport: tr}, store: s, fs: fs}
	if err := s.CreateVolume(b.Context(), 1); err != nil {
		b.Fatal(err)
	}
	return bs
}

func (bs *benchServer) put(body []byte, h raisfs.Hash) error {
	req, err := http.NewRequest("PUT", bs.url+blobPath(1, h), bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := bs.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		return fmt.Errorf("put: status %d", resp.StatusCode)
	}
	return nil
}

// uniqueBody returns a size-byte body distinct for each n, and its hash.
func uniqueBody(buf []byte, n uint64) raisfs.Hash {
	binary.LittleEndian.PutUint64(buf, n)
	return blake3.Sum256(buf)
}

// runConcurrent runs b.N calls of op spread over conc goroutines.
func runConcurrent(b *testing.B, conc int, op func(worker int, i uint64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for w := range conc {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if err := op(w, uint64(i)); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if e := failed.Load(); e != nil {
		b.Fatal(*e)
	}
}

func benchPut(b *testing.B, size, conc int, syncDelay time.Duration) {
	bs := newBenchServer(b, syncDelay)
	bufs := make([][]byte, conc)
	for i := range bufs {
		bufs[i], _ = payload(uint64(i), size)
	}
	var seq atomic.Uint64
	seq.Store(uint64(b.N) << 20) // distinct from other runs' bodies in this process
	syncs0 := bs.fs.syncCount()
	b.SetBytes(int64(size))
	b.ResetTimer()
	runConcurrent(b, conc, func(w int, i uint64) error {
		buf := bufs[w]
		h := uniqueBody(buf, seq.Add(1))
		return bs.put(buf, h)
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
	b.ReportMetric(float64(bs.fs.syncCount()-syncs0)/float64(b.N), "fsyncs/put")
}

func benchGet(b *testing.B, size, conc int) {
	bs := newBenchServer(b, 0)
	const blobs = 512
	urls := make([]string, blobs)
	buf, _ := payload(1, size)
	for i := range blobs {
		h := uniqueBody(buf, uint64(i))
		if err := bs.put(buf, h); err != nil {
			b.Fatal(err)
		}
		urls[i] = bs.url + blobPath(1, h)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	runConcurrent(b, conc, func(w int, i uint64) error {
		resp, err := bs.client.Get(urls[i%blobs])
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || n != int64(size) {
			return fmt.Errorf("get: status %d, %d bytes, %v", resp.StatusCode, n, err)
		}
		return nil
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
}
