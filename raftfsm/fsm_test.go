package raftfsm

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"time"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// harness feeds an FSM numbered entries, as Raft would.
type harness struct {
	t    *testing.T
	f    *FSM
	next uint64
	now  int64
}

func mustOpenFSM(t *testing.T, path string) *FSM {
	t.Helper()
	f, err := Open(path, nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, f: mustOpenFSM(t, filepath.Join(t.TempDir(), "state.db")), next: 1, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}
	h.ok(&fsmpb.InitCluster{LeaseKey: bytes.Repeat([]byte{7}, 32), DefaultClass: &fsmpb.ReplicationClass{Name: DefaultClass, Copies: 3, WriteQuorum: 2}})
	for _, id := range []string{"cs1", "cs2", "cs3"} {
		h.ok(&fsmpb.UpsertServer{Id: id, Address: id + ":1", Dc: "dc1", Rack: "r-" + id})
	}
	return h
}

func (h *harness) apply(op any) Result {
	h.t.Helper()
	data, err := Encode(h.now, op)
	if err != nil {
		h.t.Fatal(err)
	}
	r := h.f.Apply([]Entry{{Index: h.next, Data: data}})
	h.next++
	return r[0]
}

func (h *harness) ok(op any) Result {
	h.t.Helper()
	r := h.apply(op)
	if r.Err != nil {
		h.t.Fatalf("apply %T = %v", op, r.Err)
	}
	return r
}

// rejected applies op, expects a rejection wrapping want, and checks that
// the state did not change.
func (h *harness) rejected(op any, want error) {
	h.t.Helper()
	before, _ := h.f.Dump()
	r := h.apply(op)
	if !errors.Is(r.Err, want) {
		h.t.Fatalf("apply %T = %v, want %v", op, r.Err, want)
	}
	after, _ := h.f.Dump()
	// Only the applied index may move.
	if stripApplied(before) != stripApplied(after) {
		h.t.Fatalf("rejected %T changed the state", op)
	}
}

func stripApplied(dump string) string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if !strings.HasPrefix(l, fmt.Sprintf("%x=", keyApplied)) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func hashOf(s string) []byte {
	h := make([]byte, raisfs.HashSize)
	copy(h, s)
	return h
}

func (h *harness) volume() uint64 {
	r := h.ok(&fsmpb.CreateVolume{Members: []string{"cs1", "cs2", "cs3"}, Class: DefaultClass})
	h.ok(&fsmpb.SetVolumeState{Id: uint64(r.VolumeID), State: fsmpb.VolumeState_VOLUME_WRITABLE})
	return uint64(r.VolumeID)
}

func (h *harness) lease() int64 { return h.now + int64(time.Minute) }

