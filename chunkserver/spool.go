package chunkserver

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/zeebo/blake3"

	"github.com/raisfs/raisfs"
)

// spooled is a blob body that has been received completely, hashed and
// laid out as needle bytes, but not yet appended to a volume. Receiving the
// whole body before touching the volume is what makes a torn upload leave
// nothing behind: a client that disconnects mid-body costs a buffer or a
// temp file, never a half-written needle.
type spooled struct {
	hash raisfs.Hash
	size int64
	n    int64 // needle length

	mem    []byte // whole needle, for bodies up to the spool threshold
	pooled bool   // mem came from getBuf: close gives it back

	fs   FS
	path string // temp file holding the whole needle, for larger bodies
	file File
}

func (s *spooled) close() {
	if s.file != nil {
		s.file.Close()
		s.fs.Remove(s.path)
		s.file = nil
	}
	if s.pooled {
		putBuf(s.mem)
		s.pooled = false
	}
	s.mem = nil
}

// writeAt copies the needle bytes into f at off.
func (s *spooled) writeAt(f File, off int64) error {
	if s.file == nil {
		_, err := f.WriteAt(s.mem, off)
		return err
	}
	buf := make([]byte, 1<<20)
	for pos := int64(0); pos < s.n; {
		k := min(int64(len(buf)), s.n-pos)
		if _, err := s.file.ReadAt(buf[:k], pos); err != nil {
			return fmt.Errorf("read spool: %w", err)
		}
		if _, err := f.WriteAt(buf[:k], off+pos); err != nil {
			return err
		}
		pos += k
	}
	return nil
}

var blockPool = sync.Pool{New: func() any { b := make([]byte, blockSize); return &b }}

// spoolSmall is the fast path for a body of known size that fits in
// memory: it is read straight into its place in the needle buffer.
func (s *spooled) spoolSmall(r io.Reader, size int64) error {
	s.mem, s.pooled = getBuf(int(needleLen(size))), true
	clear(s.mem[headerSize+size:]) // footer and padding: a reused buffer holds old bytes
	body := s.mem[headerSize : headerSize+size]
	n, err := io.ReadFull(r, body)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("body is %d bytes, declared %d: %w", n, size, raisfs.ErrSizeMismatch)
		}
		return fmt.Errorf("read body after %d bytes: %w", n, err)
	}
	var extra [1]byte
	if k, _ := io.ReadFull(r, extra[:]); k > 0 {
		return fmt.Errorf("body longer than declared %d bytes: %w", size, raisfs.ErrSizeMismatch)
	}
	if got := raisfs.Hash(blake3.Sum256(body)); got != s.hash {
		return fmt.Errorf("body hashes to %s, not %s: %w", got, s.hash, raisfs.ErrHashMismatch)
	}
	var crcs [smallMaxBlocks]uint32
	cs := crcs[:0]
	for off := int64(0); off < size; off += blockSize {
		cs = append(cs, crc(body[off:min(off+blockSize, size)]))
	}
	putHeader(s.mem, needleHeader{kind: kindBlob, size: size, hash: s.hash})
	putFooter(s.mem[headerSize+size:], cs)
	s.size = size
	s.n = int64(len(s.mem))
	return nil
}

// smallMaxBlocks sizes the on-stack CRC table of spoolSmall; larger
// tables spill to the heap through append.
const smallMaxBlocks = 32

type spoolConfig struct {
	fs        FS
	tmpDir    string
	threshold int64 // bodies larger than this go to a temp file
	maxSize   int64
	seq       func() uint64
}

// spool reads the body from r (size bytes, or until EOF if size < 0),
// checks it against want and the size limits, and returns it as needle
// bytes. Errors wrap raisfs.ErrTooLarge, ErrSizeMismatch or ErrHashMismatch
// for bad input, or are the reader's own error (a client that went away).
func spool(r io.Reader, want raisfs.Hash, size int64, cfg spoolConfig) (_ *spooled, err error) {
	if size > cfg.maxSize {
		return nil, fmt.Errorf("body of %d bytes exceeds limit %d: %w", size, cfg.maxSize, raisfs.ErrTooLarge)
	}
	s := &spooled{hash: want, fs: cfg.fs}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if size >= 0 && size <= cfg.threshold {
		return s, s.spoolSmall(r, size)
	}
	// Body bytes go at headerSize+pos of the needle, whichever the medium.
	var sink func(p []byte, pos int64) error
	if size < 0 {
		s.mem = make([]byte, headerSize, 64<<10)
		sink = func(p []byte, pos int64) error {
			s.mem = append(s.mem, p...)
			return nil
		}
	}
	toFile := func() error {
		s.path = fmt.Sprintf("%s/spool-%d", cfg.tmpDir, cfg.seq())
		f, err := cfg.fs.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("create spool file: %w", err)
		}
		s.file = f
		if len(s.mem) > headerSize {
			if _, err := f.WriteAt(s.mem[headerSize:], headerSize); err != nil {
				return fmt.Errorf("write spool file: %w", err)
			}
		}
		s.mem = nil
		sink = func(p []byte, pos int64) error {
			_, err := s.file.WriteAt(p, headerSize+pos)
			return err
		}
		return nil
	}
	if sink == nil {
		if err := toFile(); err != nil {
			return nil, err
		}
	}

	hasher := blake3.New()
	var crcs []uint32
	bufp := blockPool.Get().(*[]byte)
	defer blockPool.Put(bufp)
	buf := *bufp
	var pos int64
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if pos+int64(n) > cfg.maxSize {
				return nil, fmt.Errorf("body exceeds limit %d: %w", cfg.maxSize, raisfs.ErrTooLarge)
			}
			if size >= 0 && pos+int64(n) > size {
				return nil, fmt.Errorf("body longer than declared %d bytes: %w", size, raisfs.ErrSizeMismatch)
			}
			if s.file == nil && pos+int64(n) > cfg.threshold {
				if err := toFile(); err != nil {
					return nil, err
				}
			}
			hasher.Write(buf[:n])
			crcs = append(crcs, crc(buf[:n]))
			if err := sink(buf[:n], pos); err != nil {
				return nil, fmt.Errorf("write spool: %w", err)
			}
			pos += int64(n)
		}
		if rerr == io.EOF || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("read body after %d bytes: %w", pos, rerr)
		}
	}
	if size >= 0 && pos != size {
		return nil, fmt.Errorf("body is %d bytes, declared %d: %w", pos, size, raisfs.ErrSizeMismatch)
	}
	var got raisfs.Hash
	hasher.Sum(got[:0])
	if got != want {
		return nil, fmt.Errorf("body hashes to %s, not %s: %w", got, want, raisfs.ErrHashMismatch)
	}
	s.size = pos
	s.n = needleLen(pos)
	var hdr [headerSize]byte
	putHeader(hdr[:], needleHeader{kind: kindBlob, size: pos, hash: want})
	foot := make([]byte, s.n-headerSize-pos) // footer plus zero padding
	putFooter(foot, crcs)
	if s.file == nil {
		copy(s.mem, hdr[:])
		s.mem = append(s.mem, foot...)
		return s, nil
	}
	if _, err := s.file.WriteAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("write spool header: %w", err)
	}
	if _, err := s.file.WriteAt(foot, headerSize+pos); err != nil {
		return nil, fmt.Errorf("write spool footer: %w", err)
	}
	return s, nil
}
