package chunkserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raisfs/raisfs"
)

// Config configures a Store. The zero value of each field means the
// default that DefaultConfig documents.
type Config struct {
	// Dirs are the data directories, one per disk. Required.
	Dirs []string
	// FS is the filesystem; nil means OSFS. Tests inject faults here.
	FS FS
	// MaxBlobSize is the largest blob accepted (default 64 MiB).
	MaxBlobSize int64
	// VolumeSize is the size past which a volume seals itself (default 1 GiB).
	VolumeSize int64
	// SpoolThreshold: bodies up to this size are received in memory, larger
	// ones in a temp file in the data dir (default 1 MiB).
	SpoolThreshold int64
	// HighWater is the fraction of a data dir's filesystem in use past which
	// no new blob is accepted there (default 0.95).
	HighWater float64
	// MinFreeBytes is the free space always kept on a data dir's
	// filesystem, whatever HighWater says (default 64 MiB).
	MinFreeBytes int64
	// MaxBatchWait bounds how long the group committer waits for released
	// writers to queue again before the next fsync (default 2 ms).
	MaxBatchWait time.Duration
	// BodyIdleTimeout ends an upload whose client sends no bytes for this
	// long (default 1 minute; negative: wait forever): a stalled client
	// would otherwise hold its spool buffer or temp file and a goroutine
	// until its connection died. Nothing of a stalled upload is stored.
	BodyIdleTimeout time.Duration
	// UsageCacheTTL is how long a data dir's free-space reading is reused
	// by the put path (default 200 ms; negative: read it on every put).
	// Bytes appended since the reading are subtracted from it, so the
	// high-water mark still holds between readings.
	UsageCacheTTL time.Duration
	// IndexSyncEvery is how many index entries may be written between
	// index fsyncs; it bounds the scan at the next start (default 4096).
	IndexSyncEvery int
	// ScrubEvery is the time from the start of one scrub pass (re-reading
	// and verifying every live needle) to the start of the next (default
	// 24 h; negative: no scrubbing).
	ScrubEvery time.Duration
	// ScrubBytesPerSec bounds the scrubber's reads (default 8 MiB/s), so
	// it never competes with clients for the disk.
	ScrubBytesPerSec int64
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default filled in and no Dirs.
func DefaultConfig() Config {
	return Config{
		MaxBlobSize:      64 << 20,
		VolumeSize:       1 << 30,
		SpoolThreshold:   1 << 20,
		HighWater:        0.95,
		MinFreeBytes:     64 << 20,
		MaxBatchWait:     2 * time.Millisecond,
		BodyIdleTimeout:  time.Minute,
		IndexSyncEvery:   4096,
		UsageCacheTTL:    200 * time.Millisecond,
		ScrubEvery:       24 * time.Hour,
		ScrubBytesPerSec: 8 << 20,
	}
}

func (c *Config) withDefaults() {
	d := DefaultConfig()
	if c.FS == nil {
		c.FS = OSFS{}
	}
	if c.MaxBlobSize == 0 {
		c.MaxBlobSize = d.MaxBlobSize
	}
	if c.VolumeSize == 0 {
		c.VolumeSize = d.VolumeSize
	}
	if c.SpoolThreshold == 0 {
		c.SpoolThreshold = d.SpoolThreshold
	}
	if c.HighWater == 0 {
		c.HighWater = d.HighWater
	}
	if c.MinFreeBytes == 0 {
		c.MinFreeBytes = d.MinFreeBytes
	}
	if c.MaxBatchWait == 0 {
		c.MaxBatchWait = d.MaxBatchWait
	}
	if c.BodyIdleTimeout == 0 {
		c.BodyIdleTimeout = d.BodyIdleTimeout
	}
	if c.UsageCacheTTL == 0 {
		c.UsageCacheTTL = d.UsageCacheTTL
	}
	if c.IndexSyncEvery == 0 {
		c.IndexSyncEvery = d.IndexSyncEvery
	}
	if c.ScrubEvery == 0 {
		c.ScrubEvery = d.ScrubEvery
	}
	if c.ScrubBytesPerSec <= 0 {
		c.ScrubBytesPerSec = d.ScrubBytesPerSec
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case len(c.Dirs) == 0:
		return errors.New("chunkserver config: at least one data dir is required")
	case c.MaxBlobSize < 0 || c.MaxBlobSize > maxNeedleBody:
		return fmt.Errorf("chunkserver config: MaxBlobSize %d out of range", c.MaxBlobSize)
	case c.VolumeSize < 0:
		return fmt.Errorf("chunkserver config: VolumeSize %d out of range", c.VolumeSize)
	case c.HighWater < 0 || c.HighWater > 1:
		return fmt.Errorf("chunkserver config: HighWater %v not in [0,1]", c.HighWater)
	case c.MinFreeBytes < 0:
		return fmt.Errorf("chunkserver config: MinFreeBytes %d out of range", c.MinFreeBytes)
	}
	seen := map[string]bool{}
	for _, d := range c.Dirs {
		if d == "" {
			return errors.New("chunkserver config: empty data dir")
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return fmt.Errorf("chunkserver config: data dir %s: %w", d, err)
		}
		if seen[abs] {
			return fmt.Errorf("chunkserver config: data dir %s listed twice", d)
		}
		seen[abs] = true
	}
	return nil
}

type dataDir struct {
	path    string
	lock    io.Closer
	written atomic.Int64 // bytes spooled for puts into this dir, ever
	usage   atomic.Pointer[usageReading]
}

type usageReading struct {
	u       DiskUsage
	at      time.Time
	written int64 // dataDir.written when read
}

// Store is a chunk server's storage: volumes spread over one or more data
// directories. All methods are safe for concurrent use.
type Store struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	dirs    []*dataDir
	seq     atomic.Uint64 // spool file names

	mu      sync.RWMutex
	volumes map[raisfs.VolumeID]*Volume
	where   map[raisfs.VolumeID]*dataDir
	broken  map[raisfs.VolumeID]string // volumes that failed to open
	closed  bool

	stopScrub context.CancelFunc
	scrubDone chan struct{}
}

