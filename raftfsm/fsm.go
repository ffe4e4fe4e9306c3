package raftfsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeebo/blake3"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

// CommandVersion is the log-entry encoding this build writes and the
// newest it applies.
const CommandVersion = 1

// OpsVersion is the newest set of commands this build applies. A build
// that meets a command it does not know stops (it cannot apply the log),
// so a leader proposes a command only once every master has announced a
// set that includes it:
//
//	1: objects, volumes, servers, classes, masters, deletions
//	2: Txn (the records namespace)
//	3: PutObjects (a batch of puts in one entry)
const OpsVersion = 3

// OpsTxn is the first OpsVersion with the Txn command.
const OpsTxn = 2

// OpsPutObjects is the first OpsVersion with the PutObjects command.
const OpsPutObjects = 3

// MaxKeyLen is the longest object key accepted.
const MaxKeyLen = 1024

// DefaultClass is the replication class used when a put names none.
const DefaultClass = "default"

// ErrBlobGone is returned for a dedup put (volume 0) whose blob no longer
// exists: it was deleted between the look-up and the commit. The caller
// uploads the bytes and commits again. It wraps raisfs.ErrNotFound.
var ErrBlobGone = fmt.Errorf("blob gone, upload it: %w", raisfs.ErrNotFound)

// ErrBlobBeingDeleted is returned for a put onto a volume from which the
// same blob is being deleted: a tombstone could land after the new bytes.
// The caller starts the put over (a new placement avoids that volume), as
// after an expired lease, which it wraps: it is not a conflict of content.
var ErrBlobBeingDeleted = fmt.Errorf("blob is being deleted from that volume, start the put over: %w", raisfs.ErrLeaseExpired)

var (
	bucketMeta    = []byte("meta")
	bucketObjects = []byte("objects")
	bucketBlobs   = []byte("blobs")
	bucketVolumes = []byte("volumes")
	bucketServers = []byte("servers")
	bucketClasses = []byte("classes")
	bucketMasters = []byte("masters")
	bucketPending = []byte("pending_deletes") // hash(32) || volume(8) → queued at (unix nanos, 8 bytes; empty in older states)
	// bucketCommits remembers the commits of uploads until their lease
	// expires: lease expiry (8, big-endian) || blake3(key, hash, volume)[:16]
	// → empty. A commit retried after its first attempt applied (the answer
	// was lost) is then recognised even if the key was deleted meanwhile,
	// instead of binding the key a second time.
	bucketCommits = []byte("applied_commits")
	bucketRecords = []byte("records") // record key → Record (value, version)

	keyApplied    = []byte("applied_index")
	keyNextVolume = []byte("next_volume")
	keyLeaseKey   = []byte("lease_key")
	keyObjects    = []byte("objects")
	keyBytes      = []byte("bytes")
	keyBlobs      = []byte("blobs")
	keyBlobBytes  = []byte("blob_bytes")
	keySchema     = []byte("schema")
	keyRevision   = []byte("records_revision")

	allBuckets = [][]byte{bucketMeta, bucketObjects, bucketBlobs, bucketVolumes, bucketServers, bucketClasses, bucketMasters, bucketPending, bucketCommits, bucketRecords}
)

const schemaVersion = 1

// initialMmapSize: see openDB.
const initialMmapSize = 8 << 30

// Entry is one committed Raft log entry handed to Apply. Data nil marks an
// entry that carries no command (a configuration change): it only moves
// the applied index.
type Entry struct {
	Index uint64
	Data  []byte
}

// Result is what applying one entry produced. Err is a deterministic
// domain rejection (the same on every master), wrapping a raisfs sentinel;
// the entry changed nothing. The other fields depend on the command.
type Result struct {
	Err error
	// VolumeID is the id CreateVolume allocated.
	VolumeID raisfs.VolumeID
	// Created is false for a PutObject that found the key already bound to
	// the same content (an idempotent retry).
	Created bool
	// Revision is the revision a Txn wrote its records at.
	Revision uint64
	// Skipped is true for an entry at or below the applied index (replayed
	// after a restart): it was applied before and is not applied again.
	Skipped bool
	// Items are the results of a PutObjects' puts, in order.
	Items []Result
}

// FSM is the master group's replicated state machine: the object, blob,
// volume, chunk-server, class and master maps, in a bbolt file.
//
// Concurrency contract (as hashicorp/raft's FSM): Apply and Restore are
// called by one goroutine at a time; Snapshot may be called concurrently
// with reads but not with Apply; the Snapshot it returns may be written
// out concurrently with later Applys (it holds a bbolt read transaction, a
// consistent view). Read methods are safe at any time and see the state as
// of the last completed Apply.
//
// Apply is deterministic: it reads no clock (time comes in the command),
// no randomness and nothing outside the bbolt file.
type FSM struct {
	path string
	log  *slog.Logger

	mu   sync.RWMutex // held for writing only while Restore swaps the file
	db   *bolt.DB
	lock *os.File // flock on PATH.lock; nil once closed

	applied atomic.Uint64 // the durable applied index, cached for readers
	// placementVer changes whenever a volume or chunk-server record may
	// have changed, so callers can cache those (small, hot) maps.
	placementVer atomic.Uint64
}

