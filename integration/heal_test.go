package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// raisadm drain under write load: the server ends retired and empty,
// nothing is under-replicated, fsck is clean, every acknowledged object
// reads back; rebalance --dry-run prints a plan and moves nothing.
func TestDev_DrainFsckRebalanceThroughRaisadm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	d := startDev(t, t.TempDir(), "--chunkservers", "5")
	c := d.client()
	var mu sync.Mutex
	acked := map[string][]byte{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := fmt.Sprintf("drain/%d", i)
			v := randomBytes(uint64(5000+i), 2000)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_, err := c.Put(ctx, k, bytes.NewReader(v), nil)
			cancel()
			if err == nil {
				mu.Lock()
				acked[k] = v
				mu.Unlock()
			}
		}
	})
	waitFor(t, 30*time.Second, "puts", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 100 })
	st, _ := d.status()
	victim := ""
	for _, cs := range st.ChunkServers {
		if cs.Volumes > 0 {
			victim = cs.ID
		}
	}
	out, errOut, code := d.adm(nil, "drain", victim)
	if code != 0 || !strings.Contains(out, "drained and retired") {
		t.Fatalf("raisadm drain %s = %d %q %q", victim, code, out, errOut)
	}
	close(stop)
	wg.Wait()
	st, _ = d.status()
	for _, cs := range st.ChunkServers {
		if cs.ID == victim && (cs.State != "retired" || cs.Volumes != 0) {
			t.Fatalf("%s after the drain: %+v", victim, cs)
		}
	}
	if st.UnderReplicated != 0 {
		t.Fatalf("under-replicated after the drain: %d", st.UnderReplicated)
	}
	if out, _, code := d.adm(nil, "drain", victim); code != 0 || !strings.Contains(out, "retired") {
		t.Fatalf("second drain = %d %q", code, out)
	}
	if out, errOut, code := d.adm(nil, "fsck"); code != 0 || !strings.Contains(out, "clean") {
		t.Fatalf("raisadm fsck after the drain = %d %q %q", code, out, errOut)
	}
	if out, errOut, code := d.adm(nil, "rebalance", "--dry-run", "--spread", "0.5"); code != 0 || !strings.Contains(out, "moves") {
		t.Fatalf("raisadm rebalance --dry-run = %d %q %q", code, out, errOut)
	}
	if _, _, code := d.adm(nil, "drain"); code != 2 {
		t.Fatalf("raisadm drain without an id exits %d, want 2", code)
	}
	if _, _, code := d.adm(nil, "drain", "nosuch"); code != 1 {
		t.Fatalf("raisadm drain of an unknown server exits %d, want 1", code)
	}
	mu.Lock()
	defer mu.Unlock()
	for k, v := range acked {
		got, err := get(t, c, k)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("after the drain %s: %v", k, err)
		}
	}
	t.Logf("drained %s under load; %d acknowledged puts read back", victim, len(acked))
}

// A chunk server down for less than the repair grace comes back: it is not
// replaced (no copy is made) and fsck finds nothing missing on it.
func TestDev_ShortOutageNeedsNoCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	dir := t.TempDir()
	d := startDev(t, dir, "--repair-after", "5m")
	c := d.client()
	ctx := context.Background()
	for i := range 50 {
		if _, err := c.Put(ctx, fmt.Sprintf("short/%d", i), bytes.NewReader(randomBytes(uint64(i), 3000)), nil); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := d.status()
	victim, vols := "", 0
	for _, cs := range st.ChunkServers {
		if cs.Volumes > 0 {
			victim, vols = cs.ID, cs.Volumes
		}
	}
	syscall.Kill(d.pids[victim], syscall.SIGKILL)
	waitFor(t, 30*time.Second, victim+" marked down", func() bool {
		st, ok := d.status()
		for _, cs := range st.ChunkServers {
			if ok && cs.ID == victim {
				return cs.State == "down"
			}
		}
		return false
	})
	// Writes carry on elsewhere meanwhile.
	for i := 50; i < 80; i++ {
		if _, err := c.Put(ctx, fmt.Sprintf("short/%d", i), bytes.NewReader(randomBytes(uint64(i), 3000)), nil); err != nil {
			t.Fatalf("put while %s is down: %v", victim, err)
		}
	}
	// Restart it as rais dev did.
	rais, _ := binaries(t)
	layout, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		ChunkServers []struct {
			ID  string `json:"id"`
			API string `json:"api"`
		} `json:"chunkservers"`
	}
	json.Unmarshal(layout, &l)
	addr, rack := "", ""
	for i, cs := range l.ChunkServers {
		if cs.ID == victim {
			addr, rack = cs.API, fmt.Sprintf("rack%d", i%2+1)
		}
	}
	cmd := exec.Command(rais, "chunkserver", "--id", victim, "--dir", filepath.Join(dir, victim), "--addr", addr,
		"--masters", d.masters, "--rack", rack, "--volume-size", fmt.Sprint(256<<20), "--min-free", fmt.Sprint(64<<20))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, 30*time.Second, victim+" back", func() bool {
		st, ok := d.status()
		for _, cs := range st.ChunkServers {
			if ok && cs.ID == victim {
				return cs.State == "alive" && cs.Volumes == vols
			}
		}
		return false
	})
	if out, errOut, code := d.adm(nil, "fsck"); code != 0 {
		t.Fatalf("fsck after a short outage = %d %q %q", code, out, errOut)
	}
}