// Open locks the data dirs, loads every volume in them (recovering torn
// tails) and returns the Store. A volume that cannot be loaded is reported
// in Status and logged, not fatal: the rest keep serving.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.withDefaults()
	s := &Store{
		cfg:     cfg,
		log:     cfg.Logger.With(LogKeySubsystem, "store"),
		volumes: make(map[raisfs.VolumeID]*Volume),
		where:   make(map[raisfs.VolumeID]*dataDir),
		broken:  make(map[raisfs.VolumeID]string),
	}
	s.metrics = newMetrics(s)
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	for _, p := range cfg.Dirs {
		if err := s.openDir(p); err != nil {
			return nil, err
		}
	}
	ok = true
	ctx, cancel := context.WithCancel(context.Background())
	s.stopScrub, s.scrubDone = cancel, make(chan struct{})
	go func() {
		defer close(s.scrubDone)
		if cfg.ScrubEvery > 0 {
			s.scrubLoop(ctx)
		}
	}()
	return s, nil
}

func (s *Store) openDir(p string) error {
	fs := s.cfg.FS
	if err := fs.MkdirAll(filepath.Join(p, "tmp"), 0o755); err != nil {
		return fmt.Errorf("data dir %s: %w", p, err)
	}
	lock, err := fs.Lock(filepath.Join(p, "LOCK"))
	if err != nil {
		return fmt.Errorf("data dir %s: %w", p, err)
	}
	d := &dataDir{path: p, lock: lock}
	s.dirs = append(s.dirs, d)
	// Spool files of uploads that were in flight at a crash are garbage.
	if ents, err := fs.ReadDir(filepath.Join(p, "tmp")); err == nil {
		for _, e := range ents {
			fs.Remove(filepath.Join(p, "tmp", e.Name()))
		}
	}
	ents, err := fs.ReadDir(p)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", p, err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, "vol-") || !strings.HasSuffix(name, ".dat") {
			continue
		}
		id, err := raisfs.ParseVolumeID(strings.TrimSuffix(strings.TrimPrefix(name, "vol-"), ".dat"))
		if err != nil {
			s.log.Warn("ignoring unexpected file in data dir", LogKeyDir, p, "file", name)
			continue
		}
		if other, dup := s.where[id]; dup {
			return fmt.Errorf("volume %s is in both %s and %s; remove one copy", id, other.path, p)
		}
		s.where[id] = d
		v, err := openVolume(s.volumeOptions(d, id))
		if err != nil {
			s.log.Error("volume failed to open; not serving it", LogKeyVolume, id, LogKeyDir, p, "err", err)
			s.broken[id] = err.Error()
			continue
		}
		s.volumes[id] = v
	}
	return nil
}