// Open opens (creating if needed) the state file at path.
//
// A state file left by a session that did not close cleanly, on a machine
// that has restarted since, is not trusted (it is written without fsync):
// it is moved aside to PATH.discarded and the state starts empty, with
// applied index 0, so that the host restores the newest Raft snapshot and
// replays the log (see trust.go).
func Open(path string, logger *slog.Logger) (*FSM, error) {
	return openWith(path, logger, readBootID())
}

func openWith(path string, logger *slog.Logger, bootID string) (*FSM, error) {
	if logger == nil {
		logger = slog.Default()
	}
	lock, err := lockState(path)
	if err != nil {
		return nil, err
	}
	if ok, why := trusted(path, bootID); !ok {
		logger.Warn("state file not trusted; moving it aside, it will be rebuilt from the newest snapshot and the Raft log",
			"path", path, "reason", why)
		if err := os.Rename(path, path+".discarded"); err != nil {
			lock.Close()
			return nil, fmt.Errorf("discard untrusted state: %w", err)
		}
	}
	if err := beginSession(path, bootID); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	db, err := openDB(path)
	if err != nil {
		lock.Close()
		return nil, err
	}
	f := &FSM{path: path, log: logger, db: db, lock: lock}
	f.loadApplied()
	return f, nil
}

func openDB(path string) (*bolt.DB, error) {
	// The freelist is rebuilt at open instead of written at every commit:
	// fewer pages per commit, and a commit per Raft batch is the hot path.
	// A large initial mmap keeps a write from having to remap the file
	// while a snapshot's long read transaction is open: bbolt makes the
	// remap wait for every reader, which would stall Apply for the whole
	// snapshot. It reserves address space, not memory.
	// NoSync: the Raft log is the durable record; see trust.go.
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType,
		InitialMmapSize: initialMmapSize, NoSync: true,
	})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		if v := m.Get(keySchema); v != nil && getU64(v) != schemaVersion {
			return fmt.Errorf("state schema %d, this build reads %d", getU64(v), schemaVersion)
		}
		return m.Put(keySchema, u64(schemaVersion))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	return db, nil
}

// Close closes the state file.
// Close syncs the state file, closes it and marks it clean.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lock == nil {
		return nil
	}
	err := f.db.Sync()
	if cerr := f.db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = endSession(f.path)
	}
	f.lock.Close()
	f.lock = nil
	if err != nil {
		return fmt.Errorf("close state %s: %w", f.path, err)
	}
	return nil
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// deltas accumulates counter changes over one Apply batch; they are
// written once per batch instead of once per entry.
type deltas struct{ objects, bytes, blobs, blobBytes int64 }

func (d deltas) flush(m *bolt.Bucket) error {
	for _, c := range []struct {
		key []byte
		v   int64
	}{{keyObjects, d.objects}, {keyBytes, d.bytes}, {keyBlobs, d.blobs}, {keyBlobBytes, d.blobBytes}} {
		if c.v != 0 {
			if err := addI64(m, c.key, c.v); err != nil {
				return err
			}
		}
	}
	return nil
}

func addI64(m *bolt.Bucket, key []byte, d int64) error {
	return m.Put(key, u64(uint64(int64(getU64(m.Get(key)))+d)))
}

// AppliedIndex is the index of the last entry applied, durable with it.
// It is read on every linearizable read, so it is served from memory.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// loadApplied refreshes the cached applied index from the file.
func (f *FSM) loadApplied() {
	f.db.View(func(tx *bolt.Tx) error {
		f.applied.Store(getU64(tx.Bucket(bucketMeta).Get(keyApplied)))
		return nil
	})
}

func (f *FSM) view(fn func(tx *bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.db.View(fn)
}

// Apply applies committed entries in one bbolt transaction, together with
// the new applied index, so a restart neither loses nor re-applies an
// entry: entries at or below the stored applied index are skipped.
//
// An entry that does not decode, or of a newer encoding version, is
// corruption or an upgrade done in the wrong order: Apply panics rather
// than let masters diverge. A failing disk also panics: the state machine
// cannot go on without it, and Raft will replay the entries after restart.
func (f *FSM) Apply(entries []Entry) []Result {
	f.mu.RLock()
	defer f.mu.RUnlock()
	results := make([]Result, len(entries))
	var newApplied uint64
	placement := false
	err := f.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		applied := getU64(m.Get(keyApplied))
		var d deltas
		for i, e := range entries {
			if e.Index != 0 && e.Index <= applied {
				results[i] = Result{Skipped: true}
				continue
			}
			if e.Data == nil { // a Raft entry that is not a command: only the index moves
				applied = max(applied, e.Index)
				continue
			}
			var cmd fsmpb.Command
			if err := proto.Unmarshal(e.Data, &cmd); err != nil {
				panic(fmt.Sprintf("raftfsm: entry %d does not decode: %v", e.Index, err))
			}
			if cmd.Version == 0 || cmd.Version > CommandVersion {
				panic(fmt.Sprintf("raftfsm: entry %d has encoding version %d; this build applies up to %d", e.Index, cmd.Version, CommandVersion))
			}
			switch cmd.Op.(type) {
			case *fsmpb.Command_CreateVolume, *fsmpb.Command_SetVolumeState, *fsmpb.Command_UpsertServer, *fsmpb.Command_SetServerState:
				placement = true
			}
			r, err := applyCommand(tx, &d, &cmd)
			if err != nil {
				return fmt.Errorf("entry %d: %w", e.Index, err)
			}
			results[i] = r
			if e.Index > applied {
				applied = e.Index
			}
		}
		if err := d.flush(m); err != nil {
			return err
		}
		newApplied = applied
		return m.Put(keyApplied, u64(applied))
	})
	if err != nil {
		panic(fmt.Sprintf("raftfsm: apply: %v", err))
	}
	f.applied.Store(newApplied) // only once the transaction is durable
	if placement {
		f.placementVer.Add(1)
	}
	return results
}

