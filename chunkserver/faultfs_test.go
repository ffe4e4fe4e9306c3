package chunkserver

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// faultFS wraps the real filesystem (tests still write real files) and
// lets a test slow fsync down, fail writes or syncs, fake the free space,
// and record the order of durability operations.
type faultFS struct {
	OSFS
	mu sync.Mutex
	// syncDelay is added to every file fsync.
	syncDelay time.Duration
	// writeErr, if set, is called before every WriteAt; a non-nil result
	// fails the write after writing the first `partial` bytes.
	writeErr func(name string, off int64, n int) (partial int, err error)
	// syncErr, if set, is called before every file fsync.
	syncErr func(name string) error
	// usage, if set, replaces the real free-space figures.
	usage func(path string) DiskUsage
	// trace records durability-relevant operations when non-nil.
	trace *[]string
	syncs int
}

func (fs *faultFS) record(format string, args ...any) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.trace != nil {
		*fs.trace = append(*fs.trace, fmt.Sprintf(format, args...))
	}
}

func (fs *faultFS) startTrace() *[]string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	t := []string{}
	fs.trace = &t
	return fs.trace
}

func (fs *faultFS) stopTrace() []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	t := *fs.trace
	fs.trace = nil
	return t
}

func (fs *faultFS) syncCount() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.syncs
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if flag&os.O_CREATE != 0 {
		fs.record("create %s", filepath.Base(name))
	}
	return &faultFile{File: f, fs: fs, name: name}, nil
}

func (fs *faultFS) Rename(oldpath, newpath string) error {
	fs.record("rename %s %s", filepath.Base(oldpath), filepath.Base(newpath))
	return fs.OSFS.Rename(oldpath, newpath)
}

func (fs *faultFS) SyncDir(name string) error {
	fs.record("syncdir")
	return fs.OSFS.SyncDir(name)
}

func (fs *faultFS) Usage(path string) (DiskUsage, error) {
	fs.mu.Lock()
	u := fs.usage
	fs.mu.Unlock()
	if u != nil {
		return u(path), nil
	}
	return fs.OSFS.Usage(path)
}

func (fs *faultFS) setUsage(u func(string) DiskUsage) {
	fs.mu.Lock()
	fs.usage = u
	fs.mu.Unlock()
}

func (fs *faultFS) setWriteErr(f func(name string, off int64, n int) (int, error)) {
	fs.mu.Lock()
	fs.writeErr = f
	fs.mu.Unlock()
}

func (fs *faultFS) setSyncErr(f func(name string) error) {
	fs.mu.Lock()
	fs.syncErr = f
	fs.mu.Unlock()
}

type faultFile struct {
	File
	fs   *faultFS
	name string
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	we := f.fs.writeErr
	f.fs.mu.Unlock()
	if we != nil {
		if partial, err := we(f.name, off, len(p)); err != nil {
			n, _ := f.File.WriteAt(p[:partial], off)
			return n, err
		}
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Sync() error {
	f.fs.mu.Lock()
	d, se := f.fs.syncDelay, f.fs.syncErr
	f.fs.syncs++
	f.fs.mu.Unlock()
	f.fs.record("sync %s", filepath.Base(f.name))
	if se != nil {
		if err := se(f.name); err != nil {
			return err
		}
	}
	if d > 0 {
		time.Sleep(d) // simulated disk latency, not a test wait
	}
	return f.File.Sync()
}

// enospcAfter returns a writeErr hook that fails data-file writes with
// ENOSPC once more than budget bytes have been written to them.
func enospcAfter(budget int64) func(string, int64, int) (int, error) {
	var mu sync.Mutex
	return func(name string, off int64, n int) (int, error) {
		if !strings.HasSuffix(name, ".dat") {
			return 0, nil
		}
		mu.Lock()
		defer mu.Unlock()
		if int64(n) > budget {
			p := int(max(budget, 0))
			budget = 0
			return p, &os.PathError{Op: "write", Path: name, Err: syscall.ENOSPC}
		}
		budget -= int64(n)
		return 0, nil
	}
}

var _ io.Closer = (*faultFile)(nil)