func (s *Store) volumeOptions(d *dataDir, id raisfs.VolumeID) volumeOptions {
	return volumeOptions{
		fs: s.cfg.FS, dir: d.path, id: id,
		sealSize:     s.cfg.VolumeSize,
		maxBatchWait: s.cfg.MaxBatchWait,
		indexSyncN:   s.cfg.IndexSyncEvery,
		logger:       s.cfg.Logger.With(LogKeySubsystem, "volume"),
		metrics:      s.metrics,
	}
}

func (s *Store) volume(id raisfs.VolumeID) (*Volume, *dataDir, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, nil, fmt.Errorf("store closed: %w", raisfs.ErrUnavailable)
	}
	v, ok := s.volumes[id]
	if !ok {
		if why, bad := s.broken[id]; bad {
			return nil, nil, fmt.Errorf("volume %s: failed to load (%s): %w", id, why, raisfs.ErrUnavailable)
		}
		return nil, nil, fmt.Errorf("volume %s: %w", id, raisfs.ErrNotFound)
	}
	return v, s.where[id], nil
}

// CreateVolume creates an empty, writable volume on the data dir with the
// most free space. Creating a volume that exists is a no-op.
func (s *Store) CreateVolume(ctx context.Context, id raisfs.VolumeID) error {
	if id == 0 {
		return fmt.Errorf("create volume 0: %w", raisfs.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("store closed: %w", raisfs.ErrUnavailable)
	}
	if _, ok := s.volumes[id]; ok {
		return nil
	}
	if _, ok := s.where[id]; ok {
		return fmt.Errorf("create volume %s: exists but failed to load: %w", id, raisfs.ErrUnavailable)
	}
	var best *dataDir
	var bestFree int64 = -1
	for _, d := range s.dirs {
		u, err := s.cfg.FS.Usage(d.path)
		if err != nil {
			s.log.Warn("cannot read data dir usage", LogKeyDir, d.path, "err", err)
			continue
		}
		if free := u.Free - s.reserve(u); free > bestFree {
			best, bestFree = d, free
		}
	}
	if best == nil || bestFree <= 0 {
		return fmt.Errorf("create volume %s: every data dir is past its high-water mark: %w", id, raisfs.ErrNoSpace)
	}
	v, err := createVolume(s.volumeOptions(best, id))
	if err != nil {
		return err
	}
	s.volumes[id] = v
	s.where[id] = best
	s.log.Info("volume created", LogKeyVolume, id, LogKeyDir, best.path)
	return nil
}

// reserve is the free space kept on a filesystem.
func (s *Store) reserve(u DiskUsage) int64 {
	return max(s.cfg.MinFreeBytes, int64(float64(u.Total)*(1-s.cfg.HighWater)))
}

// checkSpace fails with raisfs.ErrNoSpace if storing n more bytes on d
// would pass its high-water mark.
func (s *Store) checkSpace(d *dataDir, n int64) error {
	var u DiskUsage
	r := d.usage.Load()
	if r != nil && time.Since(r.at) < s.cfg.UsageCacheTTL {
		u = r.u
		u.Free -= d.written.Load() - r.written
	} else {
		w := d.written.Load()
		var err error
		if u, err = s.cfg.FS.Usage(d.path); err != nil {
			return fmt.Errorf("data dir %s: %w: %w", d.path, raisfs.ErrUnavailable, err)
		}
		d.usage.Store(&usageReading{u: u, at: time.Now(), written: w})
	}
	if u.Free-n < s.reserve(u) {
		return fmt.Errorf("data dir %s: %d bytes free, %d reserved: %w", d.path, u.Free, s.reserve(u), raisfs.ErrNoSpace)
	}
	return nil
}

// Put stores the blob read from r under its hash h in volume id, and
// returns once it is durable. size is the body length, or -1 if unknown.
// The body is hashed while it is received; nothing is written to the
// volume unless it hashes to h and has the declared size. created is false
// if the volume already held the blob.
//
// Errors wrap raisfs.ErrNotFound (unknown volume), ErrTooLarge,
// ErrSizeMismatch, ErrHashMismatch, ErrNoSpace, ErrSealed or
// ErrUnavailable, or are the body reader's error.
func (s *Store) Put(ctx context.Context, id raisfs.VolumeID, h raisfs.Hash, r io.Reader, size int64) (created bool, err error) {
	return s.put(ctx, id, h, r, size, false)
}

// PutMany is Put for several blobs of volume id, each checked against its
// hash like a single put; the ones that pass are appended together and
// share one fsync. Each blob succeeds or fails on its own.
func (s *Store) PutMany(ctx context.Context, id raisfs.VolumeID, blobs []BlobBody) (created []bool, errs []error) {
	created, errs = make([]bool, len(blobs)), make([]error, len(blobs))
	v, d, err := s.volume(id)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return created, errs
	}
	var sps []*spooled
	var idx []int
	for i, bl := range blobs {
		if err := s.checkSpace(d, int64(len(bl.Body))); err != nil {
			errs[i] = err
			continue
		}
		sp, err := spool(bytes.NewReader(bl.Body), bl.Hash, int64(len(bl.Body)), s.spoolConfig(d))
		if err != nil {
			errs[i] = fmt.Errorf("put %s/%s: %w", id, bl.Hash, classifyIOError(err))
			continue
		}
		defer sp.close()
		sps = append(sps, sp)
		idx = append(idx, i)
	}
	if len(sps) == 0 {
		return created, errs
	}
	if err := ctx.Err(); err != nil {
		for _, i := range idx {
			errs[i] = err
		}
		return created, errs
	}
	for _, sp := range sps {
		d.written.Add(sp.n)
	}
	c, e := v.putMany(sps)
	for j, i := range idx {
		created[i], errs[i] = c[j], e[j]
		if e[j] != nil {
			errs[i] = fmt.Errorf("put %s/%s: %w", id, sps[j].hash, e[j])
		} else if c[j] {
			s.metrics.bytesIn.Add(float64(sps[j].size))
		}
	}
	return created, errs
}