// reject is a domain rejection: the entry changes nothing.
func reject(err error) (Result, error) { return Result{Err: err}, nil }

// applyCommand applies one command. A non-nil error is a storage failure
// (fatal); rejections come back in Result.Err, and a rejected command has
// written nothing: every handler validates before it writes.
func applyCommand(tx *bolt.Tx, d *deltas, cmd *fsmpb.Command) (Result, error) {
	now := cmd.NowUnixNano
	switch op := cmd.Op.(type) {
	case *fsmpb.Command_PutObject:
		return applyPut(tx, d, op.PutObject, now)
	case *fsmpb.Command_PutObjects:
		items := make([]Result, len(op.PutObjects.Puts))
		for i, p := range op.PutObjects.Puts {
			r, err := applyPut(tx, d, p, now)
			if err != nil {
				return Result{}, err
			}
			items[i] = r
		}
		return Result{Items: items}, nil
	case *fsmpb.Command_DeleteObject:
		return applyDelete(tx, d, op.DeleteObject, now)
	case *fsmpb.Command_CreateVolume:
		return applyCreateVolume(tx, op.CreateVolume, now)
	case *fsmpb.Command_SetVolumeState:
		return applySetVolumeState(tx, op.SetVolumeState, now)
	case *fsmpb.Command_UpsertServer:
		return applyUpsertServer(tx, op.UpsertServer, now)
	case *fsmpb.Command_SetServerState:
		return applySetServerState(tx, op.SetServerState, now)
	case *fsmpb.Command_QueueDelete:
		return applyQueueDelete(tx, op.QueueDelete, now)
	case *fsmpb.Command_Txn:
		return applyTxn(tx, d, op.Txn, now)
	case *fsmpb.Command_BlobGone:
		key := pendingKey(op.BlobGone.Hash, op.BlobGone.Volume)
		return Result{}, tx.Bucket(bucketPending).Delete(key)
	case *fsmpb.Command_SetClass:
		if err := validateClass(op.SetClass.Class); err != nil {
			return reject(err)
		}
		return Result{}, putProto(tx.Bucket(bucketClasses), []byte(op.SetClass.Class.Name), op.SetClass.Class)
	case *fsmpb.Command_InitCluster:
		return applyInit(tx, op.InitCluster)
	case *fsmpb.Command_SetMaster:
		b := tx.Bucket(bucketMasters)
		if op.SetMaster.Remove {
			return Result{}, b.Delete([]byte(op.SetMaster.Id))
		}
		if op.SetMaster.Id == "" {
			return reject(fmt.Errorf("set master: empty id: %w", raisfs.ErrInvalidArgument))
		}
		return Result{}, putProto(b, []byte(op.SetMaster.Id), &fsmpb.Master{ApiAddress: op.SetMaster.ApiAddress, OpsVersion: op.SetMaster.OpsVersion})
	default:
		panic(fmt.Sprintf("raftfsm: unknown command %T", cmd.Op))
	}
}

func putProto(b *bolt.Bucket, key []byte, m proto.Message) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return b.Put(key, v)
}

func getProto(b *bolt.Bucket, key []byte, m proto.Message) (bool, error) {
	v := b.Get(key)
	if v == nil {
		return false, nil
	}
	if err := proto.Unmarshal(v, m); err != nil {
		return true, fmt.Errorf("decode %s record %x: %w", b, key, err)
	}
	return true, nil
}

// ValidateKey checks an object key.
func ValidateKey(key []byte) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return fmt.Errorf("key of %d bytes: want 1..%d: %w", len(key), MaxKeyLen, raisfs.ErrInvalidArgument)
	}
	return nil
}

func pendingKey(hash []byte, vol uint64) []byte {
	k := make([]byte, 0, raisfs.HashSize+8)
	k = append(k, hash...)
	return append(k, u64(vol)...)
}

