package chunkserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/zeebo/blake3"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/internal/failpoint"
)

// smallRead is the needle size up to which a read fetches the whole needle
// with one pread and verifies it before answering.
const smallRead = 256 << 10

// put appends a spooled blob unless the volume already holds it. It returns
// created=false for a blob that was already there (puts are idempotent),
// and waits for a concurrent put of the same hash instead of storing the
// bytes twice.
func (v *Volume) put(sp *spooled, fill bool) (created bool, err error) {
	h := sp.hash
	v.mu.Lock()
	for {
		if e, ok := v.entries[h]; ok && e.state == stateLive {
			v.mu.Unlock()
			return false, nil
		}
		ch, busy := v.inflight[h]
		if !busy {
			break
		}
		v.mu.Unlock()
		<-ch
		v.mu.Lock()
	}
	ch := make(chan struct{})
	v.inflight[h] = ch
	v.mu.Unlock()

	err = v.appendRecord(indexEntry{hash: h, size: sp.size, kind: kindBlob}, sp.n, sp.writeAt, fill)

	v.mu.Lock()
	delete(v.inflight, h)
	close(ch)
	v.mu.Unlock()
	return err == nil, err
}

// putMany is put for several spooled blobs (a batch upload): when none is
// held or in flight already and they all fit, their needles go to the file
// in one write and share one group commit. Anything less simple (a
// duplicate, a volume about to fill up, an error) is left to put, blob by
// blob, which knows every case.
func (v *Volume) putMany(sps []*spooled) (created []bool, errs []error) {
	created, errs = make([]bool, len(sps)), make([]error, len(sps))
	one := func() {
		var wg sync.WaitGroup
		for i, sp := range sps {
			wg.Go(func() { created[i], errs[i] = v.put(sp, false) })
		}
		wg.Wait()
	}
	v.mu.Lock()
	for v.writesBlocked && !v.closed {
		v.cond.Wait()
	}
	var total int64
	simple := v.writableForLocked(kindBlob, false) == nil
	seen := make(map[raisfs.Hash]bool, len(sps))
	for _, sp := range sps {
		_, held := v.entries[sp.hash]
		_, busy := v.inflight[sp.hash]
		if held || busy || seen[sp.hash] || sp.mem == nil {
			simple = false
			break
		}
		seen[sp.hash] = true
		total += sp.n
	}
	if !simple || v.tail+total > v.opts.sealSize {
		v.mu.Unlock()
		one()
		return created, errs
	}
	ch := make(chan struct{})
	buf := getBuf(int(total))[:0]
	for _, sp := range sps {
		v.inflight[sp.hash] = ch
		buf = append(buf, sp.mem...)
	}
	recs := make([]indexEntry, len(sps))
	var off int64
	for i, sp := range sps {
		recs[i] = indexEntry{hash: sp.hash, size: sp.size, kind: kindBlob, offset: off}
		off += sp.n
	}
	b, err := v.queueManyLocked(recs, total, func(f File, off int64) error {
		_, err := f.WriteAt(buf, off)
		return err
	}) // unlocks
	putBuf(buf) // written (or not) by now: the page cache holds the bytes
	if err == nil {
		<-b.done
		err = b.err
	}
	v.mu.Lock()
	for _, sp := range sps {
		delete(v.inflight, sp.hash)
	}
	close(ch)
	v.mu.Unlock()
	for i := range sps {
		created[i], errs[i] = err == nil, err
	}
	return created, errs
}

// delete appends a tombstone for h. Deleting an already deleted blob is a
// no-op; deleting one the volume never held is raisfs.ErrNotFound.
func (v *Volume) delete(h raisfs.Hash) error {
	v.mu.Lock()
	e, ok := v.entries[h]
	v.mu.Unlock()
	if !ok {
		return fmt.Errorf("volume %s: blob %s: %w", v.opts.id, h, raisfs.ErrNotFound)
	}
	if e.state == stateDeleted {
		return nil
	}
	rec := encodeNeedle(kindTombstone, h, nil)
	return v.appendRecord(indexEntry{hash: h, kind: kindTombstone}, int64(len(rec)), func(f File, off int64) error {
		_, err := f.WriteAt(rec, off)
		return err
	}, false)
}