// BlobBody is one blob of PutMany.
type BlobBody struct {
	Hash raisfs.Hash
	Body []byte
}

// Fill is Put for repair: it puts back a blob the masters say volume id
// should hold and does not, even if the volume is sealed or full (the
// blob belonged in it all along). Verified like any put.
func (s *Store) Fill(ctx context.Context, id raisfs.VolumeID, h raisfs.Hash, r io.Reader, size int64) (created bool, err error) {
	return s.put(ctx, id, h, r, size, true)
}

func (s *Store) put(ctx context.Context, id raisfs.VolumeID, h raisfs.Hash, r io.Reader, size int64, fill bool) (created bool, err error) {
	v, d, err := s.volume(id)
	if err != nil {
		return false, err
	}
	if err := s.checkSpace(d, max(size, 0)); err != nil {
		return false, err
	}
	sp, err := spool(r, h, size, s.spoolConfig(d))
	if err != nil {
		return false, fmt.Errorf("put %s/%s: %w", id, h, classifyIOError(err))
	}
	defer sp.close()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if size < 0 {
		if err := s.checkSpace(d, sp.n); err != nil {
			return false, err
		}
	}
	d.written.Add(sp.n)
	created, err = v.put(sp, fill)
	if err != nil {
		return false, fmt.Errorf("put %s/%s: %w", id, h, err)
	}
	if created {
		s.metrics.bytesIn.Add(float64(sp.size))
	}
	return created, nil
}