// checkPut validates a PutObject against the state without writing.
// skip is true when it would change nothing (the same commit applied
// before, or the key already bound to this content); reject is a domain
// rejection; err a storage failure.
func checkPut(tx *bolt.Tx, p *fsmpb.PutObject, now int64) (skip bool, reject, err error) {
	if err := ValidateKey(p.Key); err != nil {
		return false, err, nil
	}
	if len(p.Hash) != raisfs.HashSize || p.Size < 0 {
		return false, fmt.Errorf("put: bad hash or size: %w", raisfs.ErrInvalidArgument), nil
	}
	if p.Volume != 0 && tx.Bucket(bucketCommits).Get(commitMarker(p)) != nil {
		return true, nil, nil // this very commit applied before: never twice
	}
	var existing fsmpb.Object
	if ok, err := getProto(tx.Bucket(bucketObjects), p.Key, &existing); err != nil {
		return false, nil, err
	} else if ok {
		if bytes.Equal(existing.Hash, p.Hash) {
			return true, nil, nil // idempotent retry
		}
		return false, fmt.Errorf("key %q is bound to other content: %w", truncKey(p.Key), raisfs.ErrConflict), nil
	}
	// An upload's commit is valid only within its lease, whether or not
	// the blob exists by now (its marker is kept only that long).
	if p.Volume != 0 && p.LeaseExpiryUnixNano < now {
		return false, fmt.Errorf("put: lease expired %s before commit: %w",
			time.Duration(now-p.LeaseExpiryUnixNano), raisfs.ErrLeaseExpired), nil
	}
	var blob fsmpb.Blob
	have, err := getProto(tx.Bucket(bucketBlobs), p.Hash, &blob)
	if err != nil {
		return false, nil, err
	}
	switch {
	case have:
		if blob.Size != p.Size {
			return false, fmt.Errorf("put: blob is %d bytes, put says %d: %w", blob.Size, p.Size, raisfs.ErrInvalidArgument), nil
		}
	case p.Volume == 0:
		return false, ErrBlobGone, nil
	default:
		var vol fsmpb.Volume
		if ok, err := getProto(tx.Bucket(bucketVolumes), u64(p.Volume), &vol); err != nil {
			return false, nil, err
		} else if !ok {
			return false, fmt.Errorf("put: volume %d: %w", p.Volume, raisfs.ErrNotFound), nil
		}
		if tx.Bucket(bucketPending).Get(pendingKey(p.Hash, p.Volume)) != nil {
			return false, ErrBlobBeingDeleted, nil
		}
	}
	return false, nil, nil
}

func applyPut(tx *bolt.Tx, d *deltas, p *fsmpb.PutObject, now int64) (Result, error) {
	skip, rej, err := checkPut(tx, p, now)
	switch {
	case err != nil:
		return Result{}, err
	case rej != nil:
		return reject(rej)
	case skip:
		return Result{Created: false}, nil
	}
	objects, blobs := tx.Bucket(bucketObjects), tx.Bucket(bucketBlobs)
	commits := tx.Bucket(bucketCommits)
	var marker []byte
	if p.Volume != 0 {
		marker = commitMarker(p)
	}
	var blob fsmpb.Blob
	have, err := getProto(blobs, p.Hash, &blob)
	if err != nil {
		return Result{}, err
	}
	if have {
		blob.Refs++
	} else { // checked: a live volume, not being deleted from
		blob = fsmpb.Blob{Volume: p.Volume, Size: p.Size, Refs: 1}
		d.blobs++
		d.blobBytes += p.Size
	}
	if err := putProto(blobs, p.Hash, &blob); err != nil {
		return Result{}, err
	}
	class := p.Class
	if class == "" {
		class = DefaultClass
	}
	obj := &fsmpb.Object{Hash: p.Hash, Size: p.Size, Class: class, CreatedUnixNano: now}
	if err := putProto(objects, p.Key, obj); err != nil {
		return Result{}, err
	}
	d.objects++
	d.bytes += p.Size
	if marker != nil {
		if err := expireCommits(commits, now); err != nil {
			return Result{}, err
		}
		if err := commits.Put(marker, nil); err != nil {
			return Result{}, err
		}
	}
	return Result{Created: true}, nil
}

func commitMarker(p *fsmpb.PutObject) []byte {
	h := blake3.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(p.Key)))
	h.Write(n[:])
	h.Write(p.Key)
	h.Write(p.Hash)
	binary.BigEndian.PutUint64(n[:], p.Volume)
	h.Write(n[:])
	k := make([]byte, 8, 24)
	binary.BigEndian.PutUint64(k, uint64(p.LeaseExpiryUnixNano))
	return h.Sum(k)[:24]
}