// seal makes the volume take no new blobs, durably. Sealing twice is a no-op.
func (v *Volume) seal() error {
	v.mu.Lock()
	for v.writesBlocked && !v.closed {
		v.cond.Wait()
	}
	if v.sealed {
		v.mu.Unlock()
		return nil
	}
	if err := v.writableLocked(kindSeal); err != nil {
		v.mu.Unlock()
		return err
	}
	v.sealed = true
	rec := encodeNeedle(kindSeal, raisfs.Hash{}, nil)
	b, err := v.queueLocked(indexEntry{kind: kindSeal}, int64(len(rec)), func(f File, off int64) error {
		_, err := f.WriteAt(rec, off)
		return err
	})
	if err != nil {
		v.mu.Lock()
		v.sealed = false
		v.mu.Unlock()
		return err
	}
	<-b.done
	return b.err
}

// Blob is an open handle on one stored blob. Its bytes are verified as
// they are read: no byte that fails its checksum is ever handed out.
// Close must be called; the handle keeps the volume's file open, so a
// compaction that runs meanwhile does not disturb the read.
type Blob struct {
	Hash raisfs.Hash
	Size int64

	v    *Volume
	df   *dataFile
	off  int64 // needle offset
	crcs []uint32
	body []byte // whole body, verified, for small needles
}

// openBlob looks h up and verifies its frame (and, for small needles, its
// whole body). Errors wrap raisfs.ErrNotFound or raisfs.ErrCorrupt.
func (v *Volume) openBlob(h raisfs.Hash) (*Blob, error) {
	v.mu.Lock()
	e, ok := v.entries[h]
	if !ok || e.state == stateDeleted {
		v.mu.Unlock()
		return nil, fmt.Errorf("volume %s: blob %s: %w", v.opts.id, h, raisfs.ErrNotFound)
	}
	if e.state == stateCorrupt {
		v.mu.Unlock()
		return nil, fmt.Errorf("volume %s: blob %s: %w", v.opts.id, h, raisfs.ErrCorrupt)
	}
	df := v.data
	df.acquire()
	v.mu.Unlock()

	b := &Blob{Hash: h, Size: e.size, v: v, df: df, off: e.offset}
	if err := b.load(); err != nil {
		df.release()
		if errors.Is(err, raisfs.ErrCorrupt) {
			v.markCorrupt(df, h, e.offset, err)
		}
		return nil, err
	}
	return b, nil
}

func (b *Blob) corrupt(what string) error {
	return fmt.Errorf("volume %s: blob %s at %d: %s: %w", b.v.opts.id, b.Hash, b.off, what, raisfs.ErrCorrupt)
}

func (b *Blob) load() error {
	n := needleLen(b.Size)
	var hb []byte
	var whole []byte
	if n <= smallRead {
		whole = make([]byte, n)
		if _, err := b.df.f.ReadAt(whole, b.off); err != nil {
			return fmt.Errorf("volume %s: read blob %s: %w", b.v.opts.id, b.Hash, err)
		}
		hb = whole[:headerSize]
	} else {
		hb = make([]byte, headerSize)
		if _, err := b.df.f.ReadAt(hb, b.off); err != nil {
			return fmt.Errorf("volume %s: read blob %s: %w", b.v.opts.id, b.Hash, err)
		}
	}
	h, err := parseHeader(hb)
	if err != nil {
		return b.corrupt(err.Error())
	}
	if h.kind != kindBlob || h.hash != b.Hash || h.size != b.Size {
		return b.corrupt("header names another needle")
	}
	var foot []byte
	if whole != nil {
		foot = whole[headerSize+b.Size:]
	} else {
		foot = make([]byte, footerLen(b.Size))
		if _, err := b.df.f.ReadAt(foot, b.off+headerSize+b.Size); err != nil {
			return fmt.Errorf("volume %s: read blob %s footer: %w", b.v.opts.id, b.Hash, err)
		}
	}
	b.crcs, err = parseFooter(foot, b.Size)
	if err != nil {
		return b.corrupt(err.Error())
	}
	if whole != nil {
		body := whole[headerSize : headerSize+b.Size]
		for i := range b.crcs {
			blk := body[i*blockSize : min(int64(i+1)*blockSize, b.Size)]
			if crc(blk) != b.crcs[i] && !failpoint.SkipReadVerification {
				return b.corrupt(fmt.Sprintf("block %d checksum mismatch", i))
			}
		}
		if blake3.Sum256(body) != b.Hash && !failpoint.SkipReadVerification {
			return b.corrupt("content does not match its hash")
		}
		b.body = body
	}
	return nil
}

