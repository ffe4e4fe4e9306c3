package chunkserver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/zeebo/blake3"
)

// checkNeedleAt decodes and fully verifies the needle at pos of a data file
// whose valid bytes end at end. ok is false when the bytes there are not a
// complete needle (torn or garbage); corrupt is true when the needle's frame
// is intact but its body fails its block CRCs or its BLAKE3 name. err is an
// I/O error only.
func checkNeedleAt(f File, pos, end int64) (e indexEntry, ok, corrupt bool, err error) {
	if pos+headerSize > end {
		return e, false, false, nil
	}
	var hb [headerSize]byte
	if _, err := f.ReadAt(hb[:], pos); err != nil && !errors.Is(err, io.EOF) {
		return e, false, false, fmt.Errorf("read needle header at %d: %w", pos, err)
	}
	h, herr := parseHeader(hb[:])
	if herr != nil {
		return e, false, false, nil
	}
	n := needleLen(h.size)
	if pos+n > end {
		return e, false, false, nil
	}
	foot := make([]byte, footerLen(h.size))
	if _, err := f.ReadAt(foot, pos+headerSize+h.size); err != nil && !errors.Is(err, io.EOF) {
		return e, false, false, fmt.Errorf("read needle footer at %d: %w", pos, err)
	}
	crcs, ferr := parseFooter(foot, h.size)
	if ferr != nil {
		return e, false, false, nil
	}
	e = indexEntry{hash: h.hash, offset: pos, size: h.size, kind: h.kind}
	if h.kind != kindBlob {
		return e, true, false, nil
	}
	good, err := verifyBody(f, pos+headerSize, h.size, crcs, h.hash)
	if err != nil {
		return e, false, false, err
	}
	return e, true, !good, nil
}

// verifyBody checks a body against its block CRCs and its BLAKE3 name.
func verifyBody(f File, off, size int64, crcs []uint32, want [32]byte) (bool, error) {
	hasher := blake3.New()
	buf := make([]byte, min(size, blockSize))
	for i := int64(0); i*blockSize < size; i++ {
		k := min(blockSize, size-i*blockSize)
		if _, err := f.ReadAt(buf[:k], off+i*blockSize); err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("read needle body at %d: %w", off, err)
		}
		if crc(buf[:k]) != crcs[i] {
			return false, nil
		}
		hasher.Write(buf[:k])
	}
	var got [32]byte
	hasher.Sum(got[:0])
	return got == want, nil
}

// scanData walks the needles of a data file from 'from' to 'end', calling
// fn for each one in file order. A region that does not decode is skipped
// when a valid needle follows it (rot in the middle: keep what is after it)
// and ends the scan when none does (a torn tail). It returns the end of the
// last needle found: the caller truncates the file there.
func scanData(f File, from, end int64, logger *slog.Logger, fn func(e indexEntry, corrupt bool)) (int64, error) {
	pos := from
	for pos < end {
		e, ok, corrupt, err := checkNeedleAt(f, pos, end)
		if err != nil {
			return pos, err
		}
		if ok {
			fn(e, corrupt)
			pos += needleLen(e.size)
			continue
		}
		next, found, err := resync(f, pos+8, end)
		if err != nil {
			return pos, err
		}
		if !found {
			return pos, nil
		}
		logger.Warn("skipping undecodable region of volume", "offset", pos, "bytes", next-pos)
		pos = next
	}
	return pos, nil
}

// resync looks for the first 8-byte aligned offset at or after from where
// a complete needle starts.
func resync(f File, from, end int64) (int64, bool, error) {
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], needleMagic)
	buf := make([]byte, 1<<20)
	for base := from; base+headerSize <= end; {
		k := min(int64(len(buf)), end-base)
		n, err := f.ReadAt(buf[:k], base)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, false, fmt.Errorf("resync read at %d: %w", base, err)
		}
		for i := 0; i+4 <= n; i += 8 {
			if !bytes.Equal(buf[i:i+4], magic[:]) {
				continue
			}
			_, ok, _, err := checkNeedleAt(f, base+int64(i), end)
			if err != nil {
				return 0, false, err
			}
			if ok {
				return base + int64(i), true, nil
			}
		}
		if n < 8 {
			break
		}
		base += int64(n) &^ 7
	}
	return 0, false, nil
}