func (s *Store) spoolConfig(d *dataDir) spoolConfig {
	return spoolConfig{
		fs: s.cfg.FS, tmpDir: filepath.Join(d.path, "tmp"),
		threshold: s.cfg.SpoolThreshold, maxSize: s.cfg.MaxBlobSize, seq: func() uint64 { return s.seq.Add(1) },
	}
}

// Get opens blob h of volume id for reading. The caller must Close it.
// Errors wrap raisfs.ErrNotFound or raisfs.ErrCorrupt.
func (s *Store) Get(ctx context.Context, id raisfs.VolumeID, h raisfs.Hash) (*Blob, error) {
	v, _, err := s.volume(id)
	if err != nil {
		return nil, err
	}
	return v.openBlob(h)
}

// Delete tombstones blob h in volume id, durably. Deleting a deleted blob
// is a no-op; one the volume never held is raisfs.ErrNotFound.
func (s *Store) Delete(ctx context.Context, id raisfs.VolumeID, h raisfs.Hash) error {
	v, _, err := s.volume(id)
	if err != nil {
		return err
	}
	return v.delete(h)
}

// Seal makes volume id read-only for new blobs (deletes still work).
func (s *Store) Seal(ctx context.Context, id raisfs.VolumeID) error {
	v, _, err := s.volume(id)
	if err != nil {
		return err
	}
	return v.seal()
}

// Compact rewrites volume id without garbage, online.
func (s *Store) Compact(ctx context.Context, id raisfs.VolumeID) (CompactResult, error) {
	v, _, err := s.volume(id)
	if err != nil {
		return CompactResult{}, err
	}
	return v.compact(ctx)
}

// List returns up to limit needles of volume id with hashes after 'after',
// in ascending hash order, and whether more follow.
func (s *Store) List(ctx context.Context, id raisfs.VolumeID, after raisfs.Hash, limit int) ([]NeedleInfo, bool, error) {
	v, _, err := s.volume(id)
	if err != nil {
		return nil, false, err
	}
	if limit <= 0 {
		return nil, false, fmt.Errorf("list limit %d: %w", limit, raisfs.ErrInvalidArgument)
	}
	ns, more := v.list(after, limit)
	return ns, more, nil
}

// StreamVolume writes the whole data file of sealed volume id to w. If
// size is not nil, it is called with the stream's length before the first
// byte is written (for a Content-Length: a receiver then tells a stream
// cut short from a whole one).
func (s *Store) StreamVolume(ctx context.Context, id raisfs.VolumeID, w io.Writer, size func(int64)) (int64, error) {
	v, _, err := s.volume(id)
	if err != nil {
		return 0, err
	}
	return v.streamTo(ctx, w, size)
}

// VolumeStatus reports one volume.
func (s *Store) VolumeStatus(id raisfs.VolumeID) (VolumeStatus, error) {
	v, _, err := s.volume(id)
	if err != nil {
		return VolumeStatus{}, err
	}
	return v.status(), nil
}