// WriteRange writes length bytes starting at start to w, verifying every
// block before it is written. A full read (0, Size) also checks the BLAKE3
// name at the end. On corruption it stops, marks the blob corrupt and
// returns an error wrapping raisfs.ErrCorrupt; bytes already written were
// verified, but the caller must not treat the response as complete.
func (b *Blob) WriteRange(w io.Writer, start, length int64) (int64, error) {
	if start < 0 || length < 0 || start+length > b.Size {
		return 0, fmt.Errorf("range %d+%d of %d-byte blob: %w", start, length, b.Size, raisfs.ErrInvalidArgument)
	}
	if b.body != nil {
		n, err := w.Write(b.body[start : start+length])
		return int64(n), err
	}
	full := start == 0 && length == b.Size
	var hasher *blake3.Hasher
	if full {
		hasher = blake3.New()
	}
	buf := make([]byte, blockSize)
	var written int64
	end := start + length
	for blk := start / blockSize; blk*blockSize < end; blk++ {
		bs := blk * blockSize
		k := min(blockSize, b.Size-bs)
		if _, err := b.df.f.ReadAt(buf[:k], b.off+headerSize+bs); err != nil && !errors.Is(err, io.EOF) {
			return written, fmt.Errorf("volume %s: read blob %s: %w", b.v.opts.id, b.Hash, err)
		}
		if crc(buf[:k]) != b.crcs[blk] && !failpoint.SkipReadVerification {
			err := b.corrupt(fmt.Sprintf("block %d checksum mismatch", blk))
			b.v.markCorrupt(b.df, b.Hash, b.off, err)
			return written, err
		}
		if hasher != nil {
			hasher.Write(buf[:k])
		}
		lo, hi := max(start, bs)-bs, min(end, bs+k)-bs
		n, err := w.Write(buf[lo:hi])
		written += int64(n)
		if err != nil {
			return written, err
		}
	}
	if hasher != nil {
		var got raisfs.Hash
		hasher.Sum(got[:0])
		if got != b.Hash && !failpoint.SkipReadVerification {
			err := b.corrupt("content does not match its hash")
			b.v.markCorrupt(b.df, b.Hash, b.off, err)
			return written, err
		}
	}
	return written, nil
}

// Close releases the handle.
func (b *Blob) Close() error {
	if b.df != nil {
		b.df.release()
		b.df = nil
	}
	return nil
}

// markCorrupt stops a needle that failed verification from being served
// again, if it is still the current copy of h.
func (v *Volume) markCorrupt(df *dataFile, h raisfs.Hash, off int64, cause error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.entries[h]
	if !ok || e.offset != off || df != v.data || e.state != stateLive {
		return
	}
	e.state = stateCorrupt
	v.entries[h] = e
	v.liveBytes -= needleLen(e.size)
	v.liveCount--
	v.corruptNow++
	if m := v.opts.metrics; m != nil {
		m.corrupt.Inc()
	}
	v.opts.logger.Error("corrupt needle found; it will not be served", LogKeyVolume, v.opts.id, LogKeyHash, h, "err", cause)
}

// NeedleInfo describes one hash a volume knows.
type NeedleInfo struct {
	Hash  raisfs.Hash
	Size  int64
	State string // "live", "deleted" or "corrupt"
}

// list returns up to limit needles with hashes greater than after, in
// ascending hash order, and whether more follow.
func (v *Volume) list(after raisfs.Hash, limit int) ([]NeedleInfo, bool) {
	v.mu.Lock()
	out := make([]NeedleInfo, 0, min(len(v.entries), limit+1))
	for h, e := range v.entries {
		if bytesLess(after[:], h[:]) {
			out = append(out, NeedleInfo{Hash: h, Size: e.size, State: e.state.String()})
		}
	}
	v.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return bytesLess(out[i].Hash[:], out[j].Hash[:]) })
	if len(out) > limit {
		return out[:limit], true
	}
	return out, false
}

