package chunkserver

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/raisfs/raisfs"
)

// entryState is what the in-memory index knows about a hash in a volume.
type entryState uint8

const (
	stateLive    entryState = iota // readable
	stateDeleted                   // tombstoned
	stateCorrupt                   // failed verification; never served
)

func (s entryState) String() string {
	switch s {
	case stateLive:
		return "live"
	case stateDeleted:
		return "deleted"
	default:
		return "corrupt"
	}
}

type entry struct {
	offset int64
	size   int64
	state  entryState
}

// dataFile is a volume's data file with a reference count, so that readers
// streaming from it keep it open after compaction has swapped in a new one.
type dataFile struct {
	f    File
	refs atomic.Int32
}

func (d *dataFile) acquire() { d.refs.Add(1) }

func (d *dataFile) release() {
	if d.refs.Add(-1) == 0 {
		d.f.Close()
	}
}

// batch is one group commit: the records appended since the last fsync.
type batch struct {
	recs []indexEntry
	done chan struct{}
	err  error
}

// volumeOptions configure one volume; the Store fills them from its Config.
type volumeOptions struct {
	fs           FS
	dir          string
	id           raisfs.VolumeID
	sealSize     int64
	maxBatchWait time.Duration
	indexSyncN   int // fsync the index after this many unsynced entries
	logger       *slog.Logger
	metrics      *metrics
}

// Volume is an append-only file of needles plus its index. All methods are
// safe for concurrent use.
//
// Lock order: compactMu, then mu. mu is never held across an fsync, a
// network write or a wait on another goroutine, except for the short copy
// of a spooled needle into the page cache in append.
type Volume struct {
	opts volumeOptions

	kick chan struct{} // a writer queued a record
	stop chan struct{} // Close has begun
	done chan struct{} // the syncer has exited

	compactMu sync.Mutex // one compaction at a time

	mu            sync.Mutex
	cond          *sync.Cond // writesBlocked cleared, or a batch finished
	data          *dataFile
	idx           File
	idxTail       int64
	idxUnsynced   int
	idxBroken     bool // index writes failed: stop writing it, recovery rebuilds
	gen           uint64
	tail          int64
	entries       map[raisfs.Hash]entry
	inflight      map[raisfs.Hash]chan struct{} // blobs being appended
	sealed        bool
	failed        error // sticky: an fsync failed, the volume is read-only
	closed        bool
	writesBlocked bool // compaction's final phase
	cur           *batch
	syncing       bool
	liveBytes     int64 // needle bytes of live blobs
	liveCount     int64
	corruptNow    int64 // entries marked corrupt (found by a read, the scrubber or recovery) and not yet replaced
}

func dataPath(dir string, id raisfs.VolumeID) string {
	return filepath.Join(dir, fmt.Sprintf("vol-%s.dat", id))
}

func indexPath(dir string, id raisfs.VolumeID) string {
	return filepath.Join(dir, fmt.Sprintf("vol-%s.idx", id))
}

// createVolume makes an empty volume durably: superblock written to a temp
// file, fsynced, renamed into place, directory fsynced.
func createVolume(opts volumeOptions) (*Volume, error) {
	path := dataPath(opts.dir, opts.id)
	tmp := path + ".new"
	f, err := opts.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create volume %s: %w", opts.id, err)
	}
	var sb [superblockSize]byte
	putSuperblock(sb[:], superMagic, superblock{volume: opts.id, gen: 1})
	_, err = f.WriteAt(sb[:], 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = opts.fs.Rename(tmp, path)
	}
	if err == nil {
		err = opts.fs.SyncDir(opts.dir)
	}
	if err != nil {
		opts.fs.Remove(tmp)
		return nil, fmt.Errorf("create volume %s: %w", opts.id, classifyIOError(err))
	}
	return openVolume(opts)
}

