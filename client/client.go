// Package client is the RAIS-FS SDK: store, read and delete immutable
// objects (mail messages) by key. It asks the masters where an object
// lives or goes, then streams bytes straight to and from the chunk
// servers, failing over between masters and between replicas.
//
// Every method takes a context and honours its deadline; a call whose
// context has none gets Config.Timeout. Errors wrap the raisfs sentinels
// (aliased here), for errors.Is:
//
//	obj, err := c.Put(ctx, "alice/INBOX/1234", msg, nil)
//	r, err := c.Get(ctx, "alice/INBOX/1234")
//	if errors.Is(err, client.ErrNotFound) { ... }
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/internal/netx"
	"github.com/raisfs/raisfs/internal/rpcerr"
)

// Errors callers test with errors.Is. They are the raisfs sentinels.
var (
	ErrNotFound        = raisfs.ErrNotFound
	ErrConflict        = raisfs.ErrConflict
	ErrNoPlacement     = raisfs.ErrNoPlacement
	ErrUnavailable     = raisfs.ErrUnavailable
	ErrInvalidArgument = raisfs.ErrInvalidArgument
	ErrCorrupt         = raisfs.ErrCorrupt
	// ErrOutcomeUnknown: the call failed in a way that leaves unknown
	// whether it took effect (a Delete whose first attempt may have
	// applied before the retry found the key gone).
	ErrOutcomeUnknown = raisfs.ErrOutcomeUnknown
	// ErrLeaseExpired: an upload's lease ended before the transaction
	// that commits it; upload again.
	ErrLeaseExpired = raisfs.ErrLeaseExpired
)

// Config configures a Client.
type Config struct {
	// Masters are the masters' API addresses (HOST:PORT); any one is
	// enough, more give failover. Required.
	Masters []string
	// Timeout bounds a call whose context has no deadline (default 30 s).
	Timeout time.Duration
	// SpoolThreshold: bodies up to this size are held in memory while
	// they are hashed and sent; larger ones in a temp file (default 4 MiB).
	SpoolThreshold int64
	// SpoolDir is where large bodies are spooled ("" is os.TempDir()).
	SpoolDir string
	// VerifyThreshold: objects up to this size are read whole and checked
	// against their hash before Get returns, failing over to another
	// replica on a mismatch; larger ones stream and are checked at the end
	// (default 8 MiB).
	VerifyThreshold int64
	// HTTPClient talks to the chunk servers (default: a pooled client).
	HTTPClient *http.Client
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// LookupCache, if positive, keeps up to that many look-ups (key →
	// blob and replicas), so a repeated Get or GetRange of a key skips the
	// masters. Only for callers that never bind a deleted key to other
	// content again (the mail store's object keys are random and used
	// once): a cached key would keep reading its old bytes. A read that
	// fails on every cached replica looks the key up again; Delete and
	// transactions through this client drop what they unbind.
	LookupCache int
	// NoPutBatching sends every put on its own (its own BeginPut, uploads
	// and commit) instead of grouping concurrent small puts (see batch.go);
	// for comparisons. Servers without the batch calls are detected and
	// get puts one by one anyway.
	NoPutBatching bool
	// RecordCache, if positive, keeps up to that many records read with
	// CachedRecord in memory, watched at the leader: a repeated read is
	// answered without asking the masters and is still linearizable (the
	// leader tells this client, and waits for it, before it writes one of
	// them). For readers of a few hot records, such as a mail front end's
	// mailbox records. It costs one stream to the leader and a ping every
	// 40 ms while reads come.
	RecordCache int
}

// Client is safe for concurrent use. Close releases its connections.
type Client struct {
	cfg     Config
	log     *slog.Logger
	http    *http.Client
	conns   []*grpc.ClientConn
	masters []masterpb.MasterClient
	next    atomic.Uint32 // master to try first: the leader, once known

	leaderCheck atomic.Int64 // unix nanos of the last leader discovery

	// ctx ends at Close: it bounds the work of put batches, which outlive
	// the call that started them.
	ctx     context.Context
	cancel  context.CancelFunc
	batch   *batcher     // nil with Config.NoPutBatching
	records *recordCache // nil without Config.RecordCache

	cacheMu sync.Mutex
	cache   map[string]*masterpb.LookupResponse // see Config.LookupCache

	closeOnce sync.Once
}