func bytesLess(a, b []byte) bool { return string(a) < string(b) }

// VolumeStatus is a point-in-time summary of a volume.
type VolumeStatus struct {
	ID          raisfs.VolumeID `json:"id"`
	Dir         string          `json:"dir"`
	Generation  uint64          `json:"generation"`
	SizeBytes   int64           `json:"size_bytes"`
	LiveBytes   int64           `json:"live_bytes"`
	LiveBlobs   int64           `json:"live_blobs"`
	GarbageByte int64           `json:"garbage_bytes"`
	Sealed      bool            `json:"sealed"`
	Failed      string          `json:"failed,omitempty"`
	// CorruptNeedles counts needles found corrupt (by a read, the scrubber
	// or recovery) and not yet put back: the masters fill them from a
	// healthy member, or replace this copy.
	CorruptNeedles int64 `json:"corrupt_needles"`
}

func (v *Volume) status() VolumeStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := VolumeStatus{
		ID: v.opts.id, Dir: v.opts.dir, Generation: v.gen, SizeBytes: v.tail,
		LiveBytes: v.liveBytes, LiveBlobs: v.liveCount,
		GarbageByte: v.tail - superblockSize - v.liveBytes, Sealed: v.sealed,
		CorruptNeedles: v.corruptNow,
	}
	if v.failed != nil {
		st.Failed = v.failed.Error()
	}
	return st
}

// streamTo writes the whole data file of a sealed volume to w, as it
// stands now: a peer that imports it gets an exact, verifiable copy.
func (v *Volume) streamTo(ctx context.Context, w io.Writer, size func(int64)) (int64, error) {
	v.mu.Lock()
	if !v.sealed {
		v.mu.Unlock()
		return 0, fmt.Errorf("volume %s: only sealed volumes stream whole: %w", v.opts.id, raisfs.ErrInvalidArgument)
	}
	df, tail := v.data, v.tail
	df.acquire()
	v.mu.Unlock()
	defer df.release()
	if size != nil {
		size(tail)
	}
	r := io.NewSectionReader(df.f, 0, tail)
	return io.Copy(w, ctxReader{ctx, r})
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

// close commits what is queued, stops the syncer and closes the files.
// Readers holding a Blob keep the data file open until they close it.
func (v *Volume) close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	v.cond.Broadcast()
	v.mu.Unlock()
	close(v.stop)
	<-v.done
	v.mu.Lock()
	defer v.mu.Unlock()
	var err error
	if !v.idxBroken {
		err = v.idx.Sync()
	}
	if cerr := v.idx.Close(); err == nil {
		err = cerr
	}
	v.data.release()
	if err != nil {
		return fmt.Errorf("close volume %s: %w", v.opts.id, err)
	}
	return nil
}

// CompactResult reports what a compaction did.
type CompactResult struct {
	BytesBefore int64 `json:"bytes_before"`
	BytesAfter  int64 `json:"bytes_after"`
	Blobs       int64 `json:"blobs"`
}

