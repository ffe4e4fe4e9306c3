package master

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/raisfs/raisfs"
)

// GCPercent is the garbage-collection target `rais master` sets (unless the
// GOGC environment variable is set). A master's heap is small: the state
// lives in the memory-mapped bbolt file, not in Go objects. Collecting
// less often costs a few tens of MiB and buys about a third more commits
// per second (ARCHITECTURE.md, "Performance").
const GCPercent = 400

// Peer is a master of the initial cluster.
type Peer struct {
	ID       string
	RaftAddr string
}

// Config configures a master. Zero values mean the defaults of
// DefaultConfig.
type Config struct {
	// ID names this master in the Raft group; stable across restarts.
	ID string
	// Dir holds the Raft log (raft.db), snapshots and the state (state.db).
	Dir string
	// RaftAddr is the HOST:PORT the Raft transport listens on and
	// advertises; port 0 picks a free port (tests).
	RaftAddr string
	// APIAddr is the HOST:PORT of the gRPC API; port 0 picks a free port.
	APIAddr string
	// HTTPAddr, if set, serves /metrics and /healthz.
	HTTPAddr string
	// RaftListener, APIListener and HTTPListener, if set, are used instead
	// of listening on the addresses above (a supervisor that holds the
	// ports, as rais dev does). The master closes them.
	RaftListener, APIListener, HTTPListener net.Listener
	// LogStore is the Raft log store: "wal" (hashicorp/raft-wal: segment
	// files, one fsync per append) or "boltdb" (raft-boltdb v2). Empty
	// means what the directory already holds, and wal for a new one (see
	// ARCHITECTURE.md, "Master group", for why). Fixed for the life of a
	// master's directory.
	LogStore string

	// Raft timing. The defaults are tuned for a LAN: a dead leader is
	// replaced in about a second.
	HeartbeatTimeout   time.Duration // default 300 ms
	ElectionTimeout    time.Duration // default 300 ms
	LeaderLeaseTimeout time.Duration // default 150 ms
	// ReadLease: after the leader confirms its leadership with a quorum,
	// linearizable reads skip that round for this long (default half the
	// HeartbeatTimeout; negative: every read confirms). Must be below
	// HeartbeatTimeout, with a margin for clock rate differences: see
	// readLease. A master also waits this long before it starts Raft.
	ReadLease time.Duration
	// SnapshotThreshold: log entries between snapshots (default 8192).
	SnapshotThreshold uint64

	// ServerDownAfter: a chunk server silent this long is marked down
	// (default 10 s); silent for a third of it, it shows as suspect.
	ServerDownAfter time.Duration
	// HeartbeatInterval is what chunk servers are told to use (default 1 s).
	HeartbeatInterval time.Duration
	// LeaseTTL is how long a write lease lasts (default 1 min).
	LeaseTTL time.Duration
	// ClockSkew is how far apart the masters' and chunk servers' clocks
	// may be (default 5 s); waits that depend on lease expiry add it.
	ClockSkew time.Duration
	// DefaultCopies is the copy count of the default replication class set
	// when the cluster is first initialised (default 3).
	DefaultCopies int
	// WritableVolumes is how many writable volumes per class the leader
	// keeps open. 0 (the default) means one per `copies` live chunk
	// servers, at least one: each server then takes part in about one
	// open volume per class, so its writers share one group commit (one
	// fsync stream per disk) instead of splitting over several.
	WritableVolumes int
	// VolumeSizeLimit: a volume reported this large takes no new puts
	// (default 1 GiB, the chunk server's own seal size).
	VolumeSizeLimit int64
	// MinFreeBytes: a chunk server with less free space gets no new volume
	// (default 256 MiB).
	MinFreeBytes int64

	// RepairAfter: a volume member silent this long (counted from its last
	// heartbeat) is replaced by a new copy (default 5 min: long enough for
	// a reboot, which should not trigger a copy of a whole server). A
	// member that lost or corrupted the volume, or is draining, is replaced
	// at once.
	RepairAfter time.Duration
	// MaxRepairs: volumes copied at once by the leader (default 2).
	MaxRepairs int
	// RepairBytesPerSec limits each copy's read rate, so repair leaves disk
	// and network to clients (default 0: unlimited).
	RepairBytesPerSec int64
	// RepairInterval: how often the leader looks for work (default 2 s).
	RepairInterval time.Duration
	// CompactGarbageRatio: a volume whose members report more than this
	// share of garbage (deleted needles) is compacted (default 0.3), once
	// the garbage is at least CompactMinBytes (default 64 MiB).
	CompactGarbageRatio float64
	CompactMinBytes     int64
	// FsckEvery: the leader runs fsck with repair this often (default 24 h;
	// negative: never), reclaiming uploads never committed and replacing
	// copies that lack blobs.
	FsckEvery time.Duration

	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger

	watchQueue int // events queued per watch stream before it is ended; 0: 1024 (tests make it small)

	// opsVersion, when set, is announced instead of raftfsm.OpsVersion
	// (tests: a master of an older build).
	opsVersion uint32
}