// expireCommits drops up to a few markers whose lease has expired (they
// sort by expiry), so the bucket holds about a lease's worth of commits.
func expireCommits(b *bolt.Bucket, now int64) error {
	var old [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && len(old) < 16 && int64(binary.BigEndian.Uint64(k)) < now; k, _ = c.Next() {
		old = append(old, append([]byte(nil), k...))
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func truncKey(k []byte) string {
	if len(k) > 64 {
		return string(k[:64]) + "…"
	}
	return string(k)
}

func applyDelete(tx *bolt.Tx, d *deltas, del *fsmpb.DeleteObject, now int64) (Result, error) {
	if err := ValidateKey(del.Key); err != nil {
		return reject(err)
	}
	objects, blobs := tx.Bucket(bucketObjects), tx.Bucket(bucketBlobs)
	var obj fsmpb.Object
	if ok, err := getProto(objects, del.Key, &obj); err != nil {
		return Result{}, err
	} else if !ok {
		return reject(fmt.Errorf("key %q: %w", truncKey(del.Key), raisfs.ErrNotFound))
	}
	var blob fsmpb.Blob
	if ok, err := getProto(blobs, obj.Hash, &blob); err != nil {
		return Result{}, err
	} else if !ok {
		return Result{}, fmt.Errorf("object %q names blob %x, which is missing", truncKey(del.Key), obj.Hash)
	}
	if err := objects.Delete(del.Key); err != nil {
		return Result{}, err
	}
	d.objects--
	d.bytes -= obj.Size
	if blob.Refs > 1 {
		blob.Refs--
		return Result{}, putProto(blobs, obj.Hash, &blob)
	}
	// Last reference: the blob goes, and its needles are queued for
	// tombstoning on the volume's members.
	if err := blobs.Delete(obj.Hash); err != nil {
		return Result{}, err
	}
	d.blobs--
	d.blobBytes -= blob.Size
	return Result{}, tx.Bucket(bucketPending).Put(pendingKey(obj.Hash, blob.Volume), u64(uint64(now)))
}

func applyQueueDelete(tx *bolt.Tx, q *fsmpb.QueueDelete, now int64) (Result, error) {
	if len(q.Hash) != raisfs.HashSize || q.Volume == 0 {
		return reject(fmt.Errorf("queue delete: bad hash or volume: %w", raisfs.ErrInvalidArgument))
	}
	var blob fsmpb.Blob
	if ok, err := getProto(tx.Bucket(bucketBlobs), q.Hash, &blob); err != nil {
		return Result{}, err
	} else if ok && blob.Volume == q.Volume {
		return reject(fmt.Errorf("queue delete: blob %x lives in volume %d: not an orphan: %w", q.Hash, q.Volume, raisfs.ErrConflict))
	}
	key := pendingKey(q.Hash, q.Volume)
	if tx.Bucket(bucketPending).Get(key) != nil {
		return Result{}, nil // queued already
	}
	return Result{}, tx.Bucket(bucketPending).Put(key, u64(uint64(now)))
}

func applyCreateVolume(tx *bolt.Tx, c *fsmpb.CreateVolume, now int64) (Result, error) {
	if len(c.Members) == 0 {
		return reject(fmt.Errorf("create volume: no members: %w", raisfs.ErrInvalidArgument))
	}
	servers := tx.Bucket(bucketServers)
	seen := map[string]bool{}
	for _, id := range c.Members {
		if seen[id] {
			return reject(fmt.Errorf("create volume: member %s twice: %w", id, raisfs.ErrInvalidArgument))
		}
		seen[id] = true
		if servers.Get([]byte(id)) == nil {
			return reject(fmt.Errorf("create volume: member %s: %w", id, raisfs.ErrNotFound))
		}
	}
	m := tx.Bucket(bucketMeta)
	id := getU64(m.Get(keyNextVolume))
	if id == 0 {
		id = 1
	}
	if err := m.Put(keyNextVolume, u64(id+1)); err != nil {
		return Result{}, err
	}
	vol := &fsmpb.Volume{Members: c.Members, State: fsmpb.VolumeState_VOLUME_CREATING, Epoch: 1, Class: c.Class, CreatedUnixNano: now}
	if err := putProto(tx.Bucket(bucketVolumes), u64(id), vol); err != nil {
		return Result{}, err
	}
	return Result{VolumeID: raisfs.VolumeID(id)}, nil
}

func applySetVolumeState(tx *bolt.Tx, s *fsmpb.SetVolumeState, now int64) (Result, error) {
	b := tx.Bucket(bucketVolumes)
	var vol fsmpb.Volume
	if ok, err := getProto(b, u64(s.Id), &vol); err != nil {
		return Result{}, err
	} else if !ok {
		return reject(fmt.Errorf("volume %d: %w", s.Id, raisfs.ErrNotFound))
	}
	if s.IfEpoch && vol.Epoch != s.Epoch {
		return reject(fmt.Errorf("volume %d is at epoch %d, change planned at %d: %w", s.Id, vol.Epoch, s.Epoch, raisfs.ErrConflict))
	}
	if s.State != fsmpb.VolumeState_VOLUME_STATE_UNSPECIFIED {
		vol.State = s.State
	}
	if len(s.Members) > 0 {
		vol.Members = s.Members
		vol.Epoch++
		vol.MembersChangedUnixNano = now
	}
	return Result{}, putProto(b, u64(s.Id), &vol)
}

func applyUpsertServer(tx *bolt.Tx, u *fsmpb.UpsertServer, now int64) (Result, error) {
	if !raisfs.ValidNodeID(u.Id) || u.Address == "" {
		return reject(fmt.Errorf("register server %q: bad id or address: %w", u.Id, raisfs.ErrInvalidArgument))
	}
	b := tx.Bucket(bucketServers)
	var s fsmpb.Server
	had, err := getProto(b, []byte(u.Id), &s)
	if err != nil {
		return Result{}, err
	}
	s.Address, s.Dc, s.Rack = u.Address, u.Dc, u.Rack
	if !had || s.State == fsmpb.ServerState_SERVER_DOWN {
		s.State = fsmpb.ServerState_SERVER_ALIVE
		s.SinceUnixNano = now
	}
	return Result{Created: !had}, putProto(b, []byte(u.Id), &s)
}

func applySetServerState(tx *bolt.Tx, u *fsmpb.SetServerState, now int64) (Result, error) {
	b := tx.Bucket(bucketServers)
	var s fsmpb.Server
	if ok, err := getProto(b, []byte(u.Id), &s); err != nil {
		return Result{}, err
	} else if !ok {
		return reject(fmt.Errorf("server %q: %w", u.Id, raisfs.ErrNotFound))
	}
	if u.State == fsmpb.ServerState_SERVER_STATE_UNSPECIFIED {
		return reject(fmt.Errorf("server %q: no state: %w", u.Id, raisfs.ErrInvalidArgument))
	}
	if s.State != u.State {
		s.State = u.State
		s.SinceUnixNano = now
	}
	return Result{}, putProto(b, []byte(u.Id), &s)
}

func validateClass(c *fsmpb.ReplicationClass) error {
	if c == nil || c.Name == "" || c.Copies == 0 || c.Copies > 16 || c.WriteQuorum > c.Copies {
		return fmt.Errorf("replication class %v: want a name, 1..16 copies, quorum <= copies: %w", c, raisfs.ErrInvalidArgument)
	}
	return nil
}

func applyInit(tx *bolt.Tx, in *fsmpb.InitCluster) (Result, error) {
	m := tx.Bucket(bucketMeta)
	if m.Get(keyLeaseKey) != nil {
		return Result{}, nil // initialised once; later inits (new leaders) change nothing
	}
	if len(in.LeaseKey) < 32 {
		return reject(fmt.Errorf("init: lease key too short: %w", raisfs.ErrInvalidArgument))
	}
	if err := validateClass(in.DefaultClass); err != nil {
		return reject(err)
	}
	if err := m.Put(keyLeaseKey, in.LeaseKey); err != nil {
		return Result{}, err
	}
	return Result{Created: true}, putProto(tx.Bucket(bucketClasses), []byte(in.DefaultClass.Name), in.DefaultClass)
}

// --- snapshots ---

// Snapshot is a consistent, point-in-time view of the state. It must be
// released; it may be written out concurrently with later Applys.
type Snapshot struct {
	tx   *bolt.Tx
	once sync.Once
	f    *FSM
}

// Snapshot captures the current state: it opens a bbolt read transaction,
// which is cheap; the copy happens in WriteTo.
func (f *FSM) Snapshot() (*Snapshot, error) {
	f.mu.RLock()
	tx, err := f.db.Begin(false)
	if err != nil {
		f.mu.RUnlock()
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &Snapshot{tx: tx, f: f}, nil
}

// WriteTo streams the state as a bbolt file image.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	n, err := s.tx.WriteTo(w)
	if err != nil {
		return n, fmt.Errorf("snapshot: write: %w", err)
	}
	return n, nil
}

// Index is the applied index the snapshot reflects.
func (s *Snapshot) Index() uint64 { return getU64(s.tx.Bucket(bucketMeta).Get(keyApplied)) }

// Release ends the snapshot's read transaction. It is idempotent.
func (s *Snapshot) Release() {
	s.once.Do(func() {
		s.tx.Rollback()
		s.f.mu.RUnlock()
	})
}

// Restore replaces the whole state with a snapshot stream, atomically: the
// stream is written to a temp file, synced and checked, then renamed over
// the state file. A bad stream leaves the state as it was.
func (f *FSM) Restore(r io.Reader) error {
	tmp := f.path + ".restore"
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp)
	_, err = io.Copy(out, r)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore: copy: %w", err)
	}
	// Check the image opens and has our buckets before it replaces anything.
	check, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("restore: snapshot is not a state file: %w", err)
	}
	err = check.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			return errors.New("no meta bucket")
		}
		return nil
	})
	check.Close()
	if err != nil {
		return fmt.Errorf("restore: snapshot is not a state file: %w", err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.db.Close(); err != nil {
		return fmt.Errorf("restore: close state: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		// Reopen the old state: nothing was replaced.
		if db, oerr := openDB(f.path); oerr == nil {
			f.db = db
		}
		return fmt.Errorf("restore: %w", err)
	}
	if d, err := os.Open(filepath.Dir(f.path)); err == nil {
		d.Sync()
		d.Close()
	}
	db, err := openDB(f.path)
	if err != nil {
		panic(fmt.Sprintf("raftfsm: restore: reopen state: %v", err))
	}
	f.db = db
	f.loadApplied()
	f.placementVer.Add(1)
	return nil
}

// PlacementVersion changes (after the change is applied) whenever a
// volume or chunk-server record may have changed: a cache of Volumes and
// Servers taken at version v is current while the version is still v.
func (f *FSM) PlacementVersion() uint64 { return f.placementVer.Load() }

// --- reads ---

// Object returns the object bound to key, or an error wrapping
// raisfs.ErrNotFound.
func (f *FSM) Object(key []byte) (*fsmpb.Object, error) {
	var obj fsmpb.Object
	var ok bool
	err := f.view(func(tx *bolt.Tx) (err error) {
		ok, err = getProto(tx.Bucket(bucketObjects), key, &obj)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("key %q: %w", truncKey(key), raisfs.ErrNotFound)
	}
	return &obj, nil
}

// Blob returns the blob record for hash, or an error wrapping
// raisfs.ErrNotFound.
func (f *FSM) Blob(hash []byte) (*fsmpb.Blob, error) {
	var b fsmpb.Blob
	var ok bool
	err := f.view(func(tx *bolt.Tx) (err error) {
		ok, err = getProto(tx.Bucket(bucketBlobs), hash, &b)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("blob %x: %w", hash, raisfs.ErrNotFound)
	}
	return &b, nil
}

// ObjectWithBlob returns an object and its blob from one consistent view.
func (f *FSM) ObjectWithBlob(key []byte) (*fsmpb.Object, *fsmpb.Blob, *fsmpb.Volume, error) {
	var obj fsmpb.Object
	var blob fsmpb.Blob
	var vol fsmpb.Volume
	err := f.view(func(tx *bolt.Tx) error {
		ok, err := getProto(tx.Bucket(bucketObjects), key, &obj)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("key %q: %w", truncKey(key), raisfs.ErrNotFound)
		}
		if ok, err = getProto(tx.Bucket(bucketBlobs), obj.Hash, &blob); err != nil || !ok {
			return fmt.Errorf("key %q: blob %x missing: %v", truncKey(key), obj.Hash, err)
		}
		if ok, err = getProto(tx.Bucket(bucketVolumes), u64(blob.Volume), &vol); err != nil || !ok {
			return fmt.Errorf("key %q: volume %d missing: %v", truncKey(key), blob.Volume, err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return &obj, &blob, &vol, nil
}

// ListedObject is one entry of List.
type ListedObject struct {
	Key []byte
	*fsmpb.Object
}

// seekAfter positions c at the first key that starts with prefix and
// sorts after after (nil: the first with prefix).
func seekAfter(c *bolt.Cursor, prefix, after []byte) (k, v []byte) {
	start := prefix
	if bytes.Compare(after, prefix) >= 0 {
		start = after
	}
	k, v = c.Seek(start)
	for k != nil && after != nil && bytes.Compare(k, after) <= 0 {
		k, v = c.Next()
	}
	return k, v
}

// List returns up to limit objects whose keys start with prefix and sort
// after 'after', in key order, and whether more follow.
func (f *FSM) List(prefix, after []byte, limit int) ([]ListedObject, bool, error) {
	var out []ListedObject
	more := false
	err := f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketObjects).Cursor()
		for k, v := seekAfter(c, prefix, after); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(out) == limit {
				more = true
				break
			}
			var o fsmpb.Object
			if err := proto.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("decode object %q: %w", truncKey(k), err)
			}
			out = append(out, ListedObject{Key: bytes.Clone(k), Object: &o})
		}
		return nil
	})
	return out, more, err
}

// Volume returns volume id, or an error wrapping raisfs.ErrNotFound.
func (f *FSM) Volume(id raisfs.VolumeID) (*fsmpb.Volume, error) {
	var v fsmpb.Volume
	var ok bool
	err := f.view(func(tx *bolt.Tx) (err error) {
		ok, err = getProto(tx.Bucket(bucketVolumes), u64(uint64(id)), &v)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("volume %d: %w", id, raisfs.ErrNotFound)
	}
	return &v, nil
}

// Volumes returns every volume, by id.
func (f *FSM) Volumes() (map[raisfs.VolumeID]*fsmpb.Volume, error) {
	out := map[raisfs.VolumeID]*fsmpb.Volume{}
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVolumes).ForEach(func(k, v []byte) error {
			var vol fsmpb.Volume
			if err := proto.Unmarshal(v, &vol); err != nil {
				return err
			}
			out[raisfs.VolumeID(getU64(k))] = &vol
			return nil
		})
	})
	return out, err
}

