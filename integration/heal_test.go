package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

type statusOut struct {
	ChunkServers []struct {
		ID      string `json:"id"`
		State   string `json:"state"`
		Volumes int    `json:"volumes"`
	} `json:"chunkservers"`
	UnderReplicated int `json:"under_replicated"`
	Repairing       int `json:"repairing"`
}

func (d *devCluster) status() (statusOut, bool) {
	out, _, code := d.adm(nil, "status", "--json")
	var st statusOut
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		return st, false
	}
	return st, true
}

// kill -9 a chunk server that holds data: its volumes are copied to the
// others, full redundancy comes back within a bound, and every object
// reads back during and after the repair.
func TestDev_LostChunkServerIsHealed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	const repairAfter = 3 * time.Second
	d := startDev(t, t.TempDir(), "--chunkservers", "5", "--repair-after", repairAfter.String())
	c := d.client()
	ctx := context.Background()
	objs := map[string][]byte{}
	for i := range 300 {
		k := fmt.Sprintf("heal/%d", i)
		objs[k] = randomBytes(uint64(i), 1000+i*37)
		if _, err := c.Put(ctx, k, bytes.NewReader(objs[k]), nil); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	st, ok := d.status()
	if !ok {
		t.Fatal("no status")
	}
	victim := ""
	for _, cs := range st.ChunkServers {
		if cs.Volumes > 0 {
			victim = cs.ID
			break
		}
	}
	if victim == "" {
		t.Fatalf("no chunk server holds a volume: %+v", st)
	}

	// Readers run through the loss and the repair.
	stop := make(chan struct{})
	var reads, failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Go(func() {
			for i := r; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("heal/%d", i%len(objs))
				got, err := get(t, c, k)
				reads.Add(1)
				if err != nil || !bytes.Equal(got, objs[k]) {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", k, err))
				}
			}
		})
	}
	killed := time.Now()
	syscall.Kill(d.pids[victim], syscall.SIGKILL)
	sawBelow := false
	waitFor(t, 90*time.Second, "full redundancy after losing "+victim, func() bool {
		st, ok := d.status()
		if !ok {
			return false
		}
		if st.UnderReplicated > 0 {
			sawBelow = true
		}
		down := false
		for _, cs := range st.ChunkServers {
			if cs.ID == victim {
				down = cs.State == "down" && cs.Volumes == 0
			}
		}
		return sawBelow && down && st.UnderReplicated == 0 && st.Repairing == 0
	})
	healed := time.Since(killed)
	close(stop)
	wg.Wait()
	t.Logf("%s killed; full redundancy %s later (repair-after %s, down after 5 s); %d reads during it, %d failed",
		victim, healed.Round(100*time.Millisecond), repairAfter, reads.Load(), failures.Load())
	if failures.Load() > 0 {
		t.Fatalf("%d of %d reads failed during the repair; first: %v", failures.Load(), reads.Load(), firstErr.Load())
	}
	for k, v := range objs {
		got, err := get(t, c, k)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("after the repair %s: %v", k, err)
		}
	}
}

// A byte flipped inside a stored needle on one chunk server's disk: the
// scrubber finds it, the masters replace that copy of the volume from a
// healthy member, and no read ever returns the bad bytes.
func TestDev_BitRotIsFoundAndRepaired(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	dir := t.TempDir()
	d := startDev(t, dir, "--scrub-every", "1s")
	c := d.client()
	ctx := context.Background()
	objs := map[string][]byte{}
	for i := range 50 {
		k := fmt.Sprintf("rot/%d", i)
		objs[k] = randomBytes(uint64(1000+i), 4000)
		if _, err := c.Put(ctx, k, bytes.NewReader(objs[k]), nil); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	victim := objs["rot/7"]
	h := blake3.Sum256(victim)
	// Find the needle's header (it names the hash) in some server's volume
	// files and flip a byte of its body.
	files, _ := filepath.Glob(filepath.Join(dir, "cs*", "vol-*.dat"))
	flipped := ""
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(b, h[:])
		if i < 0 {
			continue
		}
		fh, err := os.OpenFile(f, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		off := int64(i + 64 + 100) // past the header, inside the body
		one := []byte{b[off] ^ 0x20}
		if _, err := fh.WriteAt(one, off); err != nil {
			t.Fatal(err)
		}
		fh.Close()
		flipped = f
		break
	}
	if flipped == "" {
		t.Fatal("needle not found on any disk")
	}
	server := filepath.Base(filepath.Dir(flipped))
	t.Logf("flipped a byte of rot/7 in %s", flipped)
	st0, _ := d.status()
	before := -1
	for _, cs := range st0.ChunkServers {
		if cs.ID == server {
			before = cs.Volumes
		}
	}
	start := time.Now()
	waitFor(t, 60*time.Second, "the corrupt copy replaced", func() bool {
		// Reads go on meanwhile and never see the bad bytes.
		for k, v := range objs {
			got, err := get(t, c, k)
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("read %s during the repair: %v", k, err)
			}
		}
		st, ok := d.status()
		if !ok {
			return false
		}
		for _, cs := range st.ChunkServers {
			if cs.ID == server && cs.Volumes < before {
				return st.UnderReplicated == 0 && st.Repairing == 0
			}
		}
		return false
	})
	t.Logf("corrupt copy on %s replaced %s after the flip", server, time.Since(start).Round(100*time.Millisecond))
}
