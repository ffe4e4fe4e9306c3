package raftfsm

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/txnpb"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// Limits on the records namespace. A Txn is one Raft entry: keep entries
// small enough that replicating one never stalls the log.
const (
	MaxRecordKeyLen   = 1024
	MaxRecordValueLen = 256 << 10
	MaxTxnOps         = 4096
	MaxTxnBytes       = 4 << 20
)

// ValidateTxn checks a Txn's shape (not its compares): the leader calls it
// before proposing, and Apply again, so a bad Txn never reaches the log and
// one in the log is rejected the same way everywhere.
func ValidateTxn(t *txnpb.Txn) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("txn: "+format+": %w", append(a, raisfs.ErrInvalidArgument)...)
	}
	if len(t.Ops) == 0 && len(t.Compares) == 0 {
		return bad("empty")
	}
	if len(t.Ops)+len(t.Compares) > MaxTxnOps {
		return bad("%d ops and compares, more than %d", len(t.Ops)+len(t.Compares), MaxTxnOps)
	}
	if n := proto.Size(t); n > MaxTxnBytes {
		return bad("%d bytes, more than %d", n, MaxTxnBytes)
	}
	recKey := func(k []byte) error {
		if len(k) == 0 || len(k) > MaxRecordKeyLen {
			return bad("record key of %d bytes: want 1..%d", len(k), MaxRecordKeyLen)
		}
		return nil
	}
	for _, c := range t.Compares {
		if err := recKey(c.Key); err != nil {
			return err
		}
	}
	// One op per key: ops apply in order, but allowing two on one key
	// would make validation depend on the effects of the ops before.
	records, objects := map[string]bool{}, map[string]bool{}
	once := func(seen map[string]bool, k []byte) error {
		if seen[string(k)] {
			return bad("two ops on key %q", truncKey(k))
		}
		seen[string(k)] = true
		return nil
	}
	for _, op := range t.Ops {
		switch o := op.Op.(type) {
		case *txnpb.TxnOp_Put:
			if err := recKey(o.Put.Key); err != nil {
				return err
			}
			if len(o.Put.Value) > MaxRecordValueLen {
				return bad("record value of %d bytes, more than %d", len(o.Put.Value), MaxRecordValueLen)
			}
			if err := once(records, o.Put.Key); err != nil {
				return err
			}
		case *txnpb.TxnOp_Delete:
			if err := recKey(o.Delete); err != nil {
				return err
			}
			if err := once(records, o.Delete); err != nil {
				return err
			}
		case *txnpb.TxnOp_DeleteObject:
			if err := ValidateKey(o.DeleteObject); err != nil {
				return err
			}
			if err := once(objects, o.DeleteObject); err != nil {
				return err
			}
		case *txnpb.TxnOp_CommitObject:
			c := o.CommitObject
			if err := ValidateKey(c.Key); err != nil {
				return err
			}
			if len(c.Hash) != raisfs.HashSize || c.Size < 0 {
				return bad("commit of %q: bad hash or size", truncKey(c.Key))
			}
			if err := once(objects, c.Key); err != nil {
				return err
			}
		case *txnpb.TxnOp_LinkObject:
			if err := ValidateKey(o.LinkObject.Key); err != nil {
				return err
			}
			if err := ValidateKey(o.LinkObject.From); err != nil {
				return err
			}
			if err := once(objects, o.LinkObject.Key); err != nil {
				return err
			}
		default:
			return bad("unknown op %T", op.Op)
		}
	}
	// A link from a key this Txn deletes would depend on op order.
	for _, op := range t.Ops {
		if l, ok := op.Op.(*txnpb.TxnOp_LinkObject); ok && objects[string(l.LinkObject.From)] {
			return bad("link from %q, which this txn also changes", truncKey(l.LinkObject.From))
		}
	}
	return nil
}

