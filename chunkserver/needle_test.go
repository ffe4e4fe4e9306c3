package chunkserver

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/raisfs/raisfs"
)

func TestNeedle_HeaderRoundTrip(t *testing.T) {
	for _, h := range []needleHeader{
		{kind: kindBlob, size: 0},
		{kind: kindBlob, size: 12345, hash: raisfs.Hash{1, 2, 3}},
		{kind: kindBlob, size: maxNeedleBody},
		{kind: kindTombstone, hash: raisfs.Hash{9}},
		{kind: kindSeal},
	} {
		var b [headerSize]byte
		putHeader(b[:], h)
		got, err := parseHeader(b[:])
		if err != nil || got != h {
			t.Errorf("parseHeader(putHeader(%+v)) = %+v, %v", h, got, err)
		}
		for bit := 0; bit < headerSize*8; bit++ {
			c := b
			c[bit/8] ^= 1 << (bit % 8)
			if _, err := parseHeader(c[:]); !errors.Is(err, errBadRecord) {
				t.Fatalf("header with bit %d flipped: err = %v, want errBadRecord", bit, err)
			}
		}
	}
}

func TestNeedle_FooterRoundTrip(t *testing.T) {
	for _, size := range []int64{0, 1, blockSize - 1, blockSize, blockSize + 1, 5*blockSize + 17} {
		body, _ := payload(uint64(size), int(size))
		crcs := blockCRCs(body)
		b := make([]byte, footerLen(size))
		putFooter(b, crcs)
		got, err := parseFooter(b, size)
		if err != nil || len(got) != len(crcs) {
			t.Fatalf("parseFooter(size %d) = %v, %v", size, got, err)
		}
		for i := range got {
			if got[i] != crcs[i] {
				t.Fatalf("size %d: crc %d = %x, want %x", size, i, got[i], crcs[i])
			}
		}
		b[len(b)-5] ^= 0x10
		if _, err := parseFooter(b, size); !errors.Is(err, errBadRecord) {
			t.Fatalf("corrupt footer (size %d): err = %v", size, err)
		}
	}
}

func TestNeedle_IndexEntryAndSuperblockRoundTrip(t *testing.T) {
	e := indexEntry{hash: raisfs.Hash{7, 7}, offset: 4096, size: 99, kind: kindBlob}
	var b [indexEntrySize]byte
	putIndexEntry(b[:], e)
	if got, err := parseIndexEntry(b[:]); err != nil || got != e {
		t.Fatalf("parseIndexEntry = %+v, %v; want %+v", got, err, e)
	}
	b[40] ^= 1
	if _, err := parseIndexEntry(b[:]); err == nil {
		t.Fatal("corrupt index entry parsed")
	}
	var sb [superblockSize]byte
	putSuperblock(sb[:], superMagic, superblock{volume: 42, gen: 3})
	if got, err := parseSuperblock(sb[:], superMagic); err != nil || got.volume != 42 || got.gen != 3 {
		t.Fatalf("parseSuperblock = %+v, %v", got, err)
	}
	if _, err := parseSuperblock(sb[:], indexMagic); err == nil {
		t.Fatal("data superblock parsed as index superblock")
	}
}

func TestNeedle_LengthIsAlignedAndCoversFooter(t *testing.T) {
	for size := int64(0); size < 3*blockSize; size += 997 {
		n := needleLen(size)
		if n%8 != 0 || n < headerSize+size+footerLen(size) || n >= headerSize+size+footerLen(size)+8 {
			t.Fatalf("needleLen(%d) = %d", size, n)
		}
	}
}

// writeTempFile writes b to a file and opens it as a File.
func writeTempFile(t testing.TB, b []byte) File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := OSFS{}.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestScanData_SkipsRotFindsTornTail(t *testing.T) {
	var file []byte
	file = append(file, make([]byte, superblockSize)...)
	var offs []int64
	var hashes []raisfs.Hash
	for i := range 5 {
		body, h := payload(uint64(i), 100+i*3000)
		offs = append(offs, int64(len(file)))
		hashes = append(hashes, h)
		file = append(file, encodeNeedle(kindBlob, h, body)...)
	}
	end := int64(len(file))
	// Rot: needle 1's header, needle 3's body. Torn: half of needle 4.
	file[offs[1]+20] ^= 0xff
	file[offs[3]+headerSize+10] ^= 0x01
	file = file[:offs[4]+50]

	f := writeTempFile(t, file)
	var got []raisfs.Hash
	var corrupt []bool
	validEnd, err := scanData(f, superblockSize, int64(len(file)), testLogger(t), func(e indexEntry, c bool) {
		got = append(got, e.hash)
		corrupt = append(corrupt, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	if validEnd != offs[4] {
		t.Errorf("valid end = %d, want %d (start of the torn needle; file was %d)", validEnd, offs[4], end)
	}
	want := []raisfs.Hash{hashes[0], hashes[2], hashes[3]}
	if len(got) != len(want) {
		t.Fatalf("found %d needles, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("needle %d = %s, want %s", i, got[i], want[i])
		}
	}
	if corrupt[0] || corrupt[1] || !corrupt[2] {
		t.Errorf("corrupt flags = %v, want [false false true]", corrupt)
	}
}

// FuzzParseHeader: any bytes either decode to a sane header or fail; never panic.
func FuzzParseHeader(f *testing.F) {
	var b [headerSize]byte
	putHeader(b[:], needleHeader{kind: kindBlob, size: 10})
	f.Add(b[:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseHeader(data)
		if err == nil && (h.size < 0 || h.size > maxNeedleBody) {
			t.Fatalf("accepted size %d", h.size)
		}
	})
}

// FuzzParseIndexEntry: same contract for index entries.
func FuzzParseIndexEntry(f *testing.F) {
	var b [indexEntrySize]byte
	putIndexEntry(b[:], indexEntry{offset: 64, size: 5, kind: kindBlob})
	f.Add(b[:])
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := parseIndexEntry(data)
		if err == nil && (e.offset < superblockSize || e.size > maxNeedleBody) {
			t.Fatalf("accepted %+v", e)
		}
	})
}

// FuzzScanData: recovery over arbitrary bytes terminates, reports only
// needles that lie inside the file, and never allocates beyond the file.
func FuzzScanData(f *testing.F) {
	body, h := payload(1, 3000)
	n := encodeNeedle(kindBlob, h, body)
	f.Add(append(bytes.Clone(n), encodeNeedle(kindTombstone, h, nil)...))
	f.Add(n[:len(n)/2])
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file := append(make([]byte, superblockSize), data...)
		fl := writeTempFile(t, file)
		end, err := scanData(fl, superblockSize, int64(len(file)), testLogger(t), func(e indexEntry, corrupt bool) {
			if e.offset < superblockSize || e.offset+needleLen(e.size) > int64(len(file)) {
				t.Fatalf("needle %+v outside file of %d bytes", e, len(file))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if end < superblockSize || end > int64(len(file)) {
			t.Fatalf("valid end %d outside file", end)
		}
	})
}
