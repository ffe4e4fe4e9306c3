package chunkserver

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raisfs/raisfs"
)

// The scrubber finds a flipped byte in a needle nobody reads, in a small
// and in a large (streamed) needle; the bad needle is never served and the
// volume reports it, while the others still read back.
func TestStore_ScrubberFindsBitRot(t *testing.T) {
	cfg := testConfig(t, &faultFS{})
	cfg.ScrubEvery = 50 * time.Millisecond
	cfg.ScrubBytesPerSec = 256 << 20
	s := mustOpen(t, cfg)
	ctx := context.Background()
	if err := s.CreateVolume(ctx, 1); err != nil {
		t.Fatal(err)
	}
	small, hs := payload(1, 3000)
	large, hl := payload(2, 600<<10) // past smallRead: verified as a stream
	good, hg := payload(3, 5000)
	for _, p := range []struct {
		b []byte
		h raisfs.Hash
	}{{small, hs}, {large, hl}, {good, hg}} {
		mustPut(t, s, 1, p.b, p.h)
	}
	offs := map[raisfs.Hash]int64{}
	v, _, _ := s.volume(1)
	v.mu.Lock()
	for h, e := range v.entries {
		offs[h] = e.offset
	}
	v.mu.Unlock()
	path := dataPath(cfg.Dirs[0], 1)
	flipByte(t, path, offs[hs]+headerSize+100)
	flipByte(t, path, offs[hl]+headerSize+500<<10)

	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := s.VolumeStatus(1)
		if err != nil {
			t.Fatal(err)
		}
		if st.CorruptNeedles == 2 {
			if st.LiveBlobs != 1 {
				t.Fatalf("live blobs after the scrub = %d, want 1", st.LiveBlobs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrubber found %d corrupt needles, want 2", st.CorruptNeedles)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, h := range []raisfs.Hash{hs, hl} {
		if _, err := s.Get(ctx, 1, h); !errors.Is(err, raisfs.ErrCorrupt) {
			t.Fatalf("get of a scrubbed-corrupt needle = %v, want ErrCorrupt", err)
		}
	}
	b, err := s.Get(ctx, 1, hg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var buf bytes.Buffer
	if _, err := b.WriteRange(&buf, 0, b.Size); err != nil || !bytes.Equal(buf.Bytes(), good) {
		t.Fatalf("good needle after the scrub: %v", err)
	}
}