// openVolume loads a volume: it reads the index, then scans only the part
// of the data file past the last indexed needle, truncating a torn tail.
func openVolume(opts volumeOptions) (_ *Volume, err error) {
	fs := opts.fs
	// Leftovers of an interrupted creation or compaction are never live.
	for _, ext := range []string{".new", ".cpd", ".cpx"} {
		fs.Remove(dataPath(opts.dir, opts.id) + ext)
		fs.Remove(indexPath(opts.dir, opts.id) + ext)
	}
	f, err := fs.OpenFile(dataPath(opts.dir, opts.id), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open volume %s: %w", opts.id, err)
	}
	df := &dataFile{f: f}
	df.refs.Store(1)
	defer func() {
		if err != nil {
			df.release()
		}
	}()
	var sb [superblockSize]byte
	if _, err := f.ReadAt(sb[:], 0); err != nil {
		return nil, fmt.Errorf("open volume %s: read superblock: %w", opts.id, err)
	}
	s, err := parseSuperblock(sb[:], superMagic)
	if err != nil {
		return nil, fmt.Errorf("open volume %s: %w", opts.id, err)
	}
	if s.volume != opts.id {
		return nil, fmt.Errorf("open volume %s: file belongs to volume %s: %w", opts.id, s.volume, errBadRecord)
	}
	size, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("open volume %s: %w", opts.id, err)
	}
	v := &Volume{
		opts:     opts,
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		data:     df,
		gen:      s.gen,
		entries:  make(map[raisfs.Hash]entry),
		inflight: make(map[raisfs.Hash]chan struct{}),
	}
	v.cond = sync.NewCond(&v.mu)

	idx, scanFrom, err := v.loadIndex(size)
	if err != nil {
		return nil, err
	}
	v.idx = idx
	defer func() {
		if err != nil {
			idx.Close()
		}
	}()
	// Recover the tail: needles past the last indexed one.
	var found []indexEntry
	end, err := scanData(f, scanFrom, size, opts.logger, func(e indexEntry, corrupt bool) {
		v.applyEntry(e, corrupt)
		if !corrupt {
			found = append(found, e)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("open volume %s: %w", opts.id, err)
	}
	if end < size {
		opts.logger.Warn("truncating torn tail of volume", LogKeyVolume, opts.id, "offset", end, "bytes", size-end)
		if err := f.Truncate(end); err != nil {
			return nil, fmt.Errorf("open volume %s: truncate torn tail: %w", opts.id, err)
		}
	}
	v.tail = end
	if len(found) > 0 {
		v.writeIndexLocked(found)
	}
	if end < size || len(found) > 0 {
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("open volume %s: sync: %w", opts.id, err)
		}
		if err := idx.Sync(); err != nil {
			return nil, fmt.Errorf("open volume %s: sync index: %w", opts.id, err)
		}
	}
	go v.syncLoop()
	return v, nil
}

// loadIndex reads the index file, applies its valid prefix and returns the
// data offset from which the data file must be scanned.
func (v *Volume) loadIndex(dataSize int64) (File, int64, error) {
	fs, id := v.opts.fs, v.opts.id
	path := indexPath(v.opts.dir, id)
	idx, err := fs.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, 0, fmt.Errorf("open index of volume %s: %w", id, err)
	}
	isize, err := idx.Size()
	if err != nil {
		idx.Close()
		return nil, 0, fmt.Errorf("open index of volume %s: %w", id, err)
	}
	rebuild := func(why string) (File, int64, error) {
		if isize > 0 {
			v.opts.logger.Warn("rebuilding volume index from data", LogKeyVolume, id, "reason", why)
		}
		var sb [superblockSize]byte
		putSuperblock(sb[:], indexMagic, superblock{volume: id, gen: v.gen})
		if err := idx.Truncate(0); err != nil {
			idx.Close()
			return nil, 0, fmt.Errorf("reset index of volume %s: %w", id, err)
		}
		if _, err := idx.WriteAt(sb[:], 0); err != nil {
			idx.Close()
			return nil, 0, fmt.Errorf("reset index of volume %s: %w", id, err)
		}
		v.idxTail = superblockSize
		return idx, superblockSize, nil
	}
	var sb [superblockSize]byte
	if isize < superblockSize {
		return rebuild("index missing or short")
	}
	if _, err := idx.ReadAt(sb[:], 0); err != nil {
		idx.Close()
		return nil, 0, fmt.Errorf("read index of volume %s: %w", id, err)
	}
	s, err := parseSuperblock(sb[:], indexMagic)
	if err != nil {
		return rebuild(err.Error())
	}
	if s.volume != id || s.gen != v.gen {
		return rebuild(fmt.Sprintf("index is of volume %s generation %d, data of generation %d", s.volume, s.gen, v.gen))
	}
	// Apply the valid prefix of entries, in order.
	next := int64(superblockSize) // where the next needle may start
	pos := int64(superblockSize)
	buf := make([]byte, 4096*indexEntrySize)
	done := false
	for !done && pos+indexEntrySize <= isize {
		n, err := idx.ReadAt(buf[:min(int64(len(buf)), (isize-pos)/indexEntrySize*indexEntrySize)], pos)
		if err != nil && !errors.Is(err, io.EOF) {
			idx.Close()
			return nil, 0, fmt.Errorf("read index of volume %s: %w", id, err)
		}
		for i := 0; i+indexEntrySize <= n; i += indexEntrySize {
			e, err := parseIndexEntry(buf[i : i+indexEntrySize])
			if err == nil && (e.offset < next || e.offset+needleLen(e.size) > dataSize) {
				err = fmt.Errorf("index entry at %d points outside the data: %w", pos, errBadRecord)
			}
			if err != nil {
				done = true
				break
			}
			v.applyEntry(e, false)
			next = e.offset + needleLen(e.size)
			pos += indexEntrySize
		}
		if n == 0 {
			break
		}
	}
	if pos < isize {
		if err := idx.Truncate(pos); err != nil {
			idx.Close()
			return nil, 0, fmt.Errorf("truncate index of volume %s: %w", id, err)
		}
	}
	v.idxTail = pos
	return idx, next, nil
}

