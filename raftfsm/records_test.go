package raftfsm

import (
	"bytes"
	"testing"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/txnpb"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

func put(k, v string) *txnpb.TxnOp {
	return &txnpb.TxnOp{Op: &txnpb.TxnOp_Put{Put: &txnpb.RecordPut{Key: []byte(k), Value: []byte(v)}}}
}

func TestTxn_ComparesAndVersions(t *testing.T) {
	h := newHarness(t)
	r := h.ok(&txnpb.Txn{Compares: []*txnpb.Compare{{Key: []byte("mb/a"), Version: 0}}, Ops: []*txnpb.TxnOp{put("mb/a", "1"), put("mb/b", "x")}})
	v1 := r.Revision
	if v1 == 0 {
		t.Fatal("no revision")
	}
	got, ok, _ := h.f.Record([]byte("mb/a"))
	if !ok || string(got.Value) != "1" || got.Version != v1 {
		t.Fatalf("record = %+v %v", got, ok)
	}
	// A stale compare changes nothing, not even the other ops.
	h.rejected(&txnpb.Txn{Compares: []*txnpb.Compare{{Key: []byte("mb/a"), Version: 0}}, Ops: []*txnpb.TxnOp{put("mb/c", "2")}}, raisfs.ErrCompareFailed)
	h.rejected(&txnpb.Txn{Compares: []*txnpb.Compare{{Key: []byte("mb/a"), Version: v1 + 1}}, Ops: []*txnpb.TxnOp{put("mb/c", "2")}}, raisfs.ErrCompareFailed)
	r = h.ok(&txnpb.Txn{Compares: []*txnpb.Compare{{Key: []byte("mb/a"), Version: v1}}, Ops: []*txnpb.TxnOp{put("mb/a", "2")}})
	if r.Revision <= v1 {
		t.Fatalf("revision %d after %d", r.Revision, v1)
	}
	// Delete and re-create: the version never comes back, so a compare
	// made before the delete fails.
	v2 := r.Revision
	h.ok(&txnpb.Txn{Ops: []*txnpb.TxnOp{{Op: &txnpb.TxnOp_Delete{Delete: []byte("mb/a")}}}})
	if _, ok, _ := h.f.Record([]byte("mb/a")); ok {
		t.Fatal("deleted record still there")
	}
	h.ok(&txnpb.Txn{Ops: []*txnpb.TxnOp{put("mb/a", "3")}})
	h.rejected(&txnpb.Txn{Compares: []*txnpb.Compare{{Key: []byte("mb/a"), Version: v2}}, Ops: []*txnpb.TxnOp{put("mb/c", "2")}}, raisfs.ErrCompareFailed)

	recs, more, next, rev, err := h.f.Records([]byte("mb/"), nil, 1, 1<<20, 0)
	if err != nil || len(recs) != 1 || !more || string(recs[0].Key) != "mb/a" || string(next) != "mb/a" || rev < v2 {
		t.Fatalf("Records = %+v %v %q %d %v", recs, more, next, rev, err)
	}
	if recs, more, _, _, _ := h.f.Records([]byte("mb/"), nil, 10, 1, 0); len(recs) != 1 || !more {
		t.Fatalf("Records with a byte limit = %+v %v, want one record and more", recs, more)
	}
	recs, more, _, _, _ = h.f.Records([]byte("mb/"), recs[0].Key, 10, 1<<20, 0)
	if len(recs) != 1 || more || string(recs[0].Key) != "mb/b" {
		t.Fatalf("Records after = %+v %v", recs, more)
	}
	// Only what changed after a revision: mb/a was written last.
	recs, more, _, _, _ = h.f.Records([]byte("mb/"), nil, 10, 1<<20, recs[0].Version)
	if len(recs) != 1 || more || string(recs[0].Key) != "mb/a" {
		t.Fatalf("Records since mb/b was written = %+v %v, want mb/a", recs, more)
	}
	if recs, more, _, _, _ := h.f.Records([]byte("mb/"), nil, 10, 1<<20, rev); len(recs) != 0 || more {
		t.Fatalf("Records since the newest revision = %+v %v, want none", recs, more)
	}
}

func TestTxn_BadShapesAreRejected(t *testing.T) {
	h := newHarness(t)
	big := string(bytes.Repeat([]byte("x"), MaxRecordValueLen+1))
	for name, txn := range map[string]*txnpb.Txn{
		"empty":         {},
		"empty key":     {Ops: []*txnpb.TxnOp{put("", "v")}},
		"long key":      {Ops: []*txnpb.TxnOp{put(string(make([]byte, MaxRecordKeyLen+1)), "v")}},
		"big value":     {Ops: []*txnpb.TxnOp{put("k", big)}},
		"two ops a key": {Ops: []*txnpb.TxnOp{put("k", "1"), {Op: &txnpb.TxnOp_Delete{Delete: []byte("k")}}}},
		"link from changed": {Ops: []*txnpb.TxnOp{
			{Op: &txnpb.TxnOp_DeleteObject{DeleteObject: []byte("o1")}},
			{Op: &txnpb.TxnOp_LinkObject{LinkObject: &txnpb.LinkObject{Key: []byte("o2"), From: []byte("o1")}}},
		}},
		"nil op": {Ops: []*txnpb.TxnOp{{}}},
	} {
		t.Run(name, func(t *testing.T) { h.t = t; h.rejected(txn, raisfs.ErrInvalidArgument) })
	}
}

// Links and object deletes inside a Txn keep blob reference counts right,
// and a Txn whose link fails writes none of its records.
func TestTxn_LinkAndDeleteObjects(t *testing.T) {
	h := newHarness(t)
	vol := h.volume()
	a := hashOf("A")
	h.ok(&fsmpb.PutObject{Key: []byte("body/1"), Hash: a, Size: 100, Volume: vol, LeaseExpiryUnixNano: h.lease()})
	link := func(k, from string) *txnpb.TxnOp {
		return &txnpb.TxnOp{Op: &txnpb.TxnOp_LinkObject{LinkObject: &txnpb.LinkObject{Key: []byte(k), From: []byte(from)}}}
	}
	del := func(k string) *txnpb.TxnOp {
		return &txnpb.TxnOp{Op: &txnpb.TxnOp_DeleteObject{DeleteObject: []byte(k)}}
	}
	h.ok(&txnpb.Txn{Ops: []*txnpb.TxnOp{link("body/2", "body/1"), put("idx/2", "b2")}})
	if b, _ := h.f.Blob(a); b.Refs != 2 {
		t.Fatalf("refs after link = %d", b.Refs)
	}
	h.ok(&txnpb.Txn{Ops: []*txnpb.TxnOp{link("body/2", "body/1")}}) // retried: same content, no new reference
	if b, _ := h.f.Blob(a); b.Refs != 2 {
		t.Fatalf("refs after a repeated link = %d", b.Refs)
	}
	h.rejected(&txnpb.Txn{Ops: []*txnpb.TxnOp{link("body/3", "nosuch"), put("idx/3", "b3")}}, raisfs.ErrNotFound)
	h.ok(&fsmpb.PutObject{Key: []byte("other"), Hash: hashOf("B"), Size: 5, Volume: vol, LeaseExpiryUnixNano: h.lease()})
	h.rejected(&txnpb.Txn{Ops: []*txnpb.TxnOp{link("other", "body/1")}}, raisfs.ErrConflict)

	h.ok(&txnpb.Txn{Ops: []*txnpb.TxnOp{del("body/1"), {Op: &txnpb.TxnOp_Delete{Delete: []byte("idx/2")}}}})
	if b, _ := h.f.Blob(a); b.Refs != 1 {
		t.Fatalf("refs after one delete = %d", b.Refs)
	}
	h.ok(&txnpb.Txn{Ops: []*txnpb.TxnOp{del("body/2"), del("body/1")}}) // body/1 gone already: fine
	if _, err := h.f.Blob(a); err == nil {
		t.Fatal("blob still referenced after its last key went")
	}
	if !h.f.IsPendingDelete(raisfs.Hash(a), raisfs.VolumeID(vol)) {
		t.Fatal("last reference gone but the blob's needle is not queued for deletion")
	}
}

// An uploaded blob committed inside a Txn appears with its records, or
// (lease expired, key taken) neither does; a retried commit is not
// counted twice; volume 0 binds to a live blob.
func TestTxn_CommitObject(t *testing.T) {
	h := newHarness(t)
	vol := h.volume()
	commit := func(key string, hash []byte, vol uint64, expiry int64) *txnpb.TxnOp {
		return &txnpb.TxnOp{Op: &txnpb.TxnOp_CommitObject{CommitObject: &txnpb.ObjectCommit{Key: []byte(key), Hash: hash, Size: 100, Volume: vol, LeaseExpiryUnixNano: expiry}}}
	}
	a := hashOf("A")
	h.ok(&txnpb.Txn{Ops: []*txnpb.TxnOp{commit("b/1", a, vol, h.lease()), put("idx/1", "b/1")}})
	if o, err := h.f.Object([]byte("b/1")); err != nil || o.Size != 100 {
		t.Fatalf("committed object = %v, %v", o, err)
	}
	h.ok(&txnpb.Txn{Ops: []*txnpb.TxnOp{commit("b/1", a, vol, h.lease())}}) // the same commit again
	if b, _ := h.f.Blob(a); b.Refs != 1 {
		t.Fatalf("refs after a repeated commit = %d", b.Refs)
	}
	// Another recipient's key for the same upload, and a dedup bind.
	h.ok(&txnpb.Txn{Ops: []*txnpb.TxnOp{commit("b/2", a, vol, h.lease()), commit("b/3", a, 0, 0)}})
	if b, _ := h.f.Blob(a); b.Refs != 3 {
		t.Fatalf("refs after two more keys = %d", b.Refs)
	}
	// Rejections write nothing, records included.
	h.rejected(&txnpb.Txn{Ops: []*txnpb.TxnOp{commit("b/4", hashOf("B"), vol, h.now-1), put("idx/4", "x")}}, raisfs.ErrLeaseExpired)
	h.rejected(&txnpb.Txn{Ops: []*txnpb.TxnOp{commit("b/1", hashOf("B"), vol, h.lease()), put("idx/5", "x")}}, raisfs.ErrConflict)
	h.rejected(&txnpb.Txn{Ops: []*txnpb.TxnOp{commit("b/6", hashOf("C"), 0, 0), put("idx/6", "x")}}, raisfs.ErrNotFound)
	h.rejected(&txnpb.Txn{Ops: []*txnpb.TxnOp{commit("b/7", hashOf("D"), 999, h.lease())}}, raisfs.ErrNotFound)
	h.rejected(&txnpb.Txn{Ops: []*txnpb.TxnOp{commit("b/8", []byte("short"), vol, h.lease())}}, raisfs.ErrInvalidArgument)
}
