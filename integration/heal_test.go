package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/blake3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/client"
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
	d.kill(victim, syscall.SIGKILL)
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
// scrubber finds it, the masters put the needle back from a healthy member,
// and no read ever returns the bad bytes.
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
	// The damaged server's own copy of the blob, read directly.
	addr, _ := devChunkServer(t, dir, server)
	vol := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(flipped), "vol-"), ".dat")
	direct := func() (int, []byte) {
		resp, err := http.Get(fmt.Sprintf("http://%s/v1/volumes/%s/blobs/%x", addr, vol, h))
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	start := time.Now()
	sawCorrupt := false
	waitFor(t, 60*time.Second, "the corrupt needle found and put back", func() bool {
		// Reads go on meanwhile and never see the bad bytes.
		for k, v := range objs {
			got, err := get(t, c, k)
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("read %s during the repair: %v", k, err)
			}
		}
		code, body := direct()
		if code == http.StatusInternalServerError {
			sawCorrupt = true // found (by the scrubber or a read), not yet put back
		}
		return sawCorrupt && code == http.StatusOK && bytes.Equal(body, victim)
	})
	t.Logf("corrupt needle on %s found and put back %s after the flip", server, time.Since(start).Round(100*time.Millisecond))
	waitFor(t, 30*time.Second, "full redundancy", func() bool {
		st, ok := d.status()
		return ok && st.UnderReplicated == 0 && st.Repairing == 0
	})
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
	d.kill(victim, syscall.SIGKILL)
	waitFor(t, 30*time.Second, victim+" marked down", func() bool {
		st, ok := d.status()
		for _, cs := range st.ChunkServers {
			if ok && cs.ID == victim {
				return cs.State == "down"
			}
		}
		return false
	})
	// fsck reports the copies it cannot check, and exits 1.
	if out, _, code := d.adm(nil, "fsck"); code != 1 || !strings.Contains(out, "not checked") {
		t.Fatalf("fsck with %s down = %d %q, want exit 1 and copies not checked", victim, code, out)
	}
	// Writes carry on elsewhere meanwhile.
	for i := 50; i < 80; i++ {
		if _, err := c.Put(ctx, fmt.Sprintf("short/%d", i), bytes.NewReader(randomBytes(uint64(i), 3000)), nil); err != nil {
			t.Fatalf("put while %s is down: %v", victim, err)
		}
	}
	// Restart it as rais dev did.
	rais, _ := binaries(t)
	addr, i := devChunkServer(t, dir, victim)
	rack := fmt.Sprintf("rack%d", i%2+1) // as rais dev assigns them
	cmd := exec.Command(rais, "chunkserver", "--id", victim, "--dir", filepath.Join(dir, victim), "--addr", addr,
		"--masters", d.masters, "--dc", "dc1", "--rack", rack, "--volume-size", fmt.Sprint(256<<20), "--min-free", fmt.Sprint(64<<20))
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