// ImportVolume creates volume id from a stream made by StreamVolume on a
// peer. Every needle is verified before the volume becomes visible; a
// stream that is torn, corrupt or of another volume is rejected and leaves
// nothing behind.
func (s *Store) ImportVolume(ctx context.Context, id raisfs.VolumeID, r io.Reader) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("store closed: %w", raisfs.ErrUnavailable)
	}
	if _, ok := s.where[id]; ok {
		s.mu.Unlock()
		return fmt.Errorf("import volume %s: %w", id, raisfs.ErrExists)
	}
	var d *dataDir
	var bestFree int64 = -1
	for _, dd := range s.dirs {
		if u, err := s.cfg.FS.Usage(dd.path); err == nil && u.Free-s.reserve(u) > bestFree {
			d, bestFree = dd, u.Free-s.reserve(u)
		}
	}
	if d == nil || bestFree <= 0 {
		s.mu.Unlock()
		return fmt.Errorf("import volume %s: %w", id, raisfs.ErrNoSpace)
	}
	s.where[id] = d // reserve the id while the copy runs
	s.mu.Unlock()
	fail := func(err error) error {
		s.mu.Lock()
		delete(s.where, id)
		s.mu.Unlock()
		return fmt.Errorf("import volume %s: %w", id, err)
	}

	fs := s.cfg.FS
	tmp := filepath.Join(d.path, "tmp", fmt.Sprintf("import-%s-%d", id, s.seq.Add(1)))
	f, err := fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fail(classifyIOError(err))
	}
	keep := false
	defer func() {
		f.Close()
		if !keep {
			fs.Remove(tmp)
		}
	}()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if u, err := fs.Usage(d.path); err == nil && u.Free-int64(n) < s.reserve(u) {
				return fail(raisfs.ErrNoSpace)
			}
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return fail(classifyIOError(err))
			}
			off += int64(n)
		}
		if rerr == io.EOF || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return fail(rerr)
		}
	}
	var sb [superblockSize]byte
	if _, err := f.ReadAt(sb[:], 0); err != nil {
		return fail(fmt.Errorf("stream too short: %w", raisfs.ErrInvalidArgument))
	}
	if sup, err := parseSuperblock(sb[:], superMagic); err != nil || sup.volume != id {
		return fail(fmt.Errorf("stream is not volume %s: %w", id, raisfs.ErrInvalidArgument))
	}
	var bad error
	end, err := scanData(f, superblockSize, off, s.log, func(e indexEntry, corrupt bool) {
		if corrupt && bad == nil {
			bad = fmt.Errorf("needle %s at %d is corrupt: %w", e.hash, e.offset, raisfs.ErrCorrupt)
		}
	})
	if err != nil {
		return fail(err)
	}
	if bad != nil {
		return fail(bad)
	}
	if end != off {
		return fail(fmt.Errorf("stream has %d undecodable bytes at %d: %w", off-end, end, raisfs.ErrCorrupt))
	}
	if err := f.Sync(); err != nil {
		return fail(classifyIOError(err))
	}
	fs.Remove(indexPath(d.path, id))
	if err := fs.Rename(tmp, dataPath(d.path, id)); err != nil {
		return fail(err)
	}
	keep = true
	if err := fs.SyncDir(d.path); err != nil {
		return fail(err)
	}
	v, err := openVolume(s.volumeOptions(d, id))
	if err != nil {
		return fail(err)
	}
	s.mu.Lock()
	s.volumes[id] = v
	s.mu.Unlock()
	s.log.Info("volume imported", LogKeyVolume, id, LogKeyDir, d.path, "bytes", off)
	return nil
}

