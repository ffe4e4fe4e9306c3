package master

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/blake3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raisfs/raisfs/api/blobbatch"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/internal/rpcerr"
	"github.com/raisfs/raisfs/raftfsm"
)

// BeginPuts places a batch in one volume and answers each item on its
// own; CommitPuts commits each item on its own, and dedups items with
// volume 0 only onto stored blobs. Through a follower, which forwards.
// Twice: with every master on this build (the puts travel in one
// PutObjects entry) and with one announcing an older build (one entry per
// put).
func TestCluster_BatchPuts(t *testing.T) {
	for _, older := range []bool{false, true} {
		t.Run(fmt.Sprintf("older=%v", older), func(t *testing.T) { testBatchPuts(t, older) })
	}
}

func testBatchPuts(t *testing.T, older bool) {
	c := mustCluster(t, 3, func(cfg *Config) {
		if older && cfg.ID == "m3" {
			cfg.opsVersion = raftfsm.OpsPutObjects - 1
		}
	})
	for i := range 3 {
		startChunkServer(t, fmt.Sprintf("cs%d", i+1), "dc1", fmt.Sprintf("r%d", i+1), masterAddrs(c))
	}
	waitServers(t, c, 3)
	testPoll(t, 10*time.Second, "every master announced", func() bool {
		ms, err := c.waitLeader().fsm.Masters()
		if err != nil {
			return false
		}
		for id, m := range ms {
			want := uint32(raftfsm.OpsVersion)
			if older && id == "m3" {
				want = raftfsm.OpsPutObjects - 1
			}
			if m.OpsVersion != want {
				return false
			}
		}
		return len(ms) == 3
	})
	if err := c.waitLeader().opsReady(raftfsm.OpsPutObjects); (err == nil) == older {
		t.Fatalf("opsReady(PutObjects) = %v with an older master: %v", err, older)
	}
	m := client(t, c.follower().APIAddr())
	ctx := ctxT(t)

	stored := []byte("stored under its key already")
	if err := put(t, m, "held", stored); err != nil {
		t.Fatal(err)
	}
	bodies := [][]byte{[]byte("one"), []byte("two"), stored, []byte("three"), []byte("conflicting")}
	keys := []string{"b/1", "b/2", "b/dedup", "b/3", "held"}
	req := &masterpb.BeginPutsRequest{}
	for i, b := range bodies {
		h := blake3.Sum256(b)
		req.Puts = append(req.Puts, &masterpb.BeginPutRequest{Key: []byte(keys[i]), Hash: h[:], Size: int64(len(b))})
	}
	req.Puts = append(req.Puts, &masterpb.BeginPutRequest{Key: []byte(""), Hash: []byte("short"), Size: 1})
	begun, err := m.BeginPuts(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	res := begun.Results
	if len(res) != len(req.Puts) {
		t.Fatalf("%d results for %d puts", len(res), len(req.Puts))
	}
	for _, i := range []int{0, 1, 3} {
		if res[i].Error != nil || res[i].Put.Volume == 0 || res[i].Put.Volume != res[0].Put.Volume {
			t.Fatalf("item %d: %v; want a lease in volume %d like item 0", i, res[i], res[0].Put.GetVolume())
		}
	}
	if !res[2].Put.GetDedup() || res[2].Put.GetStored() {
		t.Fatalf("content stored under another key: %v, want dedup (not bound yet)", res[2])
	}
	if res[4].Error == nil || res[4].Error.Reason != masterpb.ReasonConflict {
		t.Fatalf("other content under a bound key: %v, want a conflict", res[4])
	}
	if res[5].Error == nil || res[5].Error.Reason != masterpb.ReasonInvalidArgument {
		t.Fatalf("malformed item: %v, want invalid argument", res[5])
	}

	// Upload items 0 and 3 (not 1) in one batch request per replica.
	bp := res[0].Put
	var items []blobbatch.Item
	for _, i := range []int{0, 3} {
		items = append(items, blobbatch.Item{Hash: blake3.Sum256(bodies[i]), Lease: res[i].Put.Lease, Body: bodies[i]})
	}
	enc, err := blobbatch.Encode(items)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range bp.Replicas {
		resp, err := http.Post(fmt.Sprintf("http://%s/v1/volumes/%d/blobs", r.Address, bp.Volume), blobbatch.ContentType, bytes.NewReader(enc))
		if err != nil {
			t.Fatal(err)
		}
		var out blobbatch.Response
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(out.Results) != 2 || out.Results[0].Status != 201 || out.Results[1].Status != 201 {
			t.Fatalf("batch upload to %s: %d %+v %v", r.Id, resp.StatusCode, out, err)
		}
	}
	commit := func(i int, vol uint64, lease string, expiry int64) *masterpb.CommitPutRequest {
		h := blake3.Sum256(bodies[i])
		return &masterpb.CommitPutRequest{Key: []byte(keys[i]), Hash: h[:], Size: int64(len(bodies[i])), Volume: vol, Lease: lease, LeaseExpiryUnixNano: expiry}
	}
	lease := func(i int) (uint64, string, int64) {
		return res[i].Put.Volume, res[i].Put.Lease, res[i].Put.LeaseExpiryUnixNano
	}
	v0, l0, e0 := lease(0)
	v3, l3, e3 := lease(3)
	_, _, e1 := lease(1)
	ghost := []byte("never stored anywhere")
	gh := blake3.Sum256(ghost)
	creq := &masterpb.CommitPutsRequest{Puts: []*masterpb.CommitPutRequest{
		commit(0, v0, l0, e0),
		commit(3, v3, l3, e3),
		commit(2, 0, "", 0),   // dedup onto the stored blob: no lease needed
		commit(1, v0, l0, e1), // item 0's lease for item 1's blob
		{Key: []byte("b/ghost"), Hash: gh[:], Size: int64(len(ghost))}, // volume 0, no such blob
	}}
	committed, err := m.CommitPuts(ctx, creq)
	if err != nil {
		t.Fatal(err)
	}
	cr := committed.Results
	for i := range 3 {
		if cr[i].Error != nil || !cr[i].Created {
			t.Fatalf("commit item %d: %v, want created", i, cr[i])
		}
	}
	if cr[3].Error == nil || cr[3].Error.Reason != masterpb.ReasonPermission {
		t.Fatalf("commit with another blob's lease: %v, want permission denied", cr[3])
	}
	if cr[4].Error == nil {
		t.Fatalf("dedup commit of a blob nobody stored: %v, want an error", cr[4])
	}
	for _, i := range []int{0, 2, 3} {
		got, err := get(t, m, keys[i])
		if err != nil || !bytes.Equal(got, bodies[i]) {
			t.Fatalf("%s reads %q, %v; want %q", keys[i], got, err, bodies[i])
		}
	}
	for _, k := range []string{"b/2", "b/ghost"} {
		if _, err := get(t, m, k); status.Code(err) != codes.NotFound {
			t.Fatalf("%s: %v, want not found (its commit failed)", k, err)
		}
	}
	// Retrying the whole commit is harmless (idempotent items).
	again, err := m.CommitPuts(ctx, &masterpb.CommitPutsRequest{Puts: creq.Puts[:3]})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range again.Results {
		if r.Error != nil || r.Created {
			t.Fatalf("retried commit item %d: %v, want done before", i, r)
		}
	}
	// Too many items at once is refused whole.
	big := &masterpb.CommitPutsRequest{Puts: make([]*masterpb.CommitPutRequest, maxBatch+1)}
	for i := range big.Puts {
		big.Puts[i] = creq.Puts[0]
	}
	if _, err := m.CommitPuts(ctx, big); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("%d items: %v, want InvalidArgument", len(big.Puts), err)
	}
	if e := rpcerr.FromItem(cr[3].Error); e == nil || !strings.Contains(e.Error(), "lease") {
		t.Fatalf("item error decodes to %v", e)
	}
}