// applyEntry updates the in-memory index for one record, in file order.
func (v *Volume) applyEntry(e indexEntry, corrupt bool) {
	old, had := v.entries[e.hash]
	if had && old.state == stateLive {
		v.liveBytes -= needleLen(old.size)
		v.liveCount--
	}
	if had && old.state == stateCorrupt && e.kind != kindSeal {
		v.corruptNow-- // replaced: put back by a fill, or deleted
	}
	switch e.kind {
	case kindBlob:
		st := stateLive
		if corrupt {
			st = stateCorrupt
			v.corruptNow++
		} else {
			v.liveBytes += needleLen(e.size)
			v.liveCount++
		}
		v.entries[e.hash] = entry{offset: e.offset, size: e.size, state: st}
	case kindTombstone:
		v.entries[e.hash] = entry{offset: e.offset, state: stateDeleted}
	case kindSeal:
		v.sealed = true
		if had {
			v.entries[e.hash] = old
		}
	}
}

// writeIndexLocked appends entries to the index file. The index is a
// checkpoint of what the data file already holds durably, so it is written
// after the data fsync and synced only now and then: losing its tail costs
// a longer scan at the next start, never data.
func (v *Volume) writeIndexLocked(es []indexEntry) {
	if v.idxBroken || len(es) == 0 {
		return
	}
	buf := make([]byte, len(es)*indexEntrySize)
	for i, e := range es {
		putIndexEntry(buf[i*indexEntrySize:], e)
	}
	if _, err := v.idx.WriteAt(buf, v.idxTail); err != nil {
		v.idxBroken = true
		v.idx.Truncate(v.idxTail)
		v.opts.logger.Warn("volume index write failed; it will be rebuilt from data on next start",
			LogKeyVolume, v.opts.id, "err", err)
		return
	}
	v.idxTail += int64(len(buf))
	v.idxUnsynced += len(es)
}

// classifyIOError maps a disk-full error onto raisfs.ErrNoSpace so that
// callers can tell "try elsewhere" from "this disk is failing".
func classifyIOError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", raisfs.ErrNoSpace, err)
	}
	return err
}

// writableLocked reports whether a record of kind may be appended now.
func (v *Volume) writableLocked(kind needleKind) error { return v.writableForLocked(kind, false) }

// writableForLocked is writableLocked; a fill (repair) may append a blob
// to a sealed volume.
func (v *Volume) writableForLocked(kind needleKind, fill bool) error {
	switch {
	case v.closed:
		return fmt.Errorf("volume %s: closed: %w", v.opts.id, raisfs.ErrUnavailable)
	case v.failed != nil:
		return fmt.Errorf("volume %s: read-only after failure (%w): %w", v.opts.id, v.failed, raisfs.ErrUnavailable)
	case kind == kindBlob && v.sealed && !fill:
		return fmt.Errorf("volume %s: %w", v.opts.id, raisfs.ErrSealed)
	}
	return nil
}

// appendRecord appends one record and waits until it is durable. write
// copies the n needle bytes to the file at the given offset. A fill
// (repair putting back a blob the volume should hold) may append to a
// sealed or full volume.
func (v *Volume) appendRecord(e indexEntry, n int64, write func(File, int64) error, fill bool) error {
	v.mu.Lock()
	for v.writesBlocked && !v.closed {
		v.cond.Wait()
	}
	if err := v.writableForLocked(e.kind, fill); err != nil {
		v.mu.Unlock()
		return err
	}
	if e.kind == kindBlob && !fill && v.tail > superblockSize && v.tail+n > v.opts.sealSize {
		// Full: seal instead, durably, and tell the caller to go elsewhere.
		v.sealed = true
		seal := encodeNeedle(kindSeal, raisfs.Hash{}, nil)
		b, err := v.queueLocked(indexEntry{kind: kindSeal}, int64(len(seal)), func(f File, off int64) error {
			_, err := f.WriteAt(seal, off)
			return err
		})
		if err == nil {
			<-b.done
			err = b.err
		}
		if err != nil {
			return fmt.Errorf("volume %s: seal: %w", v.opts.id, err)
		}
		return fmt.Errorf("volume %s: full at %d bytes: %w", v.opts.id, v.opts.sealSize, raisfs.ErrSealed)
	}
	b, err := v.queueLocked(e, n, write)
	if err != nil {
		return err
	}
	<-b.done
	return b.err
}

