package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/zeebo/blake3"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/internal/failpoint"
	"github.com/raisfs/raisfs/internal/rpcerr"
)

// Object describes a stored object.
type Object struct {
	Key     string
	Hash    raisfs.Hash
	Size    int64
	Class   string
	Created time.Time
	// Deduped is set by Put when the content was already stored (under
	// this or another key) and no bytes were sent.
	Deduped bool
}

// PutOptions are optional settings of Put.
type PutOptions struct {
	// Class is the replication class ("" for the cluster's default).
	Class string
}

// body is a spooled request body that can be read any number of times.
type body struct {
	mem  []byte
	file *os.File
	size int64
	hash raisfs.Hash
}

func (b *body) reader() io.Reader {
	if b.file != nil {
		return io.NewSectionReader(b.file, 0, b.size)
	}
	return bytes.NewReader(b.mem)
}

func (b *body) close() {
	if b.file != nil {
		b.file.Close()
		os.Remove(b.file.Name())
	}
}

// spool reads r to the end, hashing it, into memory or a temp file.
func (c *Client) spool(ctx context.Context, r io.Reader) (*body, error) {
	h := blake3.New()
	b := &body{}
	var buf bytes.Buffer
	if l, ok := r.(interface{ Len() int }); ok {
		// A reader that knows its length (bytes.Reader, strings.Reader,
		// bytes.Buffer): one allocation instead of doubling from 512
		// bytes, which cost a 1 MiB put 40% of the client's CPU.
		buf.Grow(int(min(int64(l.Len()), c.cfg.SpoolThreshold+1)))
	}
	n, err := io.Copy(io.MultiWriter(&buf, h), io.LimitReader(r, c.cfg.SpoolThreshold+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	b.size = n
	if n <= c.cfg.SpoolThreshold {
		b.mem = buf.Bytes()
	} else {
		f, err := os.CreateTemp(c.cfg.SpoolDir, "rais-put-*")
		if err != nil {
			return nil, fmt.Errorf("spool body: %w", err)
		}
		b.file = f
		if _, err := f.Write(buf.Bytes()); err != nil {
			b.close()
			return nil, fmt.Errorf("spool body: %w", err)
		}
		m, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r})
		if err != nil {
			b.close()
			return nil, fmt.Errorf("read body: %w", err)
		}
		b.size += m
	}
	h.Sum(b.hash[:0])
	return b, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// spoolKey is the first half of Put and Upload: it checks key and reads
// r into a spooled body, which the caller closes. opts may be nil.
func (c *Client) spoolKey(ctx context.Context, op, key string, r io.Reader, opts *PutOptions) (*body, *PutOptions, error) {
	if err := validKey(key); err != nil {
		return nil, nil, err
	}
	if opts == nil {
		opts = &PutOptions{}
	}
	b, err := c.spool(ctx, r)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %q: %w", op, key, err)
	}
	return b, opts, nil
}

func validKey(key string) error {
	if len(key) == 0 || len(key) > 1024 {
		return fmt.Errorf("key of %d bytes: want 1..1024: %w", len(key), ErrInvalidArgument)
	}
	return nil
}