// New returns a client for the cluster whose masters are cfg.Masters. It
// does not contact them until the first call.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Masters) == 0 {
		return nil, fmt.Errorf("client: no masters: %w", ErrInvalidArgument)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.SpoolThreshold <= 0 {
		cfg.SpoolThreshold = 4 << 20
	}
	if cfg.VerifyThreshold <= 0 {
		cfg.VerifyThreshold = 8 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Client{cfg: cfg, log: cfg.Logger, http: cfg.HTTPClient}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if !cfg.NoPutBatching {
		c.batch = newBatcher(c)
	}
	if c.http == nil {
		c.http = &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			WriteBufferSize:     128 << 10, // a small message and its headers in one write
			ReadBufferSize:      64 << 10,
		}}
	}
	for _, addr := range cfg.Masters {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(netx.DialContext))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client: master %s: %w", addr, err)
		}
		c.conns = append(c.conns, conn)
		c.masters = append(c.masters, masterpb.NewMasterClient(conn))
	}
	c.next.Store(rand.Uint32N(uint32(len(c.masters))))
	if cfg.RecordCache > 0 {
		c.records = newRecordCache(c, cfg.RecordCache)
	}
	return c, nil
}

// Close releases the client's connections. It is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		if c.batch != nil {
			c.batch.wg.Wait()
		}
		if c.records != nil {
			c.records.wg.Wait()
		}
		for _, conn := range c.conns {
			conn.Close()
		}
		c.http.CloseIdleConnections()
	})
	return nil
}

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

// retryable reports whether a master call may succeed on another master
// or a little later: no leader yet, a master down, a leader change.
func retryable(err error) bool {
	if errors.Is(err, raisfs.ErrNotLeader) || errors.Is(err, raisfs.ErrUnavailable) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted:
		return true
	}
	return false
}

// call runs fn against the masters, moving to the next master and backing
// off while errors are retryable, until ctx ends. Errors come back as
// raisfs sentinels.
func (c *Client) call(ctx context.Context, what string, fn func(context.Context, masterpb.MasterClient) error) error {
	c.findLeader(ctx)
	backoff := 10 * time.Millisecond
	var last error
	for attempt := 0; ; attempt++ {
		cur := c.next.Load()
		i := int(cur) % len(c.masters)
		// Each attempt gets a slice of the remaining time, so one master
		// that hangs cannot use it all.
		actx, cancel := context.WithTimeout(ctx, attemptTimeout(ctx))
		err := rpcerr.FromStatus(fn(actx, c.masters[i]))
		cancel()
		if err == nil {
			return nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
		if !retryable(err) && status.Code(err) != codes.DeadlineExceeded {
			return fmt.Errorf("%s: %w", what, err)
		}
		c.next.CompareAndSwap(cur, uint32((i+1)%len(c.masters))) // move on, unless another call already did
		c.leaderCheck.Store(0)                                   // and look for the leader again
		t := time.NewTimer(backoff + rand.N(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
	return fmt.Errorf("%s: masters %v unreachable or without a leader (%w): %w: %w", what, c.cfg.Masters, last, ErrUnavailable, ctx.Err())
}

// attemptTimeout is how long one master attempt may take: 5 s (enough for
// an election behind a forwarded call), or what is left of ctx.
func attemptTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return min(time.Until(dl), 5*time.Second)
	}
	return 5 * time.Second
}

// findLeader points the client at the leader, so requests do not take an
// extra hop through a follower. It asks at most once a second, and only
// when the leader is not known; failures are ignored (any master answers).
func (c *Client) findLeader(ctx context.Context) {
	if len(c.masters) == 1 {
		return
	}
	last := c.leaderCheck.Load()
	if last != 0 || !c.leaderCheck.CompareAndSwap(last, time.Now().UnixNano()) {
		return
	}
	i := int(c.next.Load()) % len(c.masters)
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := c.masters[i].Status(sctx, &masterpb.StatusRequest{})
	if err != nil {
		return
	}
	for _, m := range st.Masters {
		if !m.Leader {
			continue
		}
		for j, addr := range c.cfg.Masters {
			if addr == m.Address {
				c.next.Store(uint32(j))
			}
		}
	}
}
