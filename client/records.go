package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/api/txnpb"
	"github.com/raisfs/raisfs/internal/rpcerr"
)

// ErrCompareFailed: a transaction's compare did not hold; nothing was
// written. Read again and retry.
var ErrCompareFailed = raisfs.ErrCompareFailed

// Record is one entry of the records namespace: a small ordered key-value
// map kept by the masters beside the objects, for indexes (the mail front
// end keeps its mailboxes there). Version is the revision of the
// transaction that last wrote it.
type Record struct {
	Key     string
	Value   []byte
	Version uint64
}

// Txn is a transaction: if every compare holds, all ops apply at once.
// Build one with the methods below; the zero value is empty.
type Txn struct {
	pb txnpb.Txn
}

// IfVersion requires key's record to be at version (0: absent).
func (t *Txn) IfVersion(key string, version uint64) *Txn {
	t.pb.Compares = append(t.pb.Compares, &txnpb.Compare{Key: []byte(key), Version: version})
	return t
}

// Put sets key's record to value.
func (t *Txn) Put(key string, value []byte) *Txn {
	t.pb.Ops = append(t.pb.Ops, &txnpb.TxnOp{Op: &txnpb.TxnOp_Put{Put: &txnpb.RecordPut{Key: []byte(key), Value: value}}})
	return t
}

// Delete removes key's record.
func (t *Txn) Delete(key string) *Txn {
	t.pb.Ops = append(t.pb.Ops, &txnpb.TxnOp{Op: &txnpb.TxnOp_Delete{Delete: []byte(key)}})
	return t
}

// DeleteObject unbinds object key (as Client.Delete does; no error if it
// is gone already).
func (t *Txn) DeleteObject(key string) *Txn {
	t.pb.Ops = append(t.pb.Ops, &txnpb.TxnOp{Op: &txnpb.TxnOp_DeleteObject{DeleteObject: []byte(key)}})
	return t
}

// LinkObject binds object key to the bytes object from is bound to: one
// more reference, no copy.
func (t *Txn) LinkObject(key, from string) *Txn {
	t.pb.Ops = append(t.pb.Ops, &txnpb.TxnOp{Op: &txnpb.TxnOp_LinkObject{LinkObject: &txnpb.LinkObject{Key: []byte(key), From: []byte(from)}}})
	return t
}

// Len is the number of compares and ops.
func (t *Txn) Len() int { return len(t.pb.Compares) + len(t.pb.Ops) }

// Commit applies t and returns the revision it wrote at. It fails with
// ErrCompareFailed when a compare did not hold (nothing written). A
// transaction is not retried once an attempt may have applied: then the
// error wraps ErrOutcomeUnknown, and the caller reads to find out.
func (c *Client) Commit(ctx context.Context, t *Txn) (uint64, error) {
	for _, op := range t.pb.Ops {
		if d, ok := op.Op.(*txnpb.TxnOp_DeleteObject); ok {
			c.uncache(string(d.DeleteObject))
		}
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var outcomeUnknown error
	var resp *masterpb.TxnResponse
	err := c.call(ctx, "txn", func(ctx context.Context, m masterpb.MasterClient) (err error) {
		if outcomeUnknown != nil {
			return outcomeUnknown
		}
		resp, err = m.Txn(ctx, &t.pb)
		if err == nil || notSent(err) {
			return err
		}
		if e := rpcerr.FromStatus(err); errors.Is(e, raisfs.ErrNotLeader) || errors.Is(e, raisfs.ErrCompareFailed) ||
			errors.Is(e, raisfs.ErrInvalidArgument) || errors.Is(e, raisfs.ErrNotFound) || errors.Is(e, raisfs.ErrConflict) {
			return err
		}
		outcomeUnknown = fmt.Errorf("a txn attempt failed after it may have applied (%v): %w", rpcerr.FromStatus(err), ErrOutcomeUnknown)
		return err
	})
	if outcomeUnknown != nil && err != nil {
		return 0, fmt.Errorf("txn: %w", outcomeUnknown)
	}
	if err != nil {
		return 0, err
	}
	return resp.Revision, nil
}

// RecordPage is one page of Records.
type RecordPage struct {
	Records []Record
	// Next is the key to pass as after for the next page; "" at the end.
	Next string
	// Revision is the newest revision written to any record when read.
	Revision uint64
}

// Records reads up to limit records (0: 1000; at most 10000) whose keys
// start with prefix, after key after, in key order. The read is
// linearizable: it sees every transaction committed before it began.
func (c *Client) Records(ctx context.Context, prefix, after string, limit int) (RecordPage, error) {
	if limit < 0 || limit > 10000 {
		return RecordPage{}, fmt.Errorf("records limit %d: %w", limit, ErrInvalidArgument)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var rr *masterpb.RecordsResponse
	err := c.call(ctx, "records", func(ctx context.Context, m masterpb.MasterClient) (err error) {
		rr, err = m.Records(ctx, &masterpb.RecordsRequest{Prefix: []byte(prefix), After: []byte(after), Limit: uint32(limit)})
		return err
	})
	if err != nil {
		return RecordPage{}, err
	}
	p := RecordPage{Revision: rr.Revision}
	for _, r := range rr.Records {
		p.Records = append(p.Records, Record{Key: string(r.Key), Value: r.Value, Version: r.Version})
	}
	if rr.More && len(p.Records) > 0 {
		p.Next = p.Records[len(p.Records)-1].Key
	}
	return p, nil
}

// Record reads one record; ok is false when there is none.
func (c *Client) Record(ctx context.Context, key string) (r Record, ok bool, err error) {
	p, err := c.Records(ctx, key, "", 1)
	if err != nil {
		return Record{}, false, err
	}
	if len(p.Records) == 0 || p.Records[0].Key != key {
		return Record{}, false, nil
	}
	return p.Records[0], true, nil
}