// Servers returns every registered chunk server, by id.
func (f *FSM) Servers() (map[string]*fsmpb.Server, error) {
	out := map[string]*fsmpb.Server{}
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketServers).ForEach(func(k, v []byte) error {
			var s fsmpb.Server
			if err := proto.Unmarshal(v, &s); err != nil {
				return err
			}
			out[string(k)] = &s
			return nil
		})
	})
	return out, err
}

// Class returns the named replication class ("" is the default).
func (f *FSM) Class(name string) (*fsmpb.ReplicationClass, error) {
	if name == "" {
		name = DefaultClass
	}
	var c fsmpb.ReplicationClass
	var ok bool
	err := f.view(func(tx *bolt.Tx) (err error) {
		ok, err = getProto(tx.Bucket(bucketClasses), []byte(name), &c)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("replication class %q: %w", name, raisfs.ErrNotFound)
	}
	return &c, nil
}

// LeaseKey returns the key that signs write leases; nil before InitCluster.
func (f *FSM) LeaseKey() []byte {
	var k []byte
	f.view(func(tx *bolt.Tx) error {
		k = bytes.Clone(tx.Bucket(bucketMeta).Get(keyLeaseKey))
		return nil
	})
	return k
}

// MasterInfo is what a master announced of itself.
type MasterInfo struct {
	APIAddress string
	// OpsVersion is the command set its build applies (1 for builds that
	// announced none).
	OpsVersion uint32
}

// Masters returns what the known masters announced, by id.
func (f *FSM) Masters() (map[string]MasterInfo, error) {
	out := map[string]MasterInfo{}
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMasters).ForEach(func(k, v []byte) error {
			var m fsmpb.Master
			if err := proto.Unmarshal(v, &m); err != nil {
				return err
			}
			out[string(k)] = MasterInfo{APIAddress: m.ApiAddress, OpsVersion: max(m.OpsVersion, 1)}
			return nil
		})
	})
	return out, err
}

