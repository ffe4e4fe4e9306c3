package chunkserver

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// FS is the small slice of a filesystem the store uses. Everything the store
// does to a disk goes through it, so tests can slow fsync down, inject
// ENOSPC or I/O errors, and record the order of durability operations
// (see faultfs_test.go). OSFS is the real implementation.
type FS interface {
	// OpenFile opens a file as os.OpenFile does.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Rename renames a file atomically (within one directory).
	Rename(oldpath, newpath string) error
	// Remove removes a file. A missing file is not an error.
	Remove(name string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(path string, perm os.FileMode) error
	// ReadDir lists a directory's entries.
	ReadDir(name string) ([]os.DirEntry, error)
	// SyncDir fsyncs a directory so that creations, renames and removals in
	// it survive a power cut.
	SyncDir(name string) error
	// Usage reports the capacity of the filesystem that holds path.
	Usage(path string) (DiskUsage, error)
	// Lock takes an exclusive, non-blocking advisory lock on the named
	// file, creating it if needed. It fails at once if another process
	// holds the lock. Close releases it.
	Lock(name string) (io.Closer, error)
}

// File is an open file. ReadAt may be called concurrently with WriteAt on
// other ranges and with Sync.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	Sync() error
	Truncate(size int64) error
	Size() (int64, error)
}

// DiskUsage is a filesystem's capacity in bytes.
type DiskUsage struct {
	Total int64  // size of the filesystem
	Free  int64  // bytes available to this (unprivileged) process
	FSID  uint64 // identifies the filesystem: dirs with the same FSID share Total and Free
}

// OSFS is the FS of the running operating system.
type OSFS struct{}

var _ FS = OSFS{}

type osFile struct{ *os.File }

// Sync flushes the file's data and the metadata needed to read it back
// (its size) with fdatasync(2): everything an append needs to survive a
// power cut, without also journaling timestamps as fsync(2) would.
func (f osFile) Sync() error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

func (f osFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// OpenFile implements FS.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Rename implements FS.
func (OSFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// Remove implements FS.
func (OSFS) Remove(name string) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// MkdirAll implements FS.
func (OSFS) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }

// ReadDir implements FS.
func (OSFS) ReadDir(name string) ([]os.DirEntry, error) { return os.ReadDir(name) }

// SyncDir implements FS.
func (OSFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Usage implements FS.
func (OSFS) Usage(path string) (DiskUsage, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return DiskUsage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := int64(st.Bsize)
	fsid := uint64(uint32(st.Fsid.X__val[0]))<<32 | uint64(uint32(st.Fsid.X__val[1]))
	return DiskUsage{Total: int64(st.Blocks) * bs, Free: int64(st.Bavail) * bs, FSID: fsid}, nil
}

type flock struct{ f *os.File }

func (l flock) Close() error {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	return l.f.Close()
}

// Lock implements FS with flock(2). The lock dies with the process, so a
// crashed server never leaves a stale lock behind.
func (OSFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: held by another process (is another chunk server using this dir?)", name)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return flock{f}, nil
}
