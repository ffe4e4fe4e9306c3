package chunkserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/raisfs/raisfs"
)

// On-disk format of a volume's data file (all integers little-endian):
//
//	superblock (64 bytes)
//	  0  magic "RAISVOL1"
//	  8  format version (u32) = 1
//	 12  reserved (u32)
//	 16  volume id (u64)
//	 24  generation (u64): bumped by every compaction; the index names it too
//	 32  reserved (28 bytes, zero)
//	 60  crc32c of bytes 0..60
//	needle, needle, ... (each starts at an 8-byte aligned offset)
//
// A needle:
//
//	header (64 bytes)
//	  0  magic 0x4e454431 ("1DEN" on disk)
//	  4  kind (u8): 1 blob, 2 tombstone, 3 seal marker
//	  5  reserved (3 bytes, zero)
//	  8  body size (u64)
//	 16  BLAKE3-256 of the body (32 bytes); the blob's name
//	 48  reserved (12 bytes, zero)
//	 60  crc32c of bytes 0..60
//	body (size bytes)
//	footer
//	  crc32c of each 64 KiB block of the body (4 bytes each)
//	  crc32c of that table (u32)
//	  magic 0x444e4531 (u32)
//	zero padding to the next multiple of 8
//
// The block CRCs let a range read verify just the blocks it touches before
// any byte leaves the server; a full read also checks the BLAKE3 name. The
// header CRC and footer magic let recovery tell a torn tail (truncate it)
// from a rotten needle in the middle (keep scanning past it).

const (
	superblockSize = 64
	headerSize     = 64
	blockSize      = 64 << 10
	footerFixed    = 8

	superMagic  = "RAISVOL1"
	indexMagic  = "RAISIDX1"
	formatV1    = 1
	needleMagic = 0x4e454431
	footerMagic = 0x444e4531

	// maxNeedleBody bounds the size field a decoder accepts from disk, so
	// a corrupt header never causes a huge allocation or a wild seek.
	maxNeedleBody = 1 << 40
)

type needleKind uint8