// Put stores the bytes read from r under key, and returns once they are
// durable on the class's write quorum of chunk servers and the key is
// committed by the masters. Putting the same content under the same key
// again succeeds (retries are safe); other content under an existing key
// is ErrConflict: objects are immutable.
func (c *Client) Put(ctx context.Context, key string, r io.Reader, opts *PutOptions) (Object, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	b, opts, err := c.spoolKey(ctx, "put", key, r, opts)
	if err != nil {
		return Object{}, err
	}
	defer b.close()
	obj := Object{Key: key, Hash: b.hash, Size: b.size, Class: opts.Class}

	// uncertain: a commit attempt failed in a way that may have applied
	// it. If a later answer then says the key is bound to other content,
	// the key may have been ours, then deleted and put again by another
	// client meanwhile: the outcome of this put is unknown, not a
	// conflict (found by the chaos harness).
	uncertain := false
	if c.batch != nil && batchable(b) {
		r := c.batch.put(&pendingPut{ctx: ctx, key: key, b: b, class: opts.Class, res: make(chan batchResult, 1)})
		if r.done {
			if r.err != nil {
				return Object{}, r.err
			}
			obj.Deduped = r.deduped
			return obj, nil
		}
		uncertain = r.uncertain // the batch handed it back: one by one
	}
	var lastErr error
	noteCommitErr := func(err error) {
		if commitMayHaveApplied(err) {
			uncertain = true
		}
	}
	conflictOrUnknown := func(err error) error {
		if uncertain && errors.Is(err, raisfs.ErrConflict) {
			return fmt.Errorf("put %q: an earlier commit of this call may have stored it before the key changed hands: %w (then: %v)", key, ErrOutcomeUnknown, err)
		}
		return err
	}
	for attempt := 0; attempt < 5 && ctx.Err() == nil; attempt++ {
		bp, err := c.beginAndUpload(ctx, key, b, opts.Class, false)
		if err != nil {
			return Object{}, conflictOrUnknown(err)
		}
		if bp.Stored {
			obj.Deduped = true
			return obj, nil
		}
		if failpoint.AckBeforeCommit { // a deliberate bug: see internal/failpoint
			go c.call(context.WithoutCancel(ctx), "commit "+key, func(ctx context.Context, m masterpb.MasterClient) error {
				_, err := m.CommitPut(ctx, commitRequest(key, b, opts.Class, bp))
				return err
			})
			return obj, nil
		}
		for {
			err = c.call(ctx, "commit "+key, func(ctx context.Context, m masterpb.MasterClient) error {
				_, err := m.CommitPut(ctx, commitRequest(key, b, opts.Class, bp))
				noteCommitErr(err)
				return err
			})
			// "Maybe committed": commits are idempotent, so ask again.
			if !errors.Is(err, raisfs.ErrOutcomeUnknown) || ctx.Err() != nil {
				break
			}
		}
		switch {
		case err == nil:
			c.storePut(key, b, opts.Class, bp)
			return obj, nil
		case errors.Is(err, raisfs.ErrLeaseExpired):
			lastErr = err
			continue // the bytes are garbage now; start over
		default:
			return Object{}, conflictOrUnknown(err)
		}
	}
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return Object{}, fmt.Errorf("put %q: %w", key, lastErr)
}

// commitRequest is the commit of key's body b, uploaded under grant bp;
// nil bp commits a dedup onto a stored blob (volume 0, no lease).
func commitRequest(key string, b *body, class string, bp *masterpb.BeginPutResponse) *masterpb.CommitPutRequest {
	return &masterpb.CommitPutRequest{
		Key: []byte(key), Hash: b.hash[:], Size: b.size, Class: class,
		Volume: bp.GetVolume(), Lease: bp.GetLease(), LeaseExpiryUnixNano: bp.GetLeaseExpiryUnixNano(),
	}
}

// storePut remembers where a put just committed lives, so a get needs no
// look-up (Config.LookupCache).
func (c *Client) storePut(key string, b *body, class string, bp *masterpb.BeginPutResponse) {
	c.store(key, &masterpb.LookupResponse{Hash: b.hash[:], Size: b.size, Class: class,
		CreatedUnixNano: time.Now().UnixNano(), Volume: bp.Volume, Replicas: bp.Replicas})
}

