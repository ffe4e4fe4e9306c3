package chunkserver

import (
	"bytes"
	"testing"
)

func TestGetBuf_SizesAndReuse(t *testing.T) {
	for _, n := range []int{0, 1, 4096, 4097, 65536, 65537, 1 << 20, 32 << 20} {
		b := getBuf(n)
		if len(b) != n {
			t.Fatalf("getBuf(%d): len %d", n, len(b))
		}
		if c := cap(b); c < n || c&(c-1) != 0 {
			t.Fatalf("getBuf(%d): cap %d, want a power of two at least %d", n, c, n)
		}
		putBuf(b)
	}
	// Over the largest class: allocated, and not kept.
	b := getBuf(32<<20 + 1)
	if len(b) != 32<<20+1 {
		t.Fatalf("getBuf(32 MiB + 1): len %d", len(b))
	}
	putBuf(b)
	// Foreign capacities are ignored rather than handed out short.
	putBuf(make([]byte, 5000))
	if b := getBuf(8000); cap(b) != 8192 {
		t.Fatalf("getBuf(8000) after putBuf of a 5000-byte buffer: cap %d, want 8192", cap(b))
	}
}

// A needle spooled into a reused buffer is byte for byte the needle built
// from scratch: the old contents of the buffer (here a longer body's) must
// not leak into its footer or padding, which replicas and scrubs compare.
func TestSpool_ReusedBufferLeavesNoOldBytes(t *testing.T) {
	cfg := spoolConfig{fs: OSFS{}, tmpDir: t.TempDir(), threshold: 1 << 20, maxSize: 1 << 20, seq: func() uint64 { return 1 }}
	for i := range 50 {
		big, bh := payload(uint64(i), 60000)
		sp, err := spool(bytes.NewReader(big), bh, int64(len(big)), cfg)
		if err != nil {
			t.Fatal(err)
		}
		for j := range sp.mem {
			sp.mem[j] = 0xff // as if a later copy had scribbled on it
		}
		sp.close()
		small, sh := payload(uint64(1000+i), 33000+i)
		sp, err = spool(bytes.NewReader(small), sh, int64(len(small)), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if want := encodeNeedle(kindBlob, sh, small); !bytes.Equal(sp.mem, want) {
			t.Fatalf("round %d: spooled needle differs from encodeNeedle's", i)
		}
		sp.close()
	}
}