const (
	kindBlob      needleKind = 1
	kindTombstone needleKind = 2
	kindSeal      needleKind = 3
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// errBadRecord marks on-disk bytes that do not decode as a needle, an
// index entry or a superblock.
var errBadRecord = errors.New("bad record")

type needleHeader struct {
	kind needleKind
	size int64
	hash raisfs.Hash
}

func numBlocks(size int64) int64 { return (size + blockSize - 1) / blockSize }

func align8(n int64) int64 { return (n + 7) &^ 7 }

// footerLen is the length of the footer of a needle with a body of size bytes.
func footerLen(size int64) int64 { return 4*numBlocks(size) + footerFixed }

// needleLen is the on-disk length, padding included, of a needle whose body
// is size bytes.
func needleLen(size int64) int64 { return align8(headerSize + size + footerLen(size)) }

func putHeader(b []byte, h needleHeader) {
	_ = b[headerSize-1]
	clear(b[:headerSize])
	binary.LittleEndian.PutUint32(b[0:], needleMagic)
	b[4] = byte(h.kind)
	binary.LittleEndian.PutUint64(b[8:], uint64(h.size))
	copy(b[16:48], h.hash[:])
	binary.LittleEndian.PutUint32(b[60:], crc(b[:60]))
}

func parseHeader(b []byte) (needleHeader, error) {
	var h needleHeader
	if len(b) < headerSize {
		return h, fmt.Errorf("needle header: short (%d bytes): %w", len(b), errBadRecord)
	}
	if binary.LittleEndian.Uint32(b[0:]) != needleMagic {
		return h, fmt.Errorf("needle header: bad magic: %w", errBadRecord)
	}
	if binary.LittleEndian.Uint32(b[60:]) != crc(b[:60]) {
		return h, fmt.Errorf("needle header: checksum mismatch: %w", errBadRecord)
	}
	h.kind = needleKind(b[4])
	size := binary.LittleEndian.Uint64(b[8:])
	if size > maxNeedleBody {
		return h, fmt.Errorf("needle header: size %d out of range: %w", size, errBadRecord)
	}
	h.size = int64(size)
	copy(h.hash[:], b[16:48])
	switch h.kind {
	case kindBlob:
	case kindTombstone, kindSeal:
		if h.size != 0 {
			return h, fmt.Errorf("needle header: kind %d with body: %w", h.kind, errBadRecord)
		}
	default:
		return h, fmt.Errorf("needle header: unknown kind %d: %w", h.kind, errBadRecord)
	}
	return h, nil
}

// putFooter writes the footer for the given block CRCs into b, which must be
// at least 4*len(crcs)+8 bytes, and zeroes the padding up to pad bytes.
func putFooter(b []byte, crcs []uint32) {
	for i, c := range crcs {
		binary.LittleEndian.PutUint32(b[4*i:], c)
	}
	n := 4 * len(crcs)
	binary.LittleEndian.PutUint32(b[n:], crc(b[:n]))
	binary.LittleEndian.PutUint32(b[n+4:], footerMagic)
}

// parseFooter checks a footer read from disk for a body of size bytes and
// returns its block CRCs.
func parseFooter(b []byte, size int64) ([]uint32, error) {
	want := footerLen(size)
	if int64(len(b)) < want {
		return nil, fmt.Errorf("needle footer: short: %w", errBadRecord)
	}
	n := int(want - footerFixed)
	if binary.LittleEndian.Uint32(b[n+4:]) != footerMagic {
		return nil, fmt.Errorf("needle footer: bad magic: %w", errBadRecord)
	}
	if binary.LittleEndian.Uint32(b[n:]) != crc(b[:n]) {
		return nil, fmt.Errorf("needle footer: checksum mismatch: %w", errBadRecord)
	}
	crcs := make([]uint32, n/4)
	for i := range crcs {
		crcs[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return crcs, nil
}

// encodeNeedle returns the complete on-disk bytes of a needle. It is used
// for records with small bodies; large blobs are assembled by the spooler.
func encodeNeedle(kind needleKind, hash raisfs.Hash, body []byte) []byte {
	size := int64(len(body))
	b := make([]byte, needleLen(size))
	putHeader(b, needleHeader{kind: kind, size: size, hash: hash})
	copy(b[headerSize:], body)
	crcs := blockCRCs(body)
	putFooter(b[headerSize+size:], crcs)
	return b
}

func blockCRCs(body []byte) []uint32 {
	crcs := make([]uint32, 0, numBlocks(int64(len(body))))
	for len(body) > 0 {
		n := min(len(body), blockSize)
		crcs = append(crcs, crc(body[:n]))
		body = body[n:]
	}
	return crcs
}

// superblock is the first 64 bytes of a data file and of an index file.
type superblock struct {
	volume raisfs.VolumeID
	gen    uint64
}

func putSuperblock(b []byte, magic string, s superblock) {
	clear(b[:superblockSize])
	copy(b, magic)
	binary.LittleEndian.PutUint32(b[8:], formatV1)
	binary.LittleEndian.PutUint64(b[16:], uint64(s.volume))
	binary.LittleEndian.PutUint64(b[24:], s.gen)
	binary.LittleEndian.PutUint32(b[60:], crc(b[:60]))
}

func parseSuperblock(b []byte, magic string) (superblock, error) {
	var s superblock
	if len(b) < superblockSize {
		return s, fmt.Errorf("superblock: short: %w", errBadRecord)
	}
	if string(b[:8]) != magic {
		return s, fmt.Errorf("superblock: bad magic %q: %w", b[:8], errBadRecord)
	}
	if binary.LittleEndian.Uint32(b[60:]) != crc(b[:60]) {
		return s, fmt.Errorf("superblock: checksum mismatch: %w", errBadRecord)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != formatV1 {
		return s, fmt.Errorf("superblock: unsupported format version %d: %w", v, errBadRecord)
	}
	s.volume = raisfs.VolumeID(binary.LittleEndian.Uint64(b[16:]))
	s.gen = binary.LittleEndian.Uint64(b[24:])
	return s, nil
}

// Index file: a superblock with magic "RAISIDX1", then fixed-size entries,
// one per needle, in data-file order:
//
//	 0  BLAKE3 hash (32 bytes)
//	32  offset of the needle in the data file (u64)
//	40  body size (u64)
//	48  kind (u8), 3 reserved bytes
//	52  crc32c of bytes 0..52
const indexEntrySize = 56

type indexEntry struct {
	hash   raisfs.Hash
	offset int64
	size   int64
	kind   needleKind
}

func putIndexEntry(b []byte, e indexEntry) {
	clear(b[:indexEntrySize])
	copy(b, e.hash[:])
	binary.LittleEndian.PutUint64(b[32:], uint64(e.offset))
	binary.LittleEndian.PutUint64(b[40:], uint64(e.size))
	b[48] = byte(e.kind)
	binary.LittleEndian.PutUint32(b[52:], crc(b[:52]))
}

func parseIndexEntry(b []byte) (indexEntry, error) {
	var e indexEntry
	if len(b) < indexEntrySize {
		return e, fmt.Errorf("index entry: short: %w", errBadRecord)
	}
	if binary.LittleEndian.Uint32(b[52:]) != crc(b[:52]) {
		return e, fmt.Errorf("index entry: checksum mismatch: %w", errBadRecord)
	}
	copy(e.hash[:], b[:32])
	off := binary.LittleEndian.Uint64(b[32:])
	size := binary.LittleEndian.Uint64(b[40:])
	if off < superblockSize || off > 1<<62 || off%8 != 0 || size > maxNeedleBody {
		return e, fmt.Errorf("index entry: offset %d size %d out of range: %w", off, size, errBadRecord)
	}
	e.offset, e.size = int64(off), int64(size)
	e.kind = needleKind(b[48])
	if e.kind < kindBlob || e.kind > kindSeal {
		return e, fmt.Errorf("index entry: unknown kind %d: %w", e.kind, errBadRecord)
	}
	return e, nil
}