func TestFSM_PutDedupDeleteLifecycle(t *testing.T) {
	h := newHarness(t)
	vol := h.volume()
	a := hashOf("A")
	put := func(key string, hash []byte, vol uint64) *fsmpb.PutObject {
		return &fsmpb.PutObject{Key: []byte(key), Hash: hash, Size: 100, Volume: vol, LeaseExpiryUnixNano: h.lease()}
	}
	if r := h.ok(put("k1", a, vol)); !r.Created {
		t.Fatal("first put not Created")
	}
	if r := h.ok(put("k1", a, vol)); r.Created {
		t.Fatal("retried put Created again")
	}
	h.rejected(put("k1", hashOf("B"), vol), raisfs.ErrConflict)
	h.ok(put("k2", a, 0)) // dedup: no bytes moved
	if b, _ := h.f.Blob(a); b.Refs != 2 || b.Volume != vol {
		t.Fatalf("blob after dedup = %v", b)
	}
	if s := h.f.Stats(); s.Objects != 2 || s.Bytes != 200 || s.Blobs != 1 || s.BlobBytes != 100 {
		t.Fatalf("stats = %+v", s)
	}
	h.ok(&fsmpb.DeleteObject{Key: []byte("k1")})
	if b, _ := h.f.Blob(a); b.Refs != 1 {
		t.Fatalf("refs after one delete = %d", b.Refs)
	}
	h.rejected(&fsmpb.DeleteObject{Key: []byte("k1")}, raisfs.ErrNotFound)
	h.ok(&fsmpb.DeleteObject{Key: []byte("k2")})
	if _, err := h.f.Blob(a); !errors.Is(err, raisfs.ErrNotFound) {
		t.Fatalf("blob after last delete: %v", err)
	}
	pd, _ := h.f.PendingDeletes(10, time.Time{})
	if len(pd) != 1 || pd[0].Volume != raisfs.VolumeID(vol) || !bytes.Equal(pd[0].Hash[:], a) {
		t.Fatalf("pending deletes = %v", pd)
	}
	// fsck queues orphans: never a blob that lives in that volume.
	h.rejected(&fsmpb.QueueDelete{Hash: hashOf("live"), Volume: 0}, raisfs.ErrInvalidArgument)
	if young, _ := h.f.PendingDeletes(10, time.Unix(0, 1)); len(young) != 0 {
		t.Fatalf("deletions queued after the cut-off were listed: %v", young)
	}
	// The race the design must survive: a put that dedups onto a blob
	// whose last key just went must not point at bytes being deleted.
	h.rejected(put("k3", a, 0), ErrBlobGone)
	h.rejected(put("k3", a, vol), ErrBlobBeingDeleted)
	other := h.volume()
	h.ok(put("k3", a, other)) // uploaded again, elsewhere
	h.ok(&fsmpb.BlobGone{Hash: a, Volume: vol})
	if pd, _ := h.f.PendingDeletes(10, time.Time{}); len(pd) != 0 {
		t.Fatalf("pending after BlobGone = %v", pd)
	}
	if b, _ := h.f.Blob(a); b.Volume != other || b.Refs != 1 {
		t.Fatalf("re-uploaded blob = %v", b)
	}
	if s := h.f.Stats(); s.Objects != 1 || s.Blobs != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestFSM_RejectsBadCommands(t *testing.T) {
	h := newHarness(t)
	vol := h.volume()
	good := func() *fsmpb.PutObject {
		return &fsmpb.PutObject{Key: []byte("k"), Hash: hashOf("A"), Size: 1, Volume: vol, LeaseExpiryUnixNano: h.lease()}
	}
	p := good()
	p.Key = nil
	h.rejected(p, raisfs.ErrInvalidArgument)
	p = good()
	p.Key = bytes.Repeat([]byte("k"), MaxKeyLen+1)
	h.rejected(p, raisfs.ErrInvalidArgument)
	p = good()
	p.Hash = []byte("short")
	h.rejected(p, raisfs.ErrInvalidArgument)
	p = good()
	p.Size = -1
	h.rejected(p, raisfs.ErrInvalidArgument)
	p = good()
	p.LeaseExpiryUnixNano = h.now - 1
	h.rejected(p, raisfs.ErrLeaseExpired)
	p = good()
	p.Volume = 999
	h.rejected(p, raisfs.ErrNotFound)
	h.rejected(&fsmpb.CreateVolume{Members: []string{"cs1", "nosuch"}}, raisfs.ErrNotFound)
	h.rejected(&fsmpb.CreateVolume{Members: []string{"cs1", "cs1"}}, raisfs.ErrInvalidArgument)
	h.rejected(&fsmpb.CreateVolume{}, raisfs.ErrInvalidArgument)
	h.rejected(&fsmpb.UpsertServer{Id: "../x", Address: "a:1"}, raisfs.ErrInvalidArgument)
	h.rejected(&fsmpb.SetServerState{Id: "nosuch", State: fsmpb.ServerState_SERVER_DOWN}, raisfs.ErrNotFound)
	h.rejected(&fsmpb.SetVolumeState{Id: 999, State: fsmpb.VolumeState_VOLUME_SEALED}, raisfs.ErrNotFound)
	h.rejected(&fsmpb.SetClass{Class: &fsmpb.ReplicationClass{Name: "x", Copies: 2, WriteQuorum: 3}}, raisfs.ErrInvalidArgument)
	// A second InitCluster (a new leader) changes nothing.
	before, _ := h.f.Dump()
	h.ok(&fsmpb.InitCluster{LeaseKey: bytes.Repeat([]byte{9}, 32), DefaultClass: &fsmpb.ReplicationClass{Name: DefaultClass, Copies: 1}})
	after, _ := h.f.Dump()
	if stripApplied(before) != stripApplied(after) || !bytes.Equal(h.f.LeaseKey(), bytes.Repeat([]byte{7}, 32)) {
		t.Fatal("second InitCluster changed the state")
	}
}

func TestFSM_MalformedEntriesPanic(t *testing.T) {
	h := newHarness(t)
	for name, data := range map[string][]byte{
		"garbage":      {0xff, 0xff, 0xff},
		"newer":        mustMarshalVersion(t, CommandVersion+1),
		"no version":   mustMarshalVersion(t, 0),
		"no operation": mustMarshalVersion(t, CommandVersion),
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s entry applied without panic", name)
				}
			}()
			h.f.Apply([]Entry{{Index: h.next, Data: data}})
		}()
	}
}