// DefaultConfig returns the defaults, with no ID, Dir or addresses.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:    300 * time.Millisecond,
		ElectionTimeout:     300 * time.Millisecond,
		LeaderLeaseTimeout:  150 * time.Millisecond,
		SnapshotThreshold:   8192,
		ServerDownAfter:     10 * time.Second,
		HeartbeatInterval:   time.Second,
		LeaseTTL:            time.Minute,
		ClockSkew:           5 * time.Second,
		DefaultCopies:       3,
		VolumeSizeLimit:     1 << 30,
		MinFreeBytes:        256 << 20,
		RepairAfter:         5 * time.Minute,
		MaxRepairs:          2,
		RepairInterval:      2 * time.Second,
		CompactGarbageRatio: 0.3,
		CompactMinBytes:     64 << 20,
		FsckEvery:           24 * time.Hour,
	}
}

func (c *Config) withDefaults() {
	d := DefaultConfig()
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&c.HeartbeatTimeout, d.HeartbeatTimeout)
	set(&c.ElectionTimeout, d.ElectionTimeout)
	set(&c.LeaderLeaseTimeout, d.LeaderLeaseTimeout)
	set(&c.ReadLease, c.HeartbeatTimeout/2)
	set(&c.ServerDownAfter, d.ServerDownAfter)
	set(&c.HeartbeatInterval, d.HeartbeatInterval)
	set(&c.LeaseTTL, d.LeaseTTL)
	set(&c.ClockSkew, d.ClockSkew)
	set(&c.RepairAfter, d.RepairAfter)
	set(&c.RepairInterval, d.RepairInterval)
	set(&c.FsckEvery, d.FsckEvery)
	if c.CompactGarbageRatio <= 0 {
		c.CompactGarbageRatio = d.CompactGarbageRatio
	}
	if c.CompactMinBytes <= 0 {
		c.CompactMinBytes = d.CompactMinBytes
	}
	if c.MaxRepairs <= 0 {
		c.MaxRepairs = d.MaxRepairs
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.DefaultCopies == 0 {
		c.DefaultCopies = d.DefaultCopies
	}
	if c.VolumeSizeLimit == 0 {
		c.VolumeSizeLimit = d.VolumeSizeLimit
	}
	if c.MinFreeBytes == 0 {
		c.MinFreeBytes = d.MinFreeBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	heartbeat := c.HeartbeatTimeout
	if heartbeat == 0 {
		heartbeat = DefaultConfig().HeartbeatTimeout
	}
	switch {
	case !raisfs.ValidNodeID(c.ID):
		return fmt.Errorf("master config: id %q: want 1-64 characters of [A-Za-z0-9._-]", c.ID)
	case c.Dir == "":
		return errors.New("master config: Dir is required")
	case c.RaftAddr == "" && c.RaftListener == nil:
		return errors.New("master config: RaftAddr is required")
	case c.APIAddr == "" && c.APIListener == nil:
		return errors.New("master config: APIAddr is required")
	case c.LogStore != "" && c.LogStore != "boltdb" && c.LogStore != "wal":
		return fmt.Errorf("master config: LogStore %q: want boltdb or wal", c.LogStore)
	case c.ReadLease >= heartbeat:
		return fmt.Errorf("master config: ReadLease %v: must be below HeartbeatTimeout %v", c.ReadLease, heartbeat)
	case c.DefaultCopies < 0 || c.DefaultCopies > 16:
		return fmt.Errorf("master config: DefaultCopies %d not in 1..16", c.DefaultCopies)
	}
	return nil
}