// compact rewrites the volume without deleted, superseded or corrupt
// needles, online: reads go on throughout, writes pause only while the
// needles appended during the copy are carried over.
//
// Crash safety: the new data and index are written to .cpd/.cpx files and
// fsynced, then renamed over the old ones, then the directory is fsynced.
// A crash before the first rename leaves the old volume (the temp files are
// removed at open); between the renames, the data file's generation no
// longer matches the index and the index is rebuilt from the data.
func (v *Volume) compact(ctx context.Context) (CompactResult, error) {
	v.compactMu.Lock()
	defer v.compactMu.Unlock()
	id, fs := v.opts.id, v.opts.fs

	v.mu.Lock()
	if err := v.writableLocked(kindTombstone); err != nil {
		v.mu.Unlock()
		return CompactResult{}, err
	}
	old := v.data
	old.acquire()
	defer old.release()
	before := v.tail
	gen := v.gen + 1
	type src struct {
		h raisfs.Hash
		e entry
	}
	var live []src
	for h, e := range v.entries {
		if e.state == stateLive {
			live = append(live, src{h, e})
		}
	}
	v.mu.Unlock()
	sort.Slice(live, func(i, j int) bool { return live[i].e.offset < live[j].e.offset })

	dpath, ipath := dataPath(v.opts.dir, id)+".cpd", indexPath(v.opts.dir, id)+".cpx"
	nf, err := fs.OpenFile(dpath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return CompactResult{}, fmt.Errorf("compact volume %s: %w", id, classifyIOError(err))
	}
	var nidx File
	success := false
	defer func() {
		if !success {
			nf.Close()
			if nidx != nil {
				nidx.Close()
			}
			fs.Remove(dpath)
			fs.Remove(ipath)
		}
	}()
	var sb [superblockSize]byte
	putSuperblock(sb[:], superMagic, superblock{volume: id, gen: gen})
	if _, err := nf.WriteAt(sb[:], 0); err != nil {
		return CompactResult{}, fmt.Errorf("compact volume %s: %w", id, classifyIOError(err))
	}
	ntail := int64(superblockSize)
	var recs []indexEntry
	copied := make(map[raisfs.Hash]int64) // hash -> old offset copied
	buf := make([]byte, 1<<20)
	copyNeedle := func(h raisfs.Hash, e entry) error {
		ok, err := copyVerified(old.f, nf, e.offset, ntail, e.size, h, buf)
		if err != nil {
			return err
		}
		if !ok {
			v.markCorrupt(old, h, e.offset, fmt.Errorf("found by compaction: %w", raisfs.ErrCorrupt))
			return nil
		}
		recs = append(recs, indexEntry{hash: h, offset: ntail, size: e.size, kind: kindBlob})
		copied[h] = e.offset
		ntail += needleLen(e.size)
		return nil
	}
	for _, s := range live {
		if err := ctx.Err(); err != nil {
			return CompactResult{}, fmt.Errorf("compact volume %s: %w", id, err)
		}
		if err := copyNeedle(s.h, s.e); err != nil {
			return CompactResult{}, fmt.Errorf("compact volume %s: %w", id, classifyIOError(err))
		}
	}

	// Final phase: pause writes, let queued batches commit, carry over
	// what changed during the copy.
	v.mu.Lock()
	for v.writesBlocked && !v.closed {
		v.cond.Wait()
	}
	v.writesBlocked = true
	for (v.cur != nil || v.syncing) && !v.closed {
		v.cond.Wait()
	}
	unblock := func() {
		v.mu.Lock()
		v.writesBlocked = false
		v.cond.Broadcast()
		v.mu.Unlock()
	}
	if err := v.writableLocked(kindTombstone); err != nil {
		v.writesBlocked = false
		v.cond.Broadcast()
		v.mu.Unlock()
		return CompactResult{}, err
	}
	final := make(map[raisfs.Hash]entry, len(v.entries))
	for h, e := range v.entries {
		final[h] = e
	}
	sealed := v.sealed
	v.mu.Unlock()
	defer func() {
		if !success {
			unblock()
		}
	}()
	for h, oldOff := range copied {
		if e, ok := final[h]; ok && e.state == stateLive && e.offset == oldOff {
			continue
		}
		// Copied, then deleted (or replaced) during the copy: a tombstone
		// keeps a later index rebuild from bringing it back.
		rec := encodeNeedle(kindTombstone, h, nil)
		if _, err := nf.WriteAt(rec, ntail); err != nil {
			return CompactResult{}, fmt.Errorf("compact volume %s: %w", id, classifyIOError(err))
		}
		recs = append(recs, indexEntry{hash: h, offset: ntail, kind: kindTombstone})
		ntail += int64(len(rec))
	}
	for h, e := range final {
		if e.state != stateLive {
			continue
		}
		if oldOff, ok := copied[h]; ok && oldOff == e.offset {
			continue
		}
		if err := copyNeedle(h, e); err != nil {
			return CompactResult{}, fmt.Errorf("compact volume %s: %w", id, classifyIOError(err))
		}
	}
	if sealed {
		rec := encodeNeedle(kindSeal, raisfs.Hash{}, nil)
		if _, err := nf.WriteAt(rec, ntail); err != nil {
			return CompactResult{}, fmt.Errorf("compact volume %s: %w", id, classifyIOError(err))
		}
		recs = append(recs, indexEntry{kind: kindSeal, offset: ntail})
		ntail += int64(len(rec))
	}
	if err := nf.Sync(); err != nil {
		return CompactResult{}, fmt.Errorf("compact volume %s: sync: %w", id, classifyIOError(err))
	}
	nidx, err = fs.OpenFile(ipath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return CompactResult{}, fmt.Errorf("compact volume %s: %w", id, classifyIOError(err))
	}
	ib := make([]byte, superblockSize+len(recs)*indexEntrySize)
	putSuperblock(ib, indexMagic, superblock{volume: id, gen: gen})
	for i, r := range recs {
		putIndexEntry(ib[superblockSize+i*indexEntrySize:], r)
	}
	if _, err := nidx.WriteAt(ib, 0); err != nil {
		return CompactResult{}, fmt.Errorf("compact volume %s: write index: %w", id, classifyIOError(err))
	}
	if err := nidx.Sync(); err != nil {
		return CompactResult{}, fmt.Errorf("compact volume %s: sync index: %w", id, classifyIOError(err))
	}
	if err := fs.Rename(dpath, dataPath(v.opts.dir, id)); err != nil {
		return CompactResult{}, fmt.Errorf("compact volume %s: %w", id, err)
	}
	// From here the new data file is in place: the swap must happen even
	// if what follows fails (a missing index rename costs a rebuild only).
	success = true
	ierr := fs.Rename(ipath, indexPath(v.opts.dir, id))
	if ierr == nil {
		ierr = fs.SyncDir(v.opts.dir)
	}

	ndf := &dataFile{f: nf}
	ndf.refs.Store(1)
	v.mu.Lock()
	oldIdx := v.idx
	v.data.release() // the volume's own reference to the old file
	v.data = ndf
	v.idx = nidx
	v.idxTail = int64(len(ib))
	v.idxUnsynced = 0
	v.idxBroken = ierr != nil
	v.gen = gen
	v.tail = ntail
	v.entries = make(map[raisfs.Hash]entry, len(final))
	v.liveBytes, v.liveCount, v.corruptNow = 0, 0, 0
	for _, r := range recs {
		v.applyEntry(r, false)
	}
	res := CompactResult{BytesBefore: before, BytesAfter: ntail, Blobs: v.liveCount}
	v.writesBlocked = false
	v.cond.Broadcast()
	v.mu.Unlock()
	oldIdx.Close()
	if ierr != nil {
		v.opts.logger.Warn("compaction: index not renamed; it will be rebuilt on next start", LogKeyVolume, id, "err", ierr)
	}
	return res, nil
}

