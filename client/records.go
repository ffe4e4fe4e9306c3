package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"google.golang.org/grpc/metadata"

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

// written is what t, applied at revision rev, left in those of its
// records that are in keys (ops apply in order: the last one on a key
// wins). Only they are copied: a delivery's transaction also writes its
// message's records, which the cache does not track.
func (t *Txn) written(rev uint64, keys map[string]uint64) map[string]cachedRecord {
	out := map[string]cachedRecord{}
	for _, op := range t.pb.Ops {
		switch o := op.Op.(type) {
		case *txnpb.TxnOp_Put:
			k := string(o.Put.Key)
			if _, ok := keys[k]; ok {
				out[k] = cachedRecord{r: Record{Key: k, Value: bytes.Clone(o.Put.Value), Version: rev}, ok: true}
			}
		case *txnpb.TxnOp_Delete:
			k := string(o.Delete)
			if _, ok := keys[k]; ok {
				out[k] = cachedRecord{}
			}
		}
	}
	return out
}

// Txn is a transaction: if every compare holds, all ops apply at once.
// Build one with the methods below; the zero value is empty.
type Txn struct {
	pb txnpb.Txn
	// located: where committed uploads live, for the look-up cache.
	located map[string]*masterpb.LookupResponse
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

// CommitObject binds u's key to the bytes u uploaded: the object appears
// when (and only if) the transaction commits, which must happen before
// u.Expiry (ErrLeaseExpired otherwise: upload again).
func (t *Txn) CommitObject(u *Upload) *Txn {
	return t.CommitObjectAs(u.Key, u)
}

// CommitObjectAs binds key (not u's own) to u's bytes: one upload, many
// keys (a message delivered to several mailboxes).
func (t *Txn) CommitObjectAs(key string, u *Upload) *Txn {
	t.pb.Ops = append(t.pb.Ops, &txnpb.TxnOp{Op: &txnpb.TxnOp_CommitObject{CommitObject: u.commit(key)}})
	if u.volume != 0 && len(u.replicas) > 0 {
		if t.located == nil {
			t.located = map[string]*masterpb.LookupResponse{}
		}
		t.located[key] = &masterpb.LookupResponse{Hash: u.Hash[:], Size: u.Size, Class: u.class,
			CreatedUnixNano: time.Now().UnixNano(), Volume: u.volume, Replicas: u.replicas}
	}
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
	if c.records != nil {
		var keys []string
		for _, op := range t.pb.Ops {
			switch o := op.Op.(type) {
			case *txnpb.TxnOp_Put:
				keys = append(keys, string(o.Put.Key))
			case *txnpb.TxnOp_Delete:
				keys = append(keys, string(o.Delete))
			}
		}
		if len(keys) > 0 {
			w, id := c.records.beginWrite(keys)
			if id > 0 {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-rais-watch", strconv.FormatUint(id, 10))
			}
			rev, err := c.commit(ctx, t)
			// Certain: applied, or refused before anything was proposed.
			certain := err == nil || errors.Is(err, ErrCompareFailed) || errors.Is(err, ErrInvalidArgument) ||
				errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, raisfs.ErrPermissionDenied) ||
				errors.Is(err, raisfs.ErrLeaseExpired)
			var written map[string]cachedRecord
			if err == nil && len(w.fresh) > 0 {
				written = t.written(rev, w.fresh)
			}
			c.records.endWrite(w, certain, written)
			return rev, err
		}
	}
	return c.commit(ctx, t)
}