// beginAndUpload asks the masters where to write b and uploads it there,
// asking for another placement when an upload fails (a member down, a
// volume full). The answer may say there is nothing to upload (Stored, or
// Dedup with deferCommit).
func (c *Client) beginAndUpload(ctx context.Context, key string, b *body, class string, deferCommit bool) (*masterpb.BeginPutResponse, error) {
	var lastErr error
	for attempt := 0; attempt < 5 && ctx.Err() == nil; attempt++ {
		var bp *masterpb.BeginPutResponse
		err := c.call(ctx, "put "+key, func(ctx context.Context, m masterpb.MasterClient) (err error) {
			bp, err = m.BeginPut(ctx, &masterpb.BeginPutRequest{Key: []byte(key), Hash: b.hash[:], Size: b.size, Class: class, DeferCommit: deferCommit})
			return err
		})
		if err != nil {
			return nil, err
		}
		if bp.Stored || bp.Dedup {
			return bp, nil
		}
		if err := c.upload(ctx, b, bp); err != nil {
			lastErr = err
			c.log.Warn("upload failed; asking for another placement", "key", key, "err", err)
			// Give the masters time to learn what went wrong before asking
			// again.
			t := time.NewTimer(time.Duration(25<<attempt) * time.Millisecond)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		return bp, nil
	}
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return nil, fmt.Errorf("put %q: %w", key, lastErr)
}

// upload sends the body to every replica at once and waits until the
// write quorum has it durably (all of them, by default).
func (c *Client) upload(ctx context.Context, b *body, bp *masterpb.BeginPutResponse) error {
	var wg sync.WaitGroup
	errs := make([]error, len(bp.Replicas))
	for i, r := range bp.Replicas {
		wg.Go(func() {
			errs[i] = c.putReplica(ctx, r, bp, b)
		})
	}
	wg.Wait()
	ok := 0
	var failed []string
	reportedFull := false
	for i, err := range errs {
		if err == nil {
			ok++
			continue
		}
		failed = append(failed, fmt.Sprintf("%s: %v", bp.Replicas[i].Id, err))
		if errors.Is(err, errVolumeFull) && !reportedFull {
			reportedFull = true
			c.reportFull(ctx, bp.Volume, bp.Replicas[i].Id)
		}
	}
	if uint32(ok) < max(bp.WriteQuorum, 1) {
		return fmt.Errorf("volume %d: %d of %d replicas stored the blob, %d needed (%s): %w",
			bp.Volume, ok, len(bp.Replicas), bp.WriteQuorum, strings.Join(failed, "; "), ErrUnavailable)
	}
	return nil
}

func (c *Client) putReplica(ctx context.Context, r *masterpb.Replica, bp *masterpb.BeginPutResponse, b *body) error {
	url := fmt.Sprintf("http://%s/v1/volumes/%d/blobs/%s", r.Address, bp.Volume, b.hash)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, b.reader())
	if err != nil {
		return err
	}
	req.ContentLength = b.size
	req.Header.Set(raisfs.LeaseHeader, bp.Lease)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		if resp.Header.Get("X-Rais-Error") == "sealed" {
			return fmt.Errorf("status %d: %w", resp.StatusCode, errVolumeFull)
		}
		return fmt.Errorf("status %d (%s)", resp.StatusCode, resp.Header.Get("X-Rais-Error"))
	}
	return nil
}

// errVolumeFull is a replica's answer that the volume is sealed.
var errVolumeFull = errors.New("volume full (sealed)")

// reportFull tells the masters a volume filled up, so they stop handing
// it out before the member's next heartbeat says so.
func (c *Client) reportFull(ctx context.Context, vol uint64, replica string) {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c.call(rctx, "report full volume", func(ctx context.Context, m masterpb.MasterClient) error {
		_, err := m.ReportBadReplica(ctx, &masterpb.ReportBadReplicaRequest{Volume: vol, Replica: replica, Sealed: true})
		return err
	})
}