// applyTxn checks every compare and every op against the state, and only
// then writes: a rejected Txn writes nothing.
func applyTxn(tx *bolt.Tx, d *deltas, t *txnpb.Txn, now int64) (Result, error) {
	if err := ValidateTxn(t); err != nil {
		return reject(err)
	}
	records, objects := tx.Bucket(bucketRecords), tx.Bucket(bucketObjects)
	for _, c := range t.Compares {
		var have uint64
		var r fsmpb.Record
		if ok, err := getProto(records, c.Key, &r); err != nil {
			return Result{}, err
		} else if ok {
			have = r.Version
		}
		if have != c.Version {
			return reject(fmt.Errorf("txn: record %q is at version %d, not %d: %w", truncKey(c.Key), have, c.Version, raisfs.ErrCompareFailed))
		}
	}
	// Object binds, commits of uploads and links alike, are PutObjects:
	// checked as PutObject is before anything is written. A link binds
	// its key to the blob its source names (a dedup bind, volume 0).
	var puts []*fsmpb.PutObject
	for _, op := range t.Ops {
		var p *fsmpb.PutObject
		switch o := op.Op.(type) {
		case *txnpb.TxnOp_CommitObject:
			p = putOf(o.CommitObject)
		case *txnpb.TxnOp_LinkObject:
			var from fsmpb.Object
			if ok, err := getProto(objects, o.LinkObject.From, &from); err != nil {
				return Result{}, err
			} else if !ok {
				return reject(fmt.Errorf("txn: link from %q: %w", truncKey(o.LinkObject.From), raisfs.ErrNotFound))
			}
			p = &fsmpb.PutObject{Key: o.LinkObject.Key, Hash: from.Hash, Size: from.Size, Class: from.Class}
		default:
			continue
		}
		_, rej, err := checkPut(tx, p, now)
		if err != nil {
			return Result{}, err
		}
		if rej != nil {
			return reject(fmt.Errorf("txn: bind %q: %w", truncKey(p.Key), rej))
		}
		puts = append(puts, p)
	}
	// Everything checked: write.
	meta := tx.Bucket(bucketMeta)
	rev := getU64(meta.Get(keyRevision)) + 1
	if err := meta.Put(keyRevision, u64(rev)); err != nil {
		return Result{}, err
	}
	for _, p := range puts {
		r, err := applyPut(tx, d, p, now)
		if err != nil {
			return Result{}, err
		}
		if r.Err != nil {
			return Result{}, fmt.Errorf("txn: bind %q after checking: %w", truncKey(p.Key), r.Err)
		}
	}
	for _, op := range t.Ops {
		switch o := op.Op.(type) {
		case *txnpb.TxnOp_Put:
			if err := putProto(records, o.Put.Key, &fsmpb.Record{Value: o.Put.Value, Version: rev}); err != nil {
				return Result{}, err
			}
		case *txnpb.TxnOp_Delete:
			if err := records.Delete(o.Delete); err != nil {
				return Result{}, err
			}
		case *txnpb.TxnOp_DeleteObject:
			if objects.Get(o.DeleteObject) == nil {
				continue // gone already: deleting twice is not an error
			}
			r, err := applyDelete(tx, d, &fsmpb.DeleteObject{Key: o.DeleteObject}, now)
			if err != nil {
				return Result{}, err
			}
			if r.Err != nil {
				return Result{}, fmt.Errorf("txn: delete object %q after checking: %w", truncKey(o.DeleteObject), r.Err)
			}
		}
	}
	return Result{Revision: rev}, nil
}

// putOf is the PutObject an ObjectCommit amounts to.
func putOf(c *txnpb.ObjectCommit) *fsmpb.PutObject {
	return &fsmpb.PutObject{Key: c.Key, Hash: c.Hash, Size: c.Size, Class: c.Class, Volume: c.Volume, LeaseExpiryUnixNano: c.LeaseExpiryUnixNano}
}

// RecordKV is one record as read.
type RecordKV struct {
	Key     []byte
	Value   []byte
	Version uint64
}

// Record returns the record at key, or ok false.
func (f *FSM) Record(key []byte) (RecordKV, bool, error) {
	var out RecordKV
	found := false
	err := f.view(func(tx *bolt.Tx) error {
		var r fsmpb.Record
		ok, err := getProto(tx.Bucket(bucketRecords), key, &r)
		if err != nil || !ok {
			return err
		}
		found = true
		out = RecordKV{Key: bytes.Clone(key), Value: r.Value, Version: r.Version}
		return nil
	})
	return out, found, err
}

// Records returns up to limit records whose keys start with prefix and
// sort after after (nil: from the first), in key order, and whether more
// follow. A page also ends once it holds maxBytes of keys and values (at
// least one record is returned). The revision is the newest any Txn has
// written, for the caller to tell whether anything changed since an
// earlier read.
//
// With minVersion, only records written after that revision are returned
// (a reader catching up on what changed); a page then also ends after
// maxScan keys, and next is the last key examined, where the following
// page starts.
func (f *FSM) Records(prefix, after []byte, limit, maxBytes int, minVersion uint64) (out []RecordKV, more bool, next []byte, revision uint64, err error) {
	const maxScan = 100000
	err = f.view(func(tx *bolt.Tx) error {
		revision = getU64(tx.Bucket(bucketMeta).Get(keyRevision))
		c := tx.Bucket(bucketRecords).Cursor()
		size, scanned := 0, 0
		var last []byte
		for k, v := seekAfter(c, prefix, after); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(out) == limit || (len(out) > 0 && size+len(k)+len(v) > maxBytes) || scanned == maxScan {
				more, next = true, bytes.Clone(last)
				break
			}
			scanned++
			last = k
			var r fsmpb.Record
			if err := proto.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode record %q: %w", truncKey(k), err)
			}
			if r.Version <= minVersion {
				continue
			}
			size += len(k) + len(v)
			out = append(out, RecordKV{Key: bytes.Clone(k), Value: r.Value, Version: r.Version})
		}
		return nil
	})
	return out, more, next, revision, err
}