func (c *Client) commit(ctx context.Context, t *Txn) (uint64, error) {
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
		// Answers a master gives before proposing anything (a master's
		// own UNAVAILABLE, such as a master still on an older build, is
		// one: retried); a transport error carries no reason and stays
		// uncertain.
		if e := rpcerr.FromStatus(err); errors.Is(e, raisfs.ErrNotLeader) || errors.Is(e, raisfs.ErrCompareFailed) ||
			errors.Is(e, raisfs.ErrInvalidArgument) || errors.Is(e, raisfs.ErrNotFound) || errors.Is(e, raisfs.ErrConflict) ||
			errors.Is(e, raisfs.ErrLeaseExpired) || errors.Is(e, raisfs.ErrPermissionDenied) || errors.Is(e, raisfs.ErrUnavailable) {
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
	// The uploads just committed: their locations are known without a
	// look-up (recently delivered mail is what gets read first).
	for k, lr := range t.located {
		c.store(k, lr)
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
	return c.RecordsSince(ctx, prefix, after, limit, 0)
}

// RecordsSince is Records restricted to records written after revision
// since (a Record's Version): what changed since an earlier read, without
// shipping what did not. Deleted records do not show. A page may hold
// fewer records than limit, or none, and still have a Next.
func (c *Client) RecordsSince(ctx context.Context, prefix, after string, limit int, since uint64) (RecordPage, error) {
	if limit < 0 || limit > 10000 {
		return RecordPage{}, fmt.Errorf("records limit %d: %w", limit, ErrInvalidArgument)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var rr *masterpb.RecordsResponse
	err := c.call(ctx, "records", func(ctx context.Context, m masterpb.MasterClient) (err error) {
		rr, err = m.Records(ctx, &masterpb.RecordsRequest{Prefix: []byte(prefix), After: []byte(after), Limit: uint32(limit), MinVersion: since})
		return err
	})
	if err != nil {
		return RecordPage{}, err
	}
	p := RecordPage{Revision: rr.Revision}
	for _, r := range rr.Records {
		if r.Version <= since {
			continue // a master that predates MinVersion sends everything
		}
		p.Records = append(p.Records, Record{Key: string(r.Key), Value: r.Value, Version: r.Version})
	}
	if rr.More {
		switch {
		case len(rr.Next) > 0:
			p.Next = string(rr.Next)
		case len(rr.Records) > 0:
			p.Next = string(rr.Records[len(rr.Records)-1].Key)
		}
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

// Upload is a blob stored durably on its replicas, waiting to be bound to
// a key by a transaction (Txn.CommitObject).
type Upload struct {
	Key  string
	Hash [32]byte
	Size int64
	// Expiry is when the write lease ends: commit before it.
	Expiry time.Time

	class    string
	volume   uint64 // 0: the content was stored already (dedup)
	replicas []*masterpb.Replica
	lease    string
	expiry   int64
}

func (u *Upload) commit(key string) *txnpb.ObjectCommit {
	return &txnpb.ObjectCommit{Key: []byte(key), Hash: u.Hash[:], Size: u.Size, Class: u.class,
		Volume: u.volume, Lease: u.lease, LeaseExpiryUnixNano: u.expiry}
}

// Upload stores r's bytes on their replicas, durably, as Put does, but
// does not bind key: a transaction does (Txn.CommitObject), together with
// the records that name the object, so that the two appear at once or not
// at all. Bytes that are never committed are reclaimed once the lease
// expires. Content stored already is not uploaded again.
func (c *Client) Upload(ctx context.Context, key string, r io.Reader, opts *PutOptions) (*Upload, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	b, opts, err := c.spoolKey(ctx, "upload", key, r, opts)
	if err != nil {
		return nil, err
	}
	defer b.close()
	bp, err := c.beginAndUpload(ctx, key, b, opts.Class, true)
	if err != nil {
		return nil, err
	}
	u := &Upload{Key: key, Hash: b.hash, Size: b.size, class: opts.Class}
	if !bp.Stored && !bp.Dedup {
		u.volume, u.lease, u.expiry, u.replicas = bp.Volume, bp.Lease, bp.LeaseExpiryUnixNano, bp.Replicas
		u.Expiry = time.Unix(0, bp.LeaseExpiryUnixNano)
	} else {
		u.Expiry = time.Now().Add(24 * time.Hour) // a bind to a live blob has no lease
	}
	return u, nil
}