// DropVolume closes volume id and deletes its files: the masters moved it
// elsewhere (this copy is stale or surplus) or a copy into it failed.
// Readers holding one of its blobs finish reading from the unlinked file.
func (s *Store) DropVolume(ctx context.Context, id raisfs.VolumeID) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("store closed: %w", raisfs.ErrUnavailable)
	}
	v, loaded := s.volumes[id]
	d, ok := s.where[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("drop volume %s: %w", id, raisfs.ErrNotFound)
	}
	if !loaded {
		if _, broken := s.broken[id]; !broken {
			s.mu.Unlock() // an import into it is running
			return fmt.Errorf("drop volume %s: a copy into it is running: %w", id, raisfs.ErrConflict)
		}
	}
	delete(s.volumes, id)
	delete(s.where, id)
	delete(s.broken, id)
	s.mu.Unlock()
	if v != nil {
		if err := v.close(); err != nil {
			s.log.Warn("closing a dropped volume", LogKeyVolume, id, "err", err)
		}
	}
	for _, p := range []string{dataPath(d.path, id), indexPath(d.path, id)} {
		if err := s.cfg.FS.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("drop volume %s: %w", id, err)
		}
	}
	if err := s.cfg.FS.SyncDir(d.path); err != nil {
		return fmt.Errorf("drop volume %s: %w", id, err)
	}
	s.log.Info("volume dropped", LogKeyVolume, id, LogKeyDir, d.path)
	return nil
}

// DirStatus is the capacity of one data dir.
type DirStatus struct {
	Path      string `json:"path"`
	UsedBytes int64  `json:"used_bytes"` // bytes in this dir's volumes
	FreeBytes int64  `json:"free_bytes"` // free on its filesystem
	Total     int64  `json:"total_bytes"`
	Reserved  int64  `json:"reserved_bytes"`
	FSID      uint64 `json:"filesystem_id"` // dirs with the same id share total and free space
	Writable  bool   `json:"writable"`      // below the high-water mark
	Error     string `json:"error,omitempty"`
}

// Status is a point-in-time summary of the store.
type Status struct {
	Dirs          []DirStatus       `json:"dirs"`
	Volumes       []VolumeStatus    `json:"volumes"`
	BrokenVolumes map[string]string `json:"broken_volumes,omitempty"`
}

// Status reports the data dirs and volumes.
func (s *Store) Status() Status {
	s.mu.RLock()
	vols := make([]*Volume, 0, len(s.volumes))
	for _, v := range s.volumes {
		vols = append(vols, v)
	}
	var st Status
	if len(s.broken) > 0 {
		st.BrokenVolumes = map[string]string{}
		for id, why := range s.broken {
			st.BrokenVolumes[id.String()] = why
		}
	}
	s.mu.RUnlock()
	used := map[string]int64{}
	for _, v := range vols {
		vs := v.status()
		used[vs.Dir] += vs.SizeBytes
		st.Volumes = append(st.Volumes, vs)
	}
	sort.Slice(st.Volumes, func(i, j int) bool { return st.Volumes[i].ID < st.Volumes[j].ID })
	for _, d := range s.dirs {
		ds := DirStatus{Path: d.path, UsedBytes: used[d.path]}
		if u, err := s.cfg.FS.Usage(d.path); err != nil {
			ds.Error = err.Error()
		} else {
			ds.FreeBytes, ds.Total, ds.Reserved, ds.FSID = u.Free, u.Total, s.reserve(u), u.FSID
			ds.Writable = u.Free > ds.Reserved
		}
		st.Dirs = append(st.Dirs, ds)
	}
	return st
}

type totals struct{ liveBytes, liveBlobs, volumes int64 }

func (s *Store) totals() totals {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := totals{volumes: int64(len(s.volumes))}
	for _, v := range s.volumes {
		v.mu.Lock()
		t.liveBytes += v.liveBytes
		t.liveBlobs += v.liveCount
		v.mu.Unlock()
	}
	return t
}

// Closed reports whether Close has begun.
func (s *Store) Closed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// Close commits what is queued, closes every volume and releases the data
// dir locks. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	vols := s.volumes
	s.mu.Unlock()
	if s.stopScrub != nil {
		s.stopScrub()
		<-s.scrubDone
	}
	var errs []error
	for _, v := range vols {
		if err := v.close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range s.dirs {
		if err := d.lock.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