// lookup asks the masters where key lives.
func (c *Client) lookup(ctx context.Context, key string) (*masterpb.LookupResponse, error) {
	if err := validKey(key); err != nil {
		return nil, err
	}
	var lr *masterpb.LookupResponse
	err := c.call(ctx, "lookup "+key, func(ctx context.Context, m masterpb.MasterClient) (err error) {
		lr, err = m.Lookup(ctx, &masterpb.LookupRequest{Key: []byte(key)})
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(lr.Hash) != raisfs.HashSize {
		return nil, fmt.Errorf("lookup %q: master returned a bad hash", key)
	}
	return lr, nil
}

// cachedLookup is lookup through Config.LookupCache; cached says the
// answer came from the cache (and may be stale).
func (c *Client) cachedLookup(ctx context.Context, key string) (lr *masterpb.LookupResponse, cached bool, err error) {
	if c.cfg.LookupCache <= 0 {
		lr, err = c.lookup(ctx, key)
		return lr, false, err
	}
	c.cacheMu.Lock()
	lr = c.cache[key]
	c.cacheMu.Unlock()
	if lr != nil {
		return lr, true, nil
	}
	if lr, err = c.lookup(ctx, key); err != nil {
		return nil, false, err
	}
	c.store(key, lr)
	return lr, false, nil
}

func (c *Client) store(key string, lr *masterpb.LookupResponse) {
	if c.cfg.LookupCache <= 0 {
		return
	}
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	if c.cache == nil {
		c.cache = map[string]*masterpb.LookupResponse{}
	}
	for k := range c.cache { // full: drop an arbitrary entry
		if len(c.cache) < c.cfg.LookupCache {
			break
		}
		delete(c.cache, k)
	}
	c.cache[key] = lr
}

// relookup replaces a cached look-up that failed on every replica with
// a fresh one.
func (c *Client) relookup(ctx context.Context, key string) (*masterpb.LookupResponse, error) {
	c.uncache(key)
	lr, err := c.lookup(ctx, key)
	if err != nil {
		return nil, err
	}
	c.store(key, lr)
	return lr, nil
}

func (c *Client) uncache(keys ...string) {
	if c.cfg.LookupCache <= 0 {
		return
	}
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	for _, k := range keys {
		delete(c.cache, k)
	}
}

func objectFrom(key string, lr *masterpb.LookupResponse) Object {
	o := Object{Key: key, Size: lr.Size, Class: lr.Class, Created: time.Unix(0, lr.CreatedUnixNano)}
	copy(o.Hash[:], lr.Hash)
	return o
}

// Stat returns what the masters know of key, without reading its bytes.
func (c *Client) Stat(ctx context.Context, key string) (Object, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	lr, err := c.lookup(ctx, key)
	if err != nil {
		return Object{}, err
	}
	return objectFrom(key, lr), nil
}

// Delete removes key. The bytes are freed once no other key names the
// same content. Deleting a key that does not exist is ErrNotFound.
func (c *Client) Delete(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	c.uncache(key)
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	// A delete is not idempotent the way a put is: an attempt that failed
	// in a way that may have applied it (a timeout, a connection lost
	// after the request went out) is not retried. A retry could find the
	// key gone (was it this call?) or, worse, delete the value another
	// client put meanwhile: one delete taking effect twice (both found by
	// the chaos harness). Such a delete reports that its outcome is
	// unknown; the caller decides (deleting again is then safe to read:
	// not found means gone). Attempts refused before they applied (not the
	// leader, no connection) are retried as usual.
	var outcomeUnknown error
	err := c.call(ctx, "delete "+key, func(ctx context.Context, m masterpb.MasterClient) error {
		if outcomeUnknown != nil {
			return outcomeUnknown // not retryable: ends the call
		}
		_, err := m.Delete(ctx, &masterpb.DeleteRequest{Key: []byte(key)})
		if err == nil {
			return nil
		}
		e := rpcerr.FromStatus(err)
		if errors.Is(e, raisfs.ErrNotLeader) || errors.Is(e, raisfs.ErrNotFound) || errors.Is(e, raisfs.ErrInvalidArgument) || notSent(err) {
			return err
		}
		outcomeUnknown = fmt.Errorf("%w (%v)", errDeleteMayHaveApplied, e)
		return err // retryable ones come back once more, and end there
	})
	if outcomeUnknown != nil && err != nil && !errors.Is(err, raisfs.ErrNotFound) {
		return fmt.Errorf("delete %q: %w", key, outcomeUnknown)
	}
	return err
}

// notSent reports whether a failed call certainly never reached a master
// (the connection could not be made), so retrying cannot apply it twice.
func notSent(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "connect: connection refused") || strings.Contains(msg, "while dialing")
}

// errDeleteMayHaveApplied: an attempt of this delete failed after it may
// have applied.
var errDeleteMayHaveApplied = fmt.Errorf("an attempt failed after it may have deleted the key: %w", ErrOutcomeUnknown)

// Page is one page of List.
type Page struct {
	Objects []Object
	// Next is the 'after' argument for the next page; "" on the last.
	Next string
}

// List returns up to limit objects (1..10000; 0 means 1000) whose keys
// start with prefix and sort after 'after', in key order.
func (c *Client) List(ctx context.Context, prefix, after string, limit int) (Page, error) {
	if limit < 0 || limit > 10000 {
		return Page{}, fmt.Errorf("list limit %d: %w", limit, ErrInvalidArgument)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var lr *masterpb.ListResponse
	err := c.call(ctx, "list", func(ctx context.Context, m masterpb.MasterClient) (err error) {
		lr, err = m.List(ctx, &masterpb.ListRequest{Prefix: []byte(prefix), After: []byte(after), Limit: uint32(limit)})
		return err
	})
	if err != nil {
		return Page{}, err
	}
	var p Page
	for _, e := range lr.Entries {
		o := Object{Key: string(e.Key), Size: e.Size, Created: time.Unix(0, e.CreatedUnixNano)}
		copy(o.Hash[:], e.Hash)
		p.Objects = append(p.Objects, o)
	}
	if lr.More && len(p.Objects) > 0 {
		p.Next = p.Objects[len(p.Objects)-1].Key
	}
	return p, nil
}

// Reader reads an object's bytes. Close it.
type Reader struct {
	Object
	r     io.Reader
	close func()
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) { return r.r.Read(p) }

// Close releases the reader.
func (r *Reader) Close() error {
	if r.close != nil {
		r.close()
		r.close = nil
	}
	return nil
}

// replicaOrder spreads reads over the replicas.
func replicaOrder(rs []*masterpb.Replica) []*masterpb.Replica {
	out := append([]*masterpb.Replica(nil), rs...)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// Get reads key. Objects up to Config.VerifyThreshold are read whole and
// checked against their hash before Get returns: a replica that is down,
// slow or returns wrong bytes is skipped for the next. Larger objects
// stream: each chunk server checks every block before sending it, a
// replica that fails mid-stream is replaced by the next from the same
// offset, and the whole is checked against the hash at the end (the last
// Read returns ErrCorrupt on a mismatch).
func (c *Client) Get(ctx context.Context, key string) (*Reader, error) {
	ctx, cancel := c.withTimeout(ctx)
	lr, cached, err := c.cachedLookup(ctx, key)
	if err != nil {
		cancel()
		return nil, err
	}
	if cached && lr.Size > c.cfg.VerifyThreshold {
		if lr, err = c.lookup(ctx, key); err != nil { // streams take fresh look-ups
			cancel()
			return nil, err
		}
	}
	obj := objectFrom(key, lr)
	if lr.Size <= c.cfg.VerifyThreshold {
		defer cancel()
		if cached {
			// A cached look-up may be stale (the volume moved, the key was
			// deleted): one quiet try, then the masters.
			for _, rep := range replicaOrder(lr.Replicas) {
				data, err := c.fetch(ctx, lr, rep, 0, lr.Size)
				if err == nil && blake3.Sum256(data) == obj.Hash {
					return &Reader{Object: obj, r: bytes.NewReader(data)}, nil
				}
			}
			if lr, err = c.relookup(ctx, key); err != nil {
				return nil, err
			}
			obj = objectFrom(key, lr)
		}
		var tried []string
		for _, rep := range replicaOrder(lr.Replicas) {
			data, err := c.fetch(ctx, lr, rep, 0, lr.Size)
			if err == nil && (blake3.Sum256(data) == obj.Hash || failpoint.SkipReadVerification) {
				return &Reader{Object: obj, r: bytes.NewReader(data)}, nil
			}
			if err == nil {
				err = fmt.Errorf("returned bytes that do not match the hash: %w", ErrCorrupt)
				c.log.Warn("replica returned corrupt data", "key", key, "replica", rep.Id, "volume", lr.Volume)
			}
			c.reportBad(ctx, lr, rep, err)
			tried = append(tried, fmt.Sprintf("%s: %v", rep.Id, err))
			if ctx.Err() != nil {
				break
			}
		}
		return nil, fmt.Errorf("get %q: every replica failed (%s): %w", key, strings.Join(tried, "; "), ErrUnavailable)
	}
	s := &stream{c: c, ctx: ctx, lr: lr, replicas: replicaOrder(lr.Replicas), hasher: blake3.New(), want: obj.Hash}
	return &Reader{Object: obj, r: s, close: func() { s.closeBody(); cancel() }}, nil
}

// GetRange reads length bytes of key from offset off (clipped to the
// object). The chunk server checks every block it sends against its CRC;
// the whole-object hash cannot be checked for a part.
func (c *Client) GetRange(ctx context.Context, key string, off, length int64) ([]byte, error) {
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("range %d+%d: %w", off, length, ErrInvalidArgument)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	lr, cached, err := c.cachedLookup(ctx, key)
	if err != nil {
		return nil, err
	}
	if off >= lr.Size || length == 0 {
		return []byte{}, nil
	}
	length = min(length, lr.Size-off)
	if cached {
		for _, rep := range replicaOrder(lr.Replicas) {
			if data, err := c.fetch(ctx, lr, rep, off, length); err == nil {
				return data, nil
			}
		}
		if lr, err = c.relookup(ctx, key); err != nil {
			return nil, err
		}
	}
	var tried []string
	for _, rep := range replicaOrder(lr.Replicas) {
		data, err := c.fetch(ctx, lr, rep, off, length)
		if err == nil {
			return data, nil
		}
		c.reportBad(ctx, lr, rep, err)
		tried = append(tried, fmt.Sprintf("%s: %v", rep.Id, err))
	}
	return nil, fmt.Errorf("get %q range %d+%d: every replica failed (%s): %w", key, off, length, strings.Join(tried, "; "), ErrUnavailable)
}

// open starts reading lr's blob from rep at offset off.
func (c *Client) open(ctx context.Context, lr *masterpb.LookupResponse, rep *masterpb.Replica, off, length int64) (io.ReadCloser, error) {
	url := fmt.Sprintf("http://%s/v1/volumes/%d/blobs/%x", rep.Address, lr.Volume, lr.Hash)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	partial := off > 0 || length < lr.Size
	if partial {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+length-1))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	want := http.StatusOK
	if partial {
		want = http.StatusPartialContent
	}
	if resp.StatusCode != want {
		resp.Body.Close()
		code := resp.Header.Get("X-Rais-Error")
		if code == "corrupt" { // the chunk server's own check failed
			return nil, fmt.Errorf("status %d: %w", resp.StatusCode, ErrCorrupt)
		}
		return nil, fmt.Errorf("status %d (%s)", resp.StatusCode, code)
	}
	return resp.Body, nil
}

func (c *Client) fetch(ctx context.Context, lr *masterpb.LookupResponse, rep *masterpb.Replica, off, length int64) ([]byte, error) {
	rc, err := c.open(ctx, lr, rep, off, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data := make([]byte, length)
	if _, err := io.ReadFull(rc, data); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return data, nil
}

// stream reads a large object, failing over between replicas mid-way.
type stream struct {
	c        *Client
	ctx      context.Context
	lr       *masterpb.LookupResponse
	replicas []*masterpb.Replica
	next     int // next replica to try
	body     io.ReadCloser
	off      int64
	hasher   *blake3.Hasher
	want     raisfs.Hash
	tried    []string
	done     bool
}

func (s *stream) closeBody() {
	if s.body != nil {
		s.body.Close()
		s.body = nil
	}
}

func (s *stream) Read(p []byte) (int, error) {
	if s.done {
		return 0, io.EOF
	}
	for {
		if s.body == nil {
			if s.next >= len(s.replicas) {
				return 0, fmt.Errorf("get %q: every replica failed at offset %d (%s): %w", s.lr.Hash, s.off, strings.Join(s.tried, "; "), ErrUnavailable)
			}
			rep := s.replicas[s.next]
			s.next++
			body, err := s.c.open(s.ctx, s.lr, rep, s.off, s.lr.Size-s.off)
			if err != nil {
				s.c.reportBad(s.ctx, s.lr, rep, err)
				s.tried = append(s.tried, fmt.Sprintf("%s: %v", rep.Id, err))
				continue
			}
			s.body = body
		}
		p = p[:min(int64(len(p)), s.lr.Size-s.off)]
		n, err := s.body.Read(p)
		s.hasher.Write(p[:n])
		s.off += int64(n)
		if s.off == s.lr.Size {
			s.done = true
			s.closeBody()
			var got raisfs.Hash
			s.hasher.Sum(got[:0])
			if got != s.want && !failpoint.SkipReadVerification {
				return n, fmt.Errorf("object does not match its hash: %w", ErrCorrupt)
			}
			if n > 0 {
				return n, nil
			}
			return 0, io.EOF
		}
		if err != nil {
			// This replica failed mid-stream: go on from here on the next.
			s.tried = append(s.tried, fmt.Sprintf("replica failed at %d: %v", s.off, err))
			s.closeBody()
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, nil
	}
}

// reportBad tells the masters a replica failed a read, so it can be
// repaired. It waits at most half a second and ignores failures: the read
// itself has already moved on to the next replica.
func (c *Client) reportBad(ctx context.Context, lr *masterpb.LookupResponse, rep *masterpb.Replica, cause error) {
	if ctx.Err() != nil {
		return
	}
	reason := "unavailable: "
	if errors.Is(cause, ErrCorrupt) {
		reason = "corrupt: "
	}
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	i := int(c.next.Load()) % len(c.masters)
	c.masters[i].ReportBadReplica(rctx, &masterpb.ReportBadReplicaRequest{
		Volume: lr.Volume, Hash: lr.Hash, Replica: rep.Id, Reason: reason + cause.Error(),
	})
}