// copyVerified copies the needle at off in src to doff in dst, verifying
// its frame, block CRCs and hash on the way. ok is false if it is corrupt.
func copyVerified(src, dst File, off, doff, size int64, h raisfs.Hash, buf []byte) (ok bool, err error) {
	var hb [headerSize]byte
	if _, err := src.ReadAt(hb[:], off); err != nil {
		return false, fmt.Errorf("read needle at %d: %w", off, err)
	}
	hdr, err := parseHeader(hb[:])
	if err != nil || hdr.hash != h || hdr.size != size || hdr.kind != kindBlob {
		return false, nil
	}
	foot := make([]byte, footerLen(size))
	if _, err := src.ReadAt(foot, off+headerSize+size); err != nil {
		return false, fmt.Errorf("read needle footer at %d: %w", off, err)
	}
	crcs, err := parseFooter(foot, size)
	if err != nil {
		return false, nil
	}
	good, err := verifyBody(src, off+headerSize, size, crcs, h)
	if err != nil || !good {
		return false, err
	}
	n := needleLen(size)
	for pos := int64(0); pos < n; {
		k := min(int64(len(buf)), n-pos)
		if _, err := src.ReadAt(buf[:k], off+pos); err != nil {
			return false, fmt.Errorf("read needle at %d: %w", off+pos, err)
		}
		if _, err := dst.WriteAt(buf[:k], doff+pos); err != nil {
			return false, err
		}
		pos += k
	}
	return true, nil
}