// PendingDelete is a blob whose last key is gone, to be tombstoned on its
// volume's members.
type PendingDelete struct {
	Hash   raisfs.Hash
	Volume raisfs.VolumeID
	Queued time.Time // zero for entries queued before this was recorded
}

// PendingDeletes returns up to limit queued deletions queued before
// before (the zero time: all).
func (f *FSM) PendingDeletes(limit int, before time.Time) ([]PendingDelete, error) {
	var out []PendingDelete
	err := f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPending).Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			if len(k) != raisfs.HashSize+8 {
				return fmt.Errorf("bad pending-delete key %x", k)
			}
			var p PendingDelete
			copy(p.Hash[:], k)
			p.Volume = raisfs.VolumeID(getU64(k[raisfs.HashSize:]))
			if len(v) == 8 {
				p.Queued = time.Unix(0, int64(getU64(v)))
			}
			if !before.IsZero() && !p.Queued.Before(before) {
				continue
			}
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// Stats are whole-state counters, kept up to date by Apply, so reading
// them costs four key look-ups whatever the size of the state.
type Stats struct {
	Objects, Bytes, Blobs, BlobBytes int64
	AppliedIndex                     uint64
}

// Stats returns the counters.
func (f *FSM) Stats() Stats {
	var s Stats
	f.view(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		s.Objects = int64(getU64(m.Get(keyObjects)))
		s.Bytes = int64(getU64(m.Get(keyBytes)))
		s.Blobs = int64(getU64(m.Get(keyBlobs)))
		s.BlobBytes = int64(getU64(m.Get(keyBlobBytes)))
		s.AppliedIndex = getU64(m.Get(keyApplied))
		return nil
	})
	return s
}