// queueLocked writes a record at the tail (into the page cache), adds it to
// the open batch and wakes the syncer. It is called with mu held and
// releases it. A failed write is cut off again, so the volume stays as it
// was and the space is reclaimed at once.
func (v *Volume) queueLocked(e indexEntry, n int64, write func(File, int64) error) (*batch, error) {
	e.offset = 0
	return v.queueManyLocked([]indexEntry{e}, n, write)
}

// queueManyLocked is queueLocked for several records written at once: n
// bytes in all; each entry's offset is relative to the start of the write.
func (v *Volume) queueManyLocked(es []indexEntry, n int64, write func(File, int64) error) (*batch, error) {
	off := v.tail
	if err := write(v.data.f, off); err != nil {
		err = classifyIOError(err)
		if terr := v.data.f.Truncate(off); terr != nil {
			v.failed = fmt.Errorf("truncate after failed write: %w", terr)
		}
		v.mu.Unlock()
		return nil, fmt.Errorf("volume %s: write at %d: %w", v.opts.id, off, err)
	}
	v.tail = off + n
	b := v.cur
	if b == nil {
		b = &batch{done: make(chan struct{})}
		v.cur = b
	}
	for _, e := range es {
		e.offset += off
		b.recs = append(b.recs, e)
	}
	v.mu.Unlock()
	select {
	case v.kick <- struct{}{}:
	default:
	}
	return b, nil
}

// syncLoop is the volume's group committer. Each round it fsyncs the data
// file once for every record queued so far, then makes those records
// visible and releases their writers. Before starting a round it gives the
// writers it just released a short window to queue again, so that under
// load one fsync covers every concurrent writer instead of just the first
// to arrive (measured in BenchmarkPut; see ARCHITECTURE.md).
func (v *Volume) syncLoop() {
	defer close(v.done)
	// target estimates how many writers are active: those the last round
	// released plus those that queued while it ran.
	target := 0
	var lastDur time.Duration
	for {
		stopping := false
		select {
		case <-v.kick:
		case <-v.stop:
			// Close has begun: commit whatever is queued, round by round
			// (the stop channel stays ready), then exit.
			stopping = true
		}
		v.mu.Lock()
		if v.cur == nil {
			v.mu.Unlock()
			if stopping {
				return
			}
			continue
		}
		if !stopping && len(v.cur.recs) < target {
			wait := min(max(lastDur/2, 50*time.Microsecond), v.opts.maxBatchWait)
			v.mu.Unlock()
			v.gather(target, wait)
			v.mu.Lock()
		}
		b := v.cur
		v.cur = nil
		v.syncing = true
		f := v.data.f
		err := v.failed
		v.mu.Unlock()

		start := time.Now()
		if err == nil {
			if err = f.Sync(); err != nil {
				err = classifyIOError(err)
			}
		}
		lastDur = time.Since(start)

		v.mu.Lock()
		v.syncing = false
		if err != nil {
			if v.failed == nil {
				// After a failed fsync the kernel may have dropped the dirty
				// pages: nothing written since the last good fsync can be
				// trusted, so the volume turns read-only until a restart
				// rescans it.
				v.failed = err
				v.opts.logger.Error("volume fsync failed; volume is read-only", LogKeyVolume, v.opts.id, "err", err)
			}
			b.err = fmt.Errorf("volume %s: sync: %w: %w", v.opts.id, raisfs.ErrUnavailable, err)
		} else {
			for _, r := range b.recs {
				v.applyEntry(r, false)
			}
			v.writeIndexLocked(b.recs)
		}
		target = len(b.recs)
		if v.cur != nil {
			target += len(v.cur.recs)
		}
		syncIdx := !v.idxBroken && v.idxUnsynced >= v.opts.indexSyncN
		if syncIdx {
			v.idxUnsynced = 0
		}
		idx := v.idx
		v.cond.Broadcast()
		v.mu.Unlock()
		// Counted before the writers are released, so that a writer that
		// reads the counters after its put sees its own fsync.
		if m := v.opts.metrics; m != nil {
			m.fsyncs.Inc()
			m.fsyncBatch.Observe(float64(len(b.recs)))
			m.fsyncSeconds.Observe(lastDur.Seconds())
		}
		close(b.done)
		if syncIdx {
			idx.Sync()
		}
	}
}

// gather waits until at least n records are queued or wait has passed.
func (v *Volume) gather(n int, wait time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		v.mu.Lock()
		enough := v.cur == nil || len(v.cur.recs) >= n
		v.mu.Unlock()
		if enough {
			return
		}
		select {
		case <-v.kick:
		case <-t.C:
			return
		case <-v.stop:
			return
		}
	}
}
