package blobbatch

import (
	"bytes"
	"errors"
	"testing"

	"github.com/raisfs/raisfs"
)

func items() []Item {
	return []Item{
		{Hash: raisfs.Hash{1}, Lease: "123.abc", Body: []byte("first body")},
		{Hash: raisfs.Hash{2}, Lease: "", Body: nil},
		{Hash: raisfs.Hash{3}, Lease: "456.def", Body: bytes.Repeat([]byte{0xff}, 3000)},
	}
}

func TestRoundTrip(t *testing.T) {
	in := items()
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != Size(in) {
		t.Fatalf("encoded %d bytes, Size says %d", len(b), Size(in))
	}
	out, err := Decode(bytes.NewReader(b), 10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("decoded %d items, want %d", len(out), len(in))
	}
	for i := range in {
		if out[i].Hash != in[i].Hash || out[i].Lease != in[i].Lease || !bytes.Equal(out[i].Body, in[i].Body) {
			t.Fatalf("item %d: got %+v, want %+v", i, out[i], in[i])
		}
	}
	empty, err := Decode(bytes.NewReader([]byte(Magic)), 10, 1<<20)
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty batch: %v, %d items", err, len(empty))
	}
}

// A batch cut anywhere but between items is refused whole: a torn upload
// must store nothing.
func TestDecode_TornBatchIsRefused(t *testing.T) {
	in := items()
	b, _ := Encode(in)
	ends := map[int]bool{len(Magic): true}
	n := len(Magic)
	for _, it := range in {
		n += headerSize + len(it.Lease) + len(it.Body)
		ends[n] = true
	}
	for cut := 0; cut < len(b); cut++ {
		out, err := Decode(bytes.NewReader(b[:cut]), 10, 1<<20)
		if ends[cut] {
			if err != nil {
				t.Fatalf("cut at item boundary %d: %v", cut, err)
			}
			continue
		}
		if !errors.Is(err, raisfs.ErrInvalidArgument) || out != nil {
			t.Fatalf("cut at %d: got %d items, err %v; want ErrInvalidArgument", cut, len(out), err)
		}
	}
}

func TestDecode_Limits(t *testing.T) {
	b, _ := Encode(items())
	if _, err := Decode(bytes.NewReader(b), 2, 1<<20); !errors.Is(err, raisfs.ErrTooLarge) {
		t.Fatalf("3 items with a limit of 2: %v", err)
	}
	if _, err := Decode(bytes.NewReader(b), 10, 2999); !errors.Is(err, raisfs.ErrTooLarge) {
		t.Fatalf("a 3000-byte body with a limit of 2999: %v", err)
	}
	bad := append([]byte("RAISBAT2"), b[len(Magic):]...)
	if _, err := Decode(bytes.NewReader(bad), 10, 1<<20); !errors.Is(err, raisfs.ErrInvalidArgument) {
		t.Fatalf("bad magic: %v", err)
	}
	if _, err := Encode([]Item{{Lease: string(make([]byte, 70000))}}); !errors.Is(err, raisfs.ErrInvalidArgument) {
		t.Fatalf("a 70000-byte lease: %v", err)
	}
}