// A two-data-center class on a cluster spread over two data centers: every
// volume of the class has copies in both, and with every chunk server of
// one data center killed, every object still reads back.
func TestDev_LosingADataCenterLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	dir := t.TempDir()
	d := startDev(t, dir, "--chunkservers", "6", "--dcs", "2")
	if out, errOut, code := d.adm(nil, "class", "twodc", "--copies", "3", "--min-dcs", "2"); code != 0 {
		t.Fatalf("raisadm class = %d %q %q", code, out, errOut)
	}
	c := d.client()
	ctx := context.Background()
	objs := map[string][]byte{}
	for i := range 60 {
		k := fmt.Sprintf("dc/%d", i)
		objs[k] = randomBytes(uint64(9000+i), 2500)
		if _, err := c.Put(ctx, k, bytes.NewReader(objs[k]), &client.PutOptions{Class: "twodc"}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	// Every copy set spans both data centers (dev puts csN in dc((N-1)%2+1)).
	conn, err := grpc.NewClient(strings.Split(d.masters, ",")[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := masterpb.NewMasterClient(conn)
	for k := range objs {
		lr, err := m.Lookup(ctx, &masterpb.LookupRequest{Key: []byte(k)})
		if err != nil {
			t.Fatal(err)
		}
		dcs := map[int]bool{}
		for _, r := range lr.Replicas {
			n, _ := strconv.Atoi(strings.TrimPrefix(r.Id, "cs"))
			dcs[(n-1)%2] = true
		}
		if len(dcs) != 2 {
			t.Fatalf("%s: copies on %v, not in both data centers", k, lr.Replicas)
		}
	}
	for _, id := range []string{"cs1", "cs3", "cs5"} { // all of dc1
		d.kill(id, syscall.SIGKILL)
	}
	for k, v := range objs {
		got, err := get(t, c, k)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("get %s with dc1 gone: %v", k, err)
		}
	}
	t.Logf("%d objects of a two-data-center class read back with dc1 down", len(objs))
}

// An empty chunk server joins a running cluster and rebalance moves
// volumes onto it while reads go on; fsck is clean afterwards.
func TestDev_NewServerAndRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	dir := t.TempDir()
	d := startDev(t, dir, "--chunkservers", "3", "--volume-size", fmt.Sprint(1<<20)) // several volumes to move
	c := d.client()
	ctx := context.Background()
	objs := map[string][]byte{}
	for i := range 120 {
		k := fmt.Sprintf("rb/%d", i)
		objs[k] = randomBytes(uint64(7000+i), 20000)
		if _, err := c.Put(ctx, k, bytes.NewReader(objs[k]), nil); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	// A fourth server, started by hand, joins empty.
	rais, _ := binaries(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(rais, "chunkserver", "--id", "cs9", "--dir", filepath.Join(dir, "cs9"), "--addr", addr,
		"--masters", d.masters, "--dc", "dc1", "--rack", "rack3", "--volume-size", fmt.Sprint(1<<20), "--min-free", fmt.Sprint(64<<20))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	d.waitHealthy(4)
	// The plan works from the sizes the servers report: wait for reports
	// that include every put.
	waitFor(t, 30*time.Second, "heartbeats reporting the data", func() bool {
		out, _, code := d.adm(nil, "status", "--json")
		var st struct {
			ChunkServers []struct {
				ID   string `json:"id"`
				Used int64  `json:"used_bytes"`
			} `json:"chunkservers"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			return false
		}
		full := 0
		for _, cs := range st.ChunkServers {
			if cs.ID != "cs9" && cs.Used >= 120*20000 {
				full++
			}
		}
		return full == 3
	})

	stop := make(chan struct{})
	var failures atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := fmt.Sprintf("rb/%d", i%len(objs))
			if got, err := get(t, c, k); err != nil || !bytes.Equal(got, objs[k]) {
				failures.Add(1)
			}
		}
	})
	// All servers share this machine's filesystem, so their used shares
	// of capacity differ by tiny fractions: ask for a tiny spread.
	out, errOut, code := d.adm(nil, "rebalance", "--spread", "0.0000001")
	close(stop)
	wg.Wait()
	if code != 0 || !strings.Contains(out, "rebalance done") {
		t.Fatalf("raisadm rebalance = %d %q %q", code, out, errOut)
	}
	waitFor(t, 30*time.Second, "cs9 to hold volumes", func() bool {
		st, ok := d.status()
		for _, cs := range st.ChunkServers {
			if ok && cs.ID == "cs9" {
				return cs.Volumes > 0
			}
		}
		return false
	})
	if failures.Load() > 0 {
		t.Fatalf("%d reads failed during the rebalance", failures.Load())
	}
	if out, errOut, code := d.adm(nil, "fsck"); code != 0 {
		t.Fatalf("fsck after the rebalance = %d %q %q", code, out, errOut)
	}
	t.Logf("rebalance: %s", strings.TrimSpace(out))
}

// devChunkServer returns a chunk server's address from rais dev's layout
// file, and its index there.
func devChunkServer(t *testing.T, dir, id string) (string, int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		ChunkServers []struct {
			ID  string `json:"id"`
			API string `json:"api"`
		} `json:"chunkservers"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	for i, cs := range l.ChunkServers {
		if cs.ID == id {
			return cs.API, i
		}
	}
	t.Fatalf("%s not in %s/dev.json", id, dir)
	return "", 0
}
