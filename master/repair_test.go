package master

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/zeebo/blake3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// startChunkServers starts cs1..csN in dc1, each on a rack of its own,
// and waits until the leader has heard from all of them.
func startChunkServers(t *testing.T, c *testCluster, n int) map[string]*testChunkServer {
	t.Helper()
	css := map[string]*testChunkServer{}
	for i := range n {
		id := fmt.Sprintf("cs%d", i+1)
		css[id] = startChunkServer(t, id, "dc1", fmt.Sprintf("r%d", i+1), masterAddrs(c))
	}
	waitServers(t, c, n)
	return css
}

// putMany puts keys k0..k(n-1), each size bytes of its own byte value.
func putMany(t *testing.T, m masterpb.MasterClient, n, size int) map[string][]byte {
	t.Helper()
	bodies := map[string][]byte{}
	for i := range n {
		k := fmt.Sprintf("k%d", i)
		bodies[k] = bytes.Repeat([]byte{byte(i + 1)}, size)
		if err := put(t, m, k, bodies[k]); err != nil {
			t.Fatal(err)
		}
	}
	return bodies
}

// holds checks that cond stays true for d (observed every 50 ms).
func holds(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if !cond() {
			t.Fatalf("%s did not hold", what)
		}
	}
}

// readEveryReplica reads key from each member of its volume, directly.
func readEveryReplica(t *testing.T, c *testCluster, key string, want []byte) {
	t.Helper()
	l := c.waitLeader()
	obj, blob, vol, err := l.fsm.ObjectWithBlob([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	servers, _ := l.fsm.Servers()
	for _, m := range vol.Members {
		resp, err := http.Get(fmt.Sprintf("http://%s/v1/volumes/%d/blobs/%x", servers[m].Address, blob.Volume, obj.Hash))
		if err != nil {
			t.Fatalf("member %s: %v", m, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(b, want) {
			t.Fatalf("member %s of volume %d: status %d, %d bytes", m, blob.Volume, resp.StatusCode, len(b))
		}
	}
}

// A member that dies is replaced after RepairAfter: the volume is sealed,
// copied from a live member to a new one, and every object reads back from
// every member of the new membership. When the dead server comes back,
// its stale copy is dropped.
func TestCluster_RepairReplacesALostMember(t *testing.T) {
	c := mustCluster(t, 3, func(cfg *Config) {
		cfg.DefaultCopies = 3
		cfg.RepairAfter = 2 * time.Second
		cfg.RepairInterval = 20 * time.Millisecond // rounds between a new member's heartbeats
		cfg.WritableVolumes = 1
	})
	cs := map[string]*testChunkServer{}
	for i := range 5 { // a spare beyond the replacement: a wrong repair would have a target
		id := fmt.Sprintf("cs%d", i+1)
		cs[id] = startChunkServer(t, id, "dc1", fmt.Sprintf("r%d", i+1), masterAddrs(c))
	}
	waitServers(t, c, 5)
	m := client(t, c.masters[0].APIAddr())
	bodies := map[string][]byte{}
	for i := range 40 {
		k := fmt.Sprintf("user/INBOX/%d", i)
		bodies[k] = bytes.Repeat([]byte{byte(i)}, 100+i*50)
		if err := put(t, m, k, bodies[k]); err != nil {
			t.Fatal(err)
		}
	}
	l := c.waitLeader()
	_, blob, vol, err := l.fsm.ObjectWithBlob([]byte("user/INBOX/0"))
	if err != nil {
		t.Fatal(err)
	}
	vid := raisfs.VolumeID(blob.Volume)
	victim := vol.Members[0]
	t.Logf("volume %d members %v; stopping %s", vid, vol.Members, victim)
	cs[victim].close()

	testPoll(t, 30*time.Second, "volume repaired without the dead member", func() bool {
		v, err := c.waitLeader().fsm.Volume(vid)
		return err == nil && len(v.Members) == 3 && !slices.Contains(v.Members, victim) && v.State == fsmpb.VolumeState_VOLUME_SEALED
	})
	// The new member is not mistaken for a lost one before its heartbeat
	// lists the volume: the membership stays as it is.
	v, _ := c.waitLeader().fsm.Volume(vid)
	holds(t, 3*time.Second, "the repaired membership", func() bool {
		now, err := c.waitLeader().fsm.Volume(vid)
		return err == nil && now.Epoch == v.Epoch
	})
	for k, b := range bodies {
		readEveryReplica(t, c, k, b)
		if got, err := get(t, m, k); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("get %s after repair = %v", k, err)
		}
	}
	// New puts go to a new, whole volume.
	if err := put(t, m, "after", []byte("after the repair")); err != nil {
		t.Fatal(err)
	}
	readEveryReplica(t, c, "after", []byte("after the repair"))

	// The dead server comes back with its stale copy: it is dropped, never
	// made a member again.
	back := startChunkServerDir(t, victim, "dc1", "r-back", masterAddrs(c), cs[victim].dir)
	testPoll(t, 30*time.Second, "stale copy dropped", func() bool {
		_, err := back.store.VolumeStatus(vid)
		return err != nil
	})
	if v, _ := c.waitLeader().fsm.Volume(vid); slices.Contains(v.Members, victim) {
		t.Fatalf("the stale server became a member again: %v", v.Members)
	}
}

// Draining a server under write load moves all its volumes elsewhere and
// then retires it: nothing is under-replicated and every object written
// before or during the drain reads back from every replica.
func TestCluster_DrainUnderWriteLoad(t *testing.T) {
	c := mustCluster(t, 3, func(cfg *Config) {
		cfg.DefaultCopies = 2
		cfg.RepairInterval = 200 * time.Millisecond
	})
	for i := range 4 {
		startChunkServer(t, fmt.Sprintf("cs%d", i+1), "dc1", fmt.Sprintf("r%d", i+1), masterAddrs(c))
	}
	waitServers(t, c, 4)
	m := client(t, c.masters[1].APIAddr())
	bodies := map[string][]byte{}
	putN := func(from, to int) {
		for i := from; i < to; i++ {
			k := fmt.Sprintf("k%d", i)
			b := []byte(fmt.Sprintf("message %d %s", i, bytes.Repeat([]byte("x"), i)))
			if err := put(t, m, k, b); err != nil {
				t.Errorf("put %s during the drain: %v", k, err)
				return
			}
			bodies[k] = b
		}
	}
	putN(0, 50)
	if _, err := m.Drain(ctxT(t), &masterpb.DrainRequest{Id: "cs9"}); status.Code(err) != codes.NotFound {
		t.Fatalf("drain of an unknown server = %v", err)
	}
	resp, err := m.Drain(ctxT(t), &masterpb.DrainRequest{Id: "cs1"})
	if err != nil || resp.State != "draining" {
		t.Fatalf("drain = %v, %v", resp, err)
	}
	done := make(chan struct{})
	go func() { defer close(done); putN(50, 150) }()
	testPoll(t, 60*time.Second, "cs1 retired", func() bool {
		st, err := m.Status(ctxT(t), &masterpb.StatusRequest{})
		if err != nil {
			return false
		}
		for _, cs := range st.Chunkservers {
			if cs.Id == "cs1" {
				return cs.State == "retired" && cs.Volumes == 0
			}
		}
		return false
	})
	<-done
	// Running it again changes nothing.
	if resp, err := m.Drain(ctxT(t), &masterpb.DrainRequest{Id: "cs1"}); err != nil || resp.State != "retired" {
		t.Fatalf("second drain = %v, %v", resp, err)
	}
	st, _ := m.Status(ctxT(t), &masterpb.StatusRequest{})
	if st.UnderReplicated != 0 {
		t.Fatalf("under-replicated after the drain: %d", st.UnderReplicated)
	}
	// undrain puts a retired server back in use.
	if resp, err := m.Drain(ctxT(t), &masterpb.DrainRequest{Id: "cs1", Undrain: true}); err != nil || resp.State != "alive" {
		t.Fatalf("undrain = %v, %v", resp, err)
	}
	if ss, _ := c.waitLeader().fsm.Servers(); ss["cs1"].State != fsmpb.ServerState_SERVER_ALIVE {
		t.Fatalf("cs1 after undrain: %v", ss["cs1"].State)
	}
	for k, b := range bodies {
		readEveryReplica(t, c, k, b)
	}
}

// Deleted blobs are tombstoned after a lease's life, and a volume whose
// garbage passes the threshold is compacted on its members.
func TestCluster_GarbageIsCompacted(t *testing.T) {
	c := mustCluster(t, 3, func(cfg *Config) {
		cfg.DefaultCopies = 2
		cfg.LeaseTTL = 2 * time.Second
		cfg.RepairInterval = 200 * time.Millisecond
		cfg.CompactMinBytes = 32 << 10
		cfg.WritableVolumes = 1
	})
	var css []*testChunkServer
	for i := range 2 {
		css = append(css, startChunkServer(t, fmt.Sprintf("cs%d", i+1), "dc1", fmt.Sprintf("r%d", i+1), masterAddrs(c)))
	}
	waitServers(t, c, 2)
	m := client(t, c.masters[0].APIAddr())
	for i := range 40 {
		if err := put(t, m, fmt.Sprintf("k%d", i), bytes.Repeat([]byte{byte(i)}, 4000)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 30 {
		if _, err := m.Delete(ctxT(t), &masterpb.DeleteRequest{Key: []byte(fmt.Sprintf("k%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	sizeBefore := css[0].store.Status().Volumes[0].SizeBytes
	// Deletions are carried out (after a lease's life), then the garbage
	// passes the threshold and both copies are compacted: what is left is
	// the live blobs and less garbage than the threshold.
	testPoll(t, 30*time.Second, "deletions carried out and both copies compacted", func() bool {
		if pd, _ := c.waitLeader().fsm.PendingDeletes(1, time.Time{}); len(pd) > 0 {
			return false
		}
		for _, cs := range css {
			st := cs.store.Status()
			if len(st.Volumes) != 1 || st.Volumes[0].LiveBlobs != 10 || st.Volumes[0].GarbageByte >= 32<<10 || st.Volumes[0].SizeBytes > sizeBefore/2 {
				return false
			}
		}
		return true
	})
	for i := 30; i < 40; i++ {
		readEveryReplica(t, c, fmt.Sprintf("k%d", i), bytes.Repeat([]byte{byte(i)}, 4000))
	}
}

// fsck finds a needle a member lost and an upload never committed; with
// repair the gap is filled from another member (no whole copy) and the
// orphan queued for deletion, after which fsck is clean.
func TestCluster_Fsck(t *testing.T) {
	c := mustCluster(t, 3, func(cfg *Config) {
		cfg.DefaultCopies = 2
		cfg.RepairInterval = 200 * time.Millisecond
		cfg.WritableVolumes = 1
	})
	css := startChunkServers(t, c, 3)
	m := client(t, c.masters[2].APIAddr())
	bodies := putMany(t, m, 20, 3000)
	fsck := func(repair bool) *masterpb.FsckResponse {
		t.Helper()
		r, err := m.Fsck(ctxT(t), &masterpb.FsckRequest{Repair: repair})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := fsck(false); r.Missing+r.Corrupt+r.Orphaned != 0 || r.Blobs != 20 || r.CopiesChecked != 2 || r.UnderReplicated != 0 {
		t.Fatalf("fsck of a clean cluster = %v", r)
	}

	// An upload whose commit never comes.
	orphan := []byte("uploaded, never committed")
	oh := blake3.Sum256(orphan)
	bp, err := m.BeginPut(ctxT(t), &masterpb.BeginPutRequest{Key: []byte("never"), Hash: oh[:], Size: int64(len(orphan))})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range bp.Replicas {
		req, _ := http.NewRequest("PUT", fmt.Sprintf("http://%s/v1/volumes/%d/blobs/%x", r.Address, bp.Volume, oh), bytes.NewReader(orphan))
		req.Header.Set(raisfs.LeaseHeader, bp.Lease)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("upload: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	// A member loses a needle.
	l := c.waitLeader()
	obj, blob, vol, err := l.fsm.ObjectWithBlob([]byte("k3"))
	if err != nil {
		t.Fatal(err)
	}
	var h3 raisfs.Hash
	copy(h3[:], obj.Hash)
	loser := vol.Members[0]
	if err := css[loser].store.Delete(ctxT(t), raisfs.VolumeID(blob.Volume), h3); err != nil {
		t.Fatal(err)
	}

	r := fsck(false)
	if r.Missing != 1 || r.Orphaned != 2 || len(r.Examples) == 0 {
		t.Fatalf("fsck after the damage = %v", r)
	}
	t.Logf("fsck examples: %q", r.Examples)
	r = fsck(true)
	if r.NeedlesFilled != 1 || r.CopiesQueued != 0 || r.OrphansQueued != 1 {
		t.Fatalf("fsck --repair = %v", r)
	}
	testPoll(t, 30*time.Second, "fsck clean after the repair", func() bool {
		r := fsck(false)
		return r.Missing+r.Corrupt+r.Orphaned+uint64(r.UnderReplicated) == 0
	})
	// The gap was filled: no whole copy was made.
	if v, _ := c.waitLeader().fsm.Volume(raisfs.VolumeID(blob.Volume)); !slices.Contains(v.Members, loser) || v.Epoch != vol.Epoch {
		t.Fatalf("the copy on %s was replaced (members %v, epoch %d -> %d), not filled", loser, v.Members, vol.Epoch, v.Epoch)
	}
	for k, b := range bodies {
		readEveryReplica(t, c, k, b)
	}
	// The orphan's commit is refused now (queued for deletion).
	if _, err := m.CommitPut(ctxT(t), &masterpb.CommitPutRequest{Key: []byte("never"), Hash: oh[:], Size: int64(len(orphan)), Volume: bp.Volume, Lease: bp.Lease, LeaseExpiryUnixNano: bp.LeaseExpiryUnixNano}); err == nil {
		t.Fatal("commit of a queued orphan succeeded")
	}
}

// New servers join empty; rebalance moves volumes onto them until usage
// is within the spread, with a dry run that changes nothing, and all data
// stays readable from every replica.
func TestCluster_Rebalance(t *testing.T) {
	c := mustCluster(t, 3, func(cfg *Config) {
		cfg.DefaultCopies = 2
		cfg.RepairInterval = 200 * time.Millisecond
		cfg.VolumeSizeLimit = 16 << 10 // many small volumes
	})
	for i := range 2 {
		startChunkServer(t, fmt.Sprintf("cs%d", i+1), "dc1", fmt.Sprintf("r%d", i+1), masterAddrs(c))
	}
	waitServers(t, c, 2)
	m := client(t, c.masters[0].APIAddr())
	bodies := map[string][]byte{}
	for i := range 60 {
		k := fmt.Sprintf("k%d", i)
		bodies[k] = bytes.Repeat([]byte{byte(i + 1)}, 2000)
		if err := put(t, m, k, bodies[k]); err != nil {
			t.Fatal(err)
		}
		if i%8 == 7 { // let heartbeats report the volumes' sizes
			t0 := time.Now()
			testPoll(t, 10*time.Second, "a heartbeat", func() bool {
				hb, ok := c.waitLeader().registry.get("cs1")
				return ok && hb.at.After(t0)
			})
		}
	}
	for i := 2; i < 4; i++ {
		startChunkServer(t, fmt.Sprintf("cs%d", i+1), "dc1", fmt.Sprintf("r%d", i+1), masterAddrs(c))
	}
	waitServers(t, c, 4)
	usage := func() map[string]int64 {
		st, err := m.Status(ctxT(t), &masterpb.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, cs := range st.Chunkservers {
			out[cs.Id] = cs.UsedBytes
		}
		return out
	}
	testPoll(t, 10*time.Second, "the new servers' reports", func() bool { u := usage(); _, ok := u["cs4"]; return ok })
	before := int64(0)
	for _, v := range usage() {
		before = max(before, v) // the new servers hold nothing
	}
	dry, err := m.Rebalance(ctxT(t), &masterpb.RebalanceRequest{DryRun: true, Spread: 1e-9})
	if err != nil || len(dry.Moves) == 0 || dry.SpreadAfter >= dry.SpreadBefore {
		t.Fatalf("dry run = %v, %v", dry, err)
	}
	t.Logf("plan: %d moves, spread %.3g -> %.3g", len(dry.Moves), dry.SpreadBefore, dry.SpreadAfter)
	if st, _ := m.Status(ctxT(t), &masterpb.StatusRequest{}); st.MovesPending != 0 {
		t.Fatal("a dry run queued moves")
	}
	if _, err := m.Rebalance(ctxT(t), &masterpb.RebalanceRequest{Spread: 2}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("rebalance with a bad spread = %v", err)
	}
	if _, err := m.Rebalance(ctxT(t), &masterpb.RebalanceRequest{Spread: 1e-9}); err != nil {
		t.Fatal(err)
	}
	testPoll(t, 60*time.Second, "the moves done", func() bool {
		st, err := m.Status(ctxT(t), &masterpb.StatusRequest{})
		return err == nil && st.MovesPending == 0 && st.Repairing == 0 && st.UnderReplicated == 0
	})
	spread := func(u map[string]int64) int64 {
		lo, hi := u["cs1"], u["cs1"]
		for _, v := range u {
			lo, hi = min(lo, v), max(hi, v)
		}
		return hi - lo
	}
	testPoll(t, 10*time.Second, "usage spread narrowed", func() bool {
		u := usage()
		return u["cs3"] > 0 && u["cs4"] > 0 && spread(u) < before/2
	})
	t.Logf("usage after: %v", usage())
	for k, b := range bodies {
		readEveryReplica(t, c, k, b)
	}
	if r, err := m.Fsck(ctxT(t), &masterpb.FsckRequest{}); err != nil || r.Missing+r.Orphaned+r.Corrupt != 0 {
		t.Fatalf("fsck after rebalance = %v, %v", r, err)
	}
}

// A two-data-center class puts copies in both; with every server of one
// data center gone, every object still reads back.
func TestCluster_TwoDataCenters(t *testing.T) {
	c := mustCluster(t, 3, func(cfg *Config) { cfg.RepairInterval = 200 * time.Millisecond })
	css := map[string]*testChunkServer{}
	for i := range 6 {
		id := fmt.Sprintf("cs%d", i+1)
		dc := "east"
		if i >= 3 {
			dc = "west"
		}
		css[id] = startChunkServer(t, id, dc, fmt.Sprintf("r%d", i%3), masterAddrs(c))
	}
	waitServers(t, c, 6)
	m := client(t, c.masters[0].APIAddr())
	if _, err := m.SetClass(ctxT(t), &masterpb.SetClassRequest{Name: "twodc", Copies: 2, MinDcs: 3}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("class with more data centers than copies = %v", err)
	}
	if _, err := m.SetClass(ctxT(t), &masterpb.SetClassRequest{Name: "twodc", Copies: 3, MinDcs: 2}); err != nil {
		t.Fatal(err)
	}
	bodies := map[string][]byte{}
	for i := range 30 {
		k := fmt.Sprintf("k%d", i)
		bodies[k] = bytes.Repeat([]byte{byte(i + 1)}, 1500)
		h := blake3.Sum256(bodies[k])
		ctx := ctxT(t)
		bp, err := m.BeginPut(ctx, &masterpb.BeginPutRequest{Key: []byte(k), Hash: h[:], Size: int64(len(bodies[k])), Class: "twodc"})
		if err != nil {
			t.Fatal(err)
		}
		dcs := map[string]bool{}
		for _, r := range bp.Replicas {
			dcs[map[bool]string{true: "east", false: "west"}[r.Id <= "cs3"]] = true
			req, _ := http.NewRequest("PUT", fmt.Sprintf("http://%s/v1/volumes/%d/blobs/%x", r.Address, bp.Volume, h), bytes.NewReader(bodies[k]))
			req.Header.Set(raisfs.LeaseHeader, bp.Lease)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		if len(dcs) != 2 {
			t.Fatalf("copies of %s in %d data centers: %v", k, len(dcs), bp.Replicas)
		}
		if _, err := m.CommitPut(ctx, &masterpb.CommitPutRequest{Key: []byte(k), Hash: h[:], Size: int64(len(bodies[k])), Class: "twodc", Volume: bp.Volume, Lease: bp.Lease, LeaseExpiryUnixNano: bp.LeaseExpiryUnixNano}); err != nil {
			t.Fatal(err)
		}
	}
	// The east data center is lost.
	for _, id := range []string{"cs1", "cs2", "cs3"} {
		css[id].close()
	}
	for k, b := range bodies {
		if got, err := get(t, m, k); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("get %s with the east data center down = %v", k, err)
		}
	}
}

// The leader's periodic fsck reclaims an upload that was never committed,
// with no operator involved.
func TestCluster_PeriodicFsckReclaimsOrphans(t *testing.T) {
	c := mustCluster(t, 3, func(cfg *Config) {
		cfg.DefaultCopies = 2
		cfg.FsckEvery = 300 * time.Millisecond
		cfg.LeaseTTL = 2 * time.Second
	})
	for i := range 2 {
		startChunkServer(t, fmt.Sprintf("cs%d", i+1), "dc1", fmt.Sprintf("r%d", i+1), masterAddrs(c))
	}
	waitServers(t, c, 2)
	m := client(t, c.masters[0].APIAddr())
	orphan := []byte("never committed")
	oh := blake3.Sum256(orphan)
	bp, err := m.BeginPut(ctxT(t), &masterpb.BeginPutRequest{Key: []byte("never"), Hash: oh[:], Size: int64(len(orphan))})
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, r := range bp.Replicas {
		u := fmt.Sprintf("http://%s/v1/volumes/%d/blobs/%x", r.Address, bp.Volume, oh)
		urls = append(urls, u)
		req, _ := http.NewRequest("PUT", u, bytes.NewReader(orphan))
		req.Header.Set(raisfs.LeaseHeader, bp.Lease)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("upload: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	testPoll(t, 30*time.Second, "the orphan deleted from both members", func() bool {
		for _, u := range urls {
			resp, err := http.Get(u)
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != 404 {
				return false
			}
		}
		return true
	})
}

// The leader crashes while a repair copy runs: the next leader plans the
// repair again from the replicated state, the copy is made once more
// (replacing any leftover), and the membership is committed once.
func TestCluster_LeaderCrashMidRepair(t *testing.T) {
	c := mustCluster(t, 3, func(cfg *Config) {
		cfg.DefaultCopies = 3
		cfg.RepairAfter = time.Second
		cfg.RepairInterval = 100 * time.Millisecond
		cfg.RepairBytesPerSec = 256 << 10 // a copy of the volume takes seconds
		cfg.WritableVolumes = 1
	})
	css := startChunkServers(t, c, 5)
	m := client(t, c.masters[0].APIAddr())
	bodies := putMany(t, m, 40, 30000)
	l := c.waitLeader()
	_, blob, vol, err := l.fsm.ObjectWithBlob([]byte("k0"))
	if err != nil {
		t.Fatal(err)
	}
	vid := raisfs.VolumeID(blob.Volume)
	victim := vol.Members[0]
	css[victim].close()
	testPoll(t, 30*time.Second, "a repair copy running", func() bool { return c.waitLeader().repairing.Load() > 0 })
	old := c.waitLeader()
	t.Logf("crashing leader %s mid-copy", old.ID())
	c.stop(c.index(old), true)
	testPoll(t, 60*time.Second, "the volume repaired by the next leader", func() bool {
		v, err := c.waitLeader().fsm.Volume(vid)
		return err == nil && len(v.Members) == 3 && !slices.Contains(v.Members, victim)
	})
	v, _ := c.waitLeader().fsm.Volume(vid)
	seen := map[string]bool{}
	for _, mb := range v.Members {
		if seen[mb] {
			t.Fatalf("duplicate member in %v", v.Members)
		}
		seen[mb] = true
	}
	m2 := client(t, c.waitLeader().APIAddr())
	for k, b := range bodies {
		readEveryReplica(t, c, k, b)
		if got, err := get(t, m2, k); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("get %s = %v", k, err)
		}
	}
}

// A class with a write quorum below its copies: a member that was down
// while puts went on misses them; once it is back, the leader's periodic
// fsck fills the gaps from the other members, without a whole copy.
func TestCluster_RestartedMemberCatchesUpWithoutACopy(t *testing.T) {
	c := mustCluster(t, 3, func(cfg *Config) {
		cfg.FsckEvery = 500 * time.Millisecond
		cfg.RepairAfter = time.Hour // no whole-copy repair in this test
		cfg.WritableVolumes = 1
	})
	css := startChunkServers(t, c, 3)
	m := client(t, c.masters[0].APIAddr())
	if _, err := m.SetClass(ctxT(t), &masterpb.SetClassRequest{Name: "q2", Copies: 3, WriteQuorum: 2}); err != nil {
		t.Fatal(err)
	}
	// put with quorum: acknowledged once WriteQuorum replicas have it.
	quorumPut := func(k string, body []byte) error {
		h := blake3.Sum256(body)
		bp, err := m.BeginPut(ctxT(t), &masterpb.BeginPutRequest{Key: []byte(k), Hash: h[:], Size: int64(len(body)), Class: "q2"})
		if err != nil {
			return err
		}
		ok := 0
		for _, r := range bp.Replicas {
			req, _ := http.NewRequest("PUT", fmt.Sprintf("http://%s/v1/volumes/%d/blobs/%x", r.Address, bp.Volume, h), bytes.NewReader(body))
			req.Header.Set(raisfs.LeaseHeader, bp.Lease)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					ok++
				}
			}
		}
		if uint32(ok) < bp.WriteQuorum {
			return fmt.Errorf("%d of %d replicas", ok, bp.WriteQuorum)
		}
		_, err = m.CommitPut(ctxT(t), &masterpb.CommitPutRequest{Key: []byte(k), Hash: h[:], Size: int64(len(body)), Class: "q2", Volume: bp.Volume, Lease: bp.Lease, LeaseExpiryUnixNano: bp.LeaseExpiryUnixNano})
		return err
	}
	bodies := map[string][]byte{}
	for i := range 5 {
		k := fmt.Sprintf("before%d", i)
		bodies[k] = bytes.Repeat([]byte{byte(i + 1)}, 2000)
		if err := quorumPut(k, bodies[k]); err != nil {
			t.Fatal(err)
		}
	}
	l := c.waitLeader()
	_, _, vol, err := l.fsm.ObjectWithBlob([]byte("before0"))
	if err != nil {
		t.Fatal(err)
	}
	down := vol.Members[2]
	css[down].close()
	for i := range 10 { // acknowledged by the two others; not on the down member
		k := fmt.Sprintf("during%d", i)
		bodies[k] = bytes.Repeat([]byte{byte(100 + i)}, 2000)
		if err := quorumPut(k, bodies[k]); err != nil {
			t.Fatalf("put %s with a member down: %v", k, err)
		}
	}
	css[down] = startChunkServerDir(t, down, "dc1", "r-back", masterAddrs(c), css[down].dir)
	testPoll(t, 30*time.Second, "the restarted member to hold every blob", func() bool {
		for k := range bodies {
			_, blob, _, err := c.waitLeader().fsm.ObjectWithBlob([]byte(k))
			if err != nil {
				return false
			}
			var h raisfs.Hash
			obj, _ := c.waitLeader().fsm.Object([]byte(k))
			copy(h[:], obj.Hash)
			if _, err := css[down].store.Get(ctxT(t), raisfs.VolumeID(blob.Volume), h); err != nil {
				return false
			}
		}
		return true
	})
	if v, _ := c.waitLeader().fsm.Volume(mustVolume(t, c, "before0")); v.Epoch != vol.Epoch {
		t.Fatalf("membership changed (epoch %d -> %d): a whole copy was made", vol.Epoch, v.Epoch)
	}
	for k, b := range bodies {
		readEveryReplica(t, c, k, b)
	}
}

func mustVolume(t *testing.T, c *testCluster, key string) raisfs.VolumeID {
	_, blob, _, err := c.waitLeader().fsm.ObjectWithBlob([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return raisfs.VolumeID(blob.Volume)
}