// Dump returns a canonical text rendering of the whole state, for tests
// and offline inspection (two masters with the same state dump the same).
func (f *FSM) Dump() (string, error) {
	var buf bytes.Buffer
	err := f.view(func(tx *bolt.Tx) error {
		names := make([]string, 0, len(allBuckets))
		for _, b := range allBuckets {
			names = append(names, string(b))
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&buf, "[%s]\n", n)
			tx.Bucket([]byte(n)).ForEach(func(k, v []byte) error {
				fmt.Fprintf(&buf, "%x=%x\n", k, v)
				return nil
			})
		}
		return nil
	})
	return buf.String(), err
}

// IsPendingDelete reports whether blob hash is queued for deletion from
// volume vol.
func (f *FSM) IsPendingDelete(hash raisfs.Hash, vol raisfs.VolumeID) bool {
	found := false
	f.view(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketPending).Get(pendingKey(hash[:], uint64(vol))) != nil
		return nil
	})
	return found
}

// ForEachBlob calls fn for every blob record, in hash order, from one
// consistent view of the state; fn returning false stops the walk.
func (f *FSM) ForEachBlob(fn func(h raisfs.Hash, b *fsmpb.Blob) bool) error {
	return f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBlobs).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var b fsmpb.Blob
			if err := proto.Unmarshal(v, &b); err != nil {
				return fmt.Errorf("blob %x: %w", k, err)
			}
			var h raisfs.Hash
			copy(h[:], k)
			if !fn(h, &b) {
				return nil
			}
		}
		return nil
	})
}

// abandon drops the state without syncing or marking it clean, as a crash
// would. For tests.
func (f *FSM) abandon() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.db.Close()
	f.lock.Close()
	f.lock = nil
}