func mustMarshalVersion(t *testing.T, v uint32) []byte {
	b, err := Encode(1, &fsmpb.DeleteObject{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	var cmd fsmpb.Command
	unmarshal(t, b, &cmd)
	cmd.Version = v
	if v == CommandVersion {
		cmd.Op = nil
	}
	return marshal(t, &cmd)
}

// Restart without double apply: after a restart, Raft may hand the FSM
// entries it has already applied (everything after the last snapshot).
// They must be skipped, so a refcount is not incremented twice.
func TestFSM_RestartDoesNotReapply(t *testing.T) {
	dir := t.TempDir()
	var entries []Entry
	now := time.Now().UnixNano()
	add := func(op any) {
		b, err := Encode(now, op)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, Entry{Index: uint64(len(entries) + 1), Data: b})
	}
	add(&fsmpb.InitCluster{LeaseKey: bytes.Repeat([]byte{1}, 32), DefaultClass: &fsmpb.ReplicationClass{Name: DefaultClass, Copies: 1}})
	add(&fsmpb.UpsertServer{Id: "cs1", Address: "a:1"})
	add(&fsmpb.CreateVolume{Members: []string{"cs1"}})
	for i := range 20 {
		add(&fsmpb.PutObject{Key: []byte(fmt.Sprintf("k%02d", i)), Hash: hashOf("same"), Size: 10, Volume: 1, LeaseExpiryUnixNano: now + 1e12})
	}
	add(&fsmpb.DeleteObject{Key: []byte("k00")})

	once := mustOpenFSM(t, filepath.Join(dir, "once.db"))
	once.Apply(entries)
	want, _ := once.Dump()

	path := filepath.Join(dir, "restarted.db")
	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Apply(entries[:10]) // applied in batches of different sizes
	f.Apply(entries[10:15])
	f.Close()
	f = mustOpenFSM(t, path)
	rs := f.Apply(entries) // replay everything, as after a restart
	for i, r := range rs {
		if (i < 15) != r.Skipped {
			t.Fatalf("entry %d: skipped = %v", i+1, r.Skipped)
		}
	}
	got, _ := f.Dump()
	if got != want {
		t.Fatalf("state after restart and replay differs from applying once")
	}
	if b, _ := f.Blob(hashOf("same")); b.Refs != 19 {
		t.Fatalf("refs = %d, want 19", b.Refs)
	}
	if f.AppliedIndex() != uint64(len(entries)) {
		t.Fatalf("applied index = %d", f.AppliedIndex())
	}
}

func TestFSM_SnapshotRestore(t *testing.T) {
	h := newHarness(t)
	vol := h.volume()
	for i := range 50 {
		h.ok(&fsmpb.PutObject{Key: []byte(fmt.Sprintf("k%d", i)), Hash: hashOf(fmt.Sprint(i % 7)), Size: 5, Volume: vol, LeaseExpiryUnixNano: h.lease()})
	}
	want, _ := h.f.Dump()
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Applies after the snapshot do not leak into it.
	h.ok(&fsmpb.DeleteObject{Key: []byte("k1")})
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if snap.Index() != h.next-2 {
		t.Fatalf("snapshot index = %d, want %d", snap.Index(), h.next-2)
	}
	snap.Release()
	snap.Release() // idempotent

	other := mustOpenFSM(t, filepath.Join(t.TempDir(), "other.db"))
	if err := other.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	if got, _ := other.Dump(); got != want {
		t.Fatal("restored state differs from the snapshot's")
	}
	// A bad stream leaves the state as it was.
	before, _ := other.Dump()
	if err := other.Restore(strings.NewReader("not a snapshot")); err == nil {
		t.Fatal("garbage restored")
	}
	if err := other.Restore(bytes.NewReader(buf.Bytes()[:4096])); err == nil {
		t.Fatal("truncated snapshot restored")
	}
	if got, _ := other.Dump(); got != before {
		t.Fatal("failed restore changed the state")
	}
	// Restore over a state with more in it replaces, not merges.
	if err := h.f.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.f.Dump(); got != want {
		t.Fatal("restore did not replace the state")
	}
}

func TestFSM_ListPrefixAndPages(t *testing.T) {
	h := newHarness(t)
	vol := h.volume()
	for _, k := range []string{"a/1", "a/2", "a/3", "b/1", "a/10", "ab"} {
		h.ok(&fsmpb.PutObject{Key: []byte(k), Hash: hashOf(k), Size: 1, Volume: vol, LeaseExpiryUnixNano: h.lease()})
	}
	var got []string
	var after []byte
	for {
		page, more, err := h.f.List([]byte("a/"), after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page {
			got = append(got, string(o.Key))
			after = o.Key
		}
		if !more {
			break
		}
	}
	if strings.Join(got, ",") != "a/1,a/10,a/2,a/3" {
		t.Fatalf("list a/ = %v", got)
	}
}

func TestFSM_VolumesAndServers(t *testing.T) {
	h := newHarness(t)
	v1, v2 := h.volume(), h.volume()
	if v1 != 1 || v2 != 2 {
		t.Fatalf("volume ids = %d, %d", v1, v2)
	}
	h.ok(&fsmpb.SetVolumeState{Id: v1, Members: []string{"cs2", "cs3", "cs1"}})
	v, _ := h.f.Volume(raisfs.VolumeID(v1))
	if v.Epoch != 2 || v.State != fsmpb.VolumeState_VOLUME_WRITABLE || v.Members[0] != "cs2" {
		t.Fatalf("volume after membership change = %v", v)
	}
	// A change planned at an older epoch is refused and changes nothing.
	h.rejected(&fsmpb.SetVolumeState{Id: v1, Members: []string{"cs9"}, Epoch: 1, IfEpoch: true}, raisfs.ErrConflict)
	h.ok(&fsmpb.SetVolumeState{Id: v1, Members: []string{"cs2", "cs3", "cs4"}, Epoch: 2, IfEpoch: true})
	if v, _ := h.f.Volume(raisfs.VolumeID(v1)); v.Epoch != 3 || v.Members[2] != "cs4" {
		t.Fatalf("volume after conditional change = %v", v)
	}
	h.ok(&fsmpb.SetVolumeState{Id: v1, Members: []string{"cs2", "cs3", "cs1"}, Epoch: 3, IfEpoch: true})
	h.ok(&fsmpb.SetServerState{Id: "cs2", State: fsmpb.ServerState_SERVER_DOWN})
	h.ok(&fsmpb.UpsertServer{Id: "cs2", Address: "new:2", Dc: "dc1", Rack: "r"}) // it came back
	ss, _ := h.f.Servers()
	if s := ss["cs2"]; s.State != fsmpb.ServerState_SERVER_ALIVE || s.Address != "new:2" {
		t.Fatalf("server after re-register = %v", s)
	}
	h.ok(&fsmpb.SetServerState{Id: "cs3", State: fsmpb.ServerState_SERVER_DRAINING})
	h.ok(&fsmpb.UpsertServer{Id: "cs3", Address: "cs3:1"})
	if ss, _ := h.f.Servers(); ss["cs3"].State != fsmpb.ServerState_SERVER_DRAINING {
		t.Fatal("re-registering a draining server undrained it")
	}
	h.ok(&fsmpb.SetMaster{Id: "m1", ApiAddress: "127.0.0.1:1"})
	if ms, _ := h.f.Masters(); ms["m1"].APIAddress != "127.0.0.1:1" {
		t.Fatalf("masters = %v", ms)
	}
}

func TestFSM_PlacementVersion(t *testing.T) {
	h := newHarness(t)
	v0 := h.f.PlacementVersion()
	vol := h.volume()
	v1 := h.f.PlacementVersion()
	if v1 == v0 {
		t.Fatal("creating a volume did not change the placement version")
	}
	h.ok(&fsmpb.PutObject{Key: []byte("k"), Hash: hashOf("A"), Size: 1, Volume: vol, LeaseExpiryUnixNano: h.lease()})
	h.ok(&fsmpb.DeleteObject{Key: []byte("k")})
	if h.f.PlacementVersion() != v1 {
		t.Fatal("object commands changed the placement version")
	}
	h.ok(&fsmpb.SetServerState{Id: "cs1", State: fsmpb.ServerState_SERVER_DRAINING})
	if h.f.PlacementVersion() == v1 {
		t.Fatal("a server state change did not change the placement version")
	}
}

// fsck's orphan deletions: a needle no blob record points at is queued; a
// live blob of that volume never is; a put of the queued hash into that
// volume is refused until the deletion is done.
func TestFSM_QueueDeleteOrphans(t *testing.T) {
	h := newHarness(t)
	vol, other := h.volume(), h.volume()
	live := hashOf("live")
	h.ok(&fsmpb.PutObject{Key: []byte("k"), Hash: live, Size: 4, Volume: vol, LeaseExpiryUnixNano: h.lease()})
	h.rejected(&fsmpb.QueueDelete{Hash: live, Volume: vol}, raisfs.ErrConflict)
	h.ok(&fsmpb.QueueDelete{Hash: live, Volume: other}) // a stray copy elsewhere
	orphan := hashOf("orphan")
	h.ok(&fsmpb.QueueDelete{Hash: orphan, Volume: vol})
	h.ok(&fsmpb.QueueDelete{Hash: orphan, Volume: vol}) // idempotent
	if pd, _ := h.f.PendingDeletes(10, time.Time{}); len(pd) != 2 {
		t.Fatalf("pending = %v", pd)
	}
	h.rejected(&fsmpb.PutObject{Key: []byte("k2"), Hash: orphan, Size: 4, Volume: vol, LeaseExpiryUnixNano: h.lease()}, ErrBlobBeingDeleted)
	if b, _ := h.f.Blob(live); b.Volume != vol || b.Refs != 1 {
		t.Fatalf("live blob after queueing a stray copy = %v", b)
	}
	n := 0
	h.f.ForEachBlob(func(hh raisfs.Hash, b *fsmpb.Blob) bool {
		n++
		if !bytes.Equal(hh[:], live) {
			t.Fatalf("unexpected blob %s", hh)
		}
		return true
	})
	if n != 1 {
		t.Fatalf("ForEachBlob saw %d blobs", n)
	}
}

// Found by the chaos harness (seed 4, the leader killed mid-commit): a
// commit whose answer was lost was retried after another client had
// deleted the key, and bound the key a second time, a put that took effect
// twice. The retried commit is now recognised within its lease.
func TestFSM_RetriedCommitAppliesOnce(t *testing.T) {
	h := newHarness(t)
	vol := h.volume()
	commit := &fsmpb.PutObject{Key: []byte("k"), Hash: hashOf("A"), Size: 1, Volume: vol, LeaseExpiryUnixNano: h.lease()}
	if r := h.ok(commit); !r.Created {
		t.Fatal("first commit not created")
	}
	h.ok(&fsmpb.DeleteObject{Key: []byte("k")})
	if r := h.ok(commit); r.Created {
		t.Fatal("the retried commit bound the key again")
	}
	if _, err := h.f.Object([]byte("k")); !errors.Is(err, raisfs.ErrNotFound) {
		t.Fatalf("key after the retried commit: %v", err)
	}
	// Another upload of the same content under the key (a new lease, and
	// another volume: the first copy is being deleted) is a new put.
	again := &fsmpb.PutObject{Key: []byte("k"), Hash: hashOf("A"), Size: 1, Volume: h.volume(), LeaseExpiryUnixNano: h.lease() + 1}
	if r := h.ok(again); !r.Created {
		t.Fatal("a new put of the same content was not created")
	}
	// Once the lease is over, a commit under it is refused, and the next
	// commit drops the expired markers.
	h.now = commit.LeaseExpiryUnixNano + 1
	h.rejected(&fsmpb.PutObject{Key: []byte("k2"), Hash: hashOf("B"), Size: 1, Volume: vol, LeaseExpiryUnixNano: commit.LeaseExpiryUnixNano}, raisfs.ErrLeaseExpired)
	h.ok(&fsmpb.PutObject{Key: []byte("k3"), Hash: hashOf("C"), Size: 1, Volume: vol, LeaseExpiryUnixNano: h.lease() + 2})
	n := 0
	h.f.view(func(tx *bolt.Tx) error { n = tx.Bucket(bucketCommits).Stats().KeyN; return nil })
	if n != 2 { // the last two puts', within their leases
		t.Fatalf("%d commit markers after the lease, want 2", n)
	}
}

// A PutObjects entry applies its puts exactly as the same puts in entries
// of their own would: same results, in order, and the same state.
func TestFSM_PutObjectsIsPutsInOrder(t *testing.T) {
	one, many := newHarness(t), newHarness(t)
	vol := one.volume()
	if v := many.volume(); v != vol {
		t.Fatalf("volumes %d and %d", vol, v)
	}
	put := func(key, content string, vol uint64, expiry int64) *fsmpb.PutObject {
		return &fsmpb.PutObject{Key: []byte(key), Hash: hashOf(content), Size: 10, Volume: vol, LeaseExpiryUnixNano: expiry}
	}
	lease := one.lease()
	puts := []*fsmpb.PutObject{
		put("k1", "A", vol, lease),
		put("k2", "A", 0, 0),           // dedup onto the blob the put before stored
		put("k1", "B", vol, lease),     // conflict
		put("k3", "C", vol, one.now-1), // lease expired
		put("k1", "A", vol, lease),     // retry: done already
		put("k4", "D", 0, 0),           // dedup onto nothing
		put("k5", "E", vol, lease),
	}
	r := one.ok(&fsmpb.PutObjects{Puts: puts})
	if len(r.Items) != len(puts) {
		t.Fatalf("%d results for %d puts", len(r.Items), len(puts))
	}
	for i, p := range puts {
		w := many.apply(p)
		g := r.Items[i]
		if g.Created != w.Created || (g.Err == nil) != (w.Err == nil) || g.Err != nil && g.Err.Error() != w.Err.Error() {
			t.Errorf("put %d (%s): batched {%v %v}, alone {%v %v}", i, p.Key, g.Created, g.Err, w.Created, w.Err)
		}
	}
	if !r.Items[0].Created || !r.Items[1].Created || r.Items[2].Err == nil || !errors.Is(r.Items[3].Err, raisfs.ErrLeaseExpired) ||
		r.Items[4].Created || r.Items[4].Err != nil || r.Items[5].Err == nil || !r.Items[6].Created {
		t.Fatalf("results %+v", r.Items)
	}
	a, _ := one.f.Dump()
	b, _ := many.f.Dump()
	if stripApplied(a) != stripApplied(b) {
		t.Fatalf("state after one PutObjects differs from the same puts one by one:\n%s\n---\n%s", a, b)
	}
}
