package chaos

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/zeebo/blake3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/raisfs/raisfs"
	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/client"
)

// Config is one run.
type Config struct {
	Bin          string        // the rais binary
	Dir          string        // cluster data, logs, and on failure the evidence
	Seed         uint64        // draws the workload and the fault schedule
	Duration     time.Duration // of the workload under faults
	ChunkServers int           // at least 5 (default 5)
	Clients      int           // concurrent workload clients (default 6)
	Keys         int           // key space (default 40): small, so operations overlap on keys
	// HealBound: after the faults stop, the cluster must be back at full
	// redundancy and fsck clean within this (default 2 min).
	HealBound time.Duration
	Logger    *slog.Logger
}

// Report is what a run found.
type Report struct {
	Seed             uint64         `json:"seed"`
	Duration         time.Duration  `json:"duration"`
	Ops              map[string]int `json:"ops"` // by kind
	Acked            int            `json:"acked"`
	Failed           map[string]int `json:"failed"` // by outcome (unknown, conflict, not_found)
	Lost             int            `json:"lost"`
	Corrupt          int            `json:"corrupt"`
	Resurrected      int            `json:"resurrected"` // deleted keys that came back
	Linearizable     string         `json:"linearizable"`
	LeaderKills      int            `json:"leader_kills"`
	WriteUnavailable time.Duration  `json:"write_unavailable"` // longest, after a leader kill
	// SlowestFailover is that kill's neighbourhood: the faults from
	// failoverContext before it to the first acknowledged put after it.
	SlowestFailover []Fault       `json:"slowest_failover,omitempty"`
	HealTime        time.Duration `json:"heal_time"` // to full redundancy and fsck clean
	Healed          bool          `json:"healed"`
	Faults          []Fault       `json:"faults"`
	Partitions      bool          `json:"partitions"` // network partitions were possible (root, iproute2)
	SmallDisk       bool          `json:"small_disk"` // a chunk server ran on a small filesystem (root)
	Problems        []string      `json:"problems"`
	// Record reads answered from the clients' caches, and from the masters.
	RecordCacheHits   int64 `json:"record_cache_hits"`
	RecordCacheMisses int64 `json:"record_cache_misses"`
}

// failoverContext is how far before a leader kill the report looks for
// faults that may have slowed the failover (a partition or a pause that
// began a little earlier and still held).
const failoverContext = 10 * time.Second

// faultsBetween returns the faults that began within [from, to].
func faultsBetween(faults []Fault, from, to time.Duration) []Fault {
	var out []Fault
	for _, f := range faults {
		if f.At >= from && f.At <= to {
			out = append(out, f)
		}
	}
	return out
}

// OK reports whether every checker passed.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Fault is one nemesis action.
type Fault struct {
	At     time.Duration `json:"at"`
	Kind   string        `json:"kind"`
	Target string        `json:"target"`
	Detail string        `json:"detail,omitempty"`
}

// Run starts a cluster, runs the workload under faults, heals, checks, and
// stops the cluster. Its error is about the harness itself; what the
// checkers found is in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.ChunkServers == 0 {
		cfg.ChunkServers = 5
	}
	if cfg.Clients == 0 {
		cfg.Clients = 6
	}
	if cfg.Keys == 0 {
		cfg.Keys = 40
	}
	if cfg.HealBound == 0 {
		cfg.HealBound = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	cl, err := StartCluster(ClusterConfig{Bin: cfg.Bin, Dir: cfg.Dir, ChunkServers: cfg.ChunkServers, Logger: log, SmallDisk: true, Partitions: true})
	if err != nil {
		return nil, err
	}
	defer cl.Stop()
	if err := cl.WaitHealthy(ctx, time.Minute); err != nil {
		return nil, err
	}
	rep := &Report{Seed: cfg.Seed, Duration: cfg.Duration, Ops: map[string]int{}, Failed: map[string]int{}}
	rep.Partitions = cl.CanPartition()
	if !rep.Partitions {
		log.Warn("chaos: no network partitions in this run (needs root and iproute2)")
	}
	rep.SmallDisk = cl.SmallDisk != ""
	if cl.SmallDisk != "" {
		rep.Faults = append(rep.Faults, Fault{Kind: "small-disk", Target: cl.SmallDisk, Detail: "40 MiB tmpfs: fills up during the run"})
	}
	start := time.Now()
	since := func() int64 { return int64(time.Since(start)) }
	hist := &History{}
	w := &workload{cfg: cfg, hist: hist, since: since, byHash: map[raisfs.Hash]valueRef{}}

	// The workload and the nemesis run for Duration.
	wctx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	var wg sync.WaitGroup
	var clients []*client.Client
	for i := range cfg.Clients {
		// Half the clients know every master; the others know one each
		// (as behind a load balancer), so followers answer too.
		masters := cl.Masters
		if i%2 == 1 {
			masters = []string{cl.Masters[i/2%len(cl.Masters)]}
		}
		c, err := client.New(ctx, client.Config{Masters: masters, Timeout: 10 * time.Second, RecordCache: 1000, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		clients = append(clients, c)
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1))
		wg.Go(func() { w.run(wctx, i, c, rng) })
	}
	n := &nemesis{cl: cl, rng: rand.New(rand.NewPCG(cfg.Seed, 0)), start: start, log: log, keys: cfg.Keys}
	wg.Go(func() { n.run(wctx) })
	wg.Wait()
	for _, c := range clients {
		h, m := c.RecordCacheStats()
		rep.RecordCacheHits += h
		rep.RecordCacheMisses += m
	}
	rep.Faults = append(rep.Faults, n.faults...)
	rep.LeaderKills = len(n.leaderKills)
	for _, k := range n.leaderKills {
		// The first acknowledged put that was called after the kill.
		var first int64 = -1
		for _, op := range hist.Ops() {
			if op.Kind == OpPut && op.Out == OutOK && op.Call >= int64(k) && (first < 0 || op.Return < first) {
				first = op.Return
			}
		}
		if first > 0 && time.Duration(first)-k > rep.WriteUnavailable {
			rep.WriteUnavailable = time.Duration(first) - k
			rep.SlowestFailover = faultsBetween(rep.Faults, k-failoverContext, time.Duration(first))
		}
	}

	// Heal: everything restarted and resumed; the cluster must return to
	// full redundancy with fsck clean within the bound.
	log.Info("chaos: healing")
	if err := cl.HealAll(); err != nil {
		return nil, err
	}
	healStart := time.Now()
	rep.Healed = cl.WaitWhole(ctx, cfg.HealBound) == nil
	rep.HealTime = time.Since(healStart)
	if !rep.Healed {
		rep.Problems = append(rep.Problems, fmt.Sprintf("not back to full redundancy with fsck clean within %s", cfg.HealBound))
	}

	// Final reads of every key, recorded like any other reads.
	fc, err := client.New(ctx, client.Config{Masters: cl.Masters, Timeout: 30 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	defer fc.Close()
	for _, k := range keyNames(cfg.Keys) {
		w.get(ctx, cfg.Clients, fc, k)
	}
	w.check(rep)
	// Every replica of every key holds the bytes the final read saw: the
	// repairs restored full redundancy byte for byte, not just counts.
	rep.Problems = append(rep.Problems, cl.checkReplicas(ctx, w)...)
	if !rep.OK() {
		if err := writeEvidence(cfg, rep, hist.Ops()); err != nil {
			log.Warn("chaos: could not write the evidence", "err", err)
		}
	}
	return rep, nil
}

// valueRef names a written value.
type valueRef struct {
	key   string
	value uint64
}

type workload struct {
	cfg       Config
	hist      *History
	since     func() int64
	nextValue atomic.Uint64
	mu        sync.Mutex
	byHash    map[raisfs.Hash]valueRef
	stable    sync.Map // "s" keys written (acknowledged or conflicting)
}

// keyNames lists the key space: "k" keys are put, read and deleted at
// random; "s" keys are written once and then only read, so damage to
// their stored bytes is read back (and must be caught) instead of being
// overwritten by the churn.
func keyNames(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("k%d", i))
	}
	for i := range max(n/2, 1) {
		out = append(out, fmt.Sprintf("s%d", i))
	}
	return out
}

func (w *workload) run(ctx context.Context, id int, c *client.Client, rng *rand.Rand) {
	for ctx.Err() == nil {
		if rng.IntN(5) == 0 {
			// Records: few keys, mostly reads (what a mail front end does
			// with mailbox records), so cached reads meet writes.
			key := fmt.Sprintf("r%d", rng.IntN(max(w.cfg.Keys/8, 2)))
			switch r := rng.IntN(20); {
			case r < 3:
				w.recordPut(id, c, key)
			case r < 4:
				w.recordDelete(id, c, key)
			default:
				w.recordGet(id, c, key)
			}
			continue
		}
		if rng.IntN(2) == 0 {
			key := fmt.Sprintf("s%d", rng.IntN(max(w.cfg.Keys/2, 1)))
			if _, written := w.stable.Load(key); !written {
				if w.put(ctx, id, c, key, rng) {
					w.stable.Store(key, true)
				}
			} else if rng.IntN(4) == 0 {
				w.stat(ctx, id, c, key)
			} else {
				w.get(ctx, id, c, key)
			}
			continue
		}
		key := fmt.Sprintf("k%d", rng.IntN(w.cfg.Keys))
		switch r := rng.IntN(10); {
		case r < 4:
			w.put(ctx, id, c, key, rng)
		case r < 7:
			w.get(ctx, id, c, key)
		case r < 8:
			w.stat(ctx, id, c, key)
		default:
			w.delete(ctx, id, c, key)
		}
	}
}

// opCtx bounds one operation; the workload's own end does not cancel an
// operation in flight (that would turn its outcome into unknown).
// returned records when op returned and how: its outcome and error.
func (w *workload) returned(op *Op, err error) {
	op.Return, op.Out = w.since(), classify(err)
	if err != nil {
		op.Err = err.Error()
	}
}

func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 15*time.Second)
}

func (w *workload) put(_ context.Context, id int, c *client.Client, key string, rng *rand.Rand) bool {
	v := w.nextValue.Add(1)
	size := 200 + rng.IntN(6000)
	if rng.IntN(20) == 0 {
		size = 300 << 10 // now and then one that streams
	}
	body := Payload(key, v, size)
	w.mu.Lock()
	w.byHash[blake3.Sum256(body)] = valueRef{key, v}
	w.mu.Unlock()
	op := Op{Client: id, Kind: OpPut, Key: key, Value: v, Call: w.since()}
	ctx, cancel := opCtx()
	_, err := c.Put(ctx, key, bytes.NewReader(body), nil)
	cancel()
	w.returned(&op, err)
	w.hist.Add(op)
	return op.Out == OutOK || op.Out == OutConflict
}

func (w *workload) get(_ context.Context, id int, c *client.Client, key string) {
	op := Op{Client: id, Kind: OpGet, Key: key, Call: w.since()}
	ctx, cancel := opCtx()
	defer cancel()
	r, err := c.Get(ctx, key)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(r)
		r.Close()
	}
	w.returned(&op, err)
	if err == nil {
		v, perr := ParsePayload(key, body)
		op.Value = v
		if perr != nil {
			op.Corrupt = perr.Error()
		}
	}
	w.hist.Add(op)
}

func (w *workload) stat(_ context.Context, id int, c *client.Client, key string) {
	op := Op{Client: id, Kind: OpStat, Key: key, Call: w.since()}
	ctx, cancel := opCtx()
	o, err := c.Stat(ctx, key)
	cancel()
	w.returned(&op, err)
	if err == nil {
		w.mu.Lock()
		ref, ok := w.byHash[o.Hash]
		w.mu.Unlock()
		op.Value = ref.value
		if !ok || ref.key != key {
			op.Corrupt = fmt.Sprintf("stat names hash %s, never written to this key", o.Hash)
		}
	}
	w.hist.Add(op)
}

func (w *workload) delete(_ context.Context, id int, c *client.Client, key string) {
	op := Op{Client: id, Kind: OpDelete, Key: key, Call: w.since()}
	ctx, cancel := opCtx()
	err := c.Delete(ctx, key)
	cancel()
	w.returned(&op, err)
	w.hist.Add(op)
}

func (w *workload) recordPut(id int, c *client.Client, key string) {
	v := w.nextValue.Add(1)
	w.recordWrite(Op{Client: id, Kind: OpRecordPut, Key: key, Value: v}, c, new(client.Txn).Put(key, binary.BigEndian.AppendUint64(nil, v)))
}

func (w *workload) recordDelete(id int, c *client.Client, key string) {
	w.recordWrite(Op{Client: id, Kind: OpRecordDelete, Key: key}, c, new(client.Txn).Delete(key))
}

// recordWrite commits t and records it as op.
func (w *workload) recordWrite(op Op, c *client.Client, t *client.Txn) {
	op.Call = w.since()
	ctx, cancel := opCtx()
	_, err := c.Commit(ctx, t)
	cancel()
	w.returned(&op, err)
	w.hist.Add(op)
}

func (w *workload) recordGet(id int, c *client.Client, key string) {
	op := Op{Client: id, Kind: OpRecordGet, Key: key, Call: w.since()}
	ctx, cancel := opCtx()
	r, ok, err := c.CachedRecord(ctx, key)
	cancel()
	w.returned(&op, err)
	switch {
	case err != nil: // recorded above
	case !ok:
		op.Out = OutNotFound
	case len(r.Value) != 8:
		op.Out, op.Corrupt = OutOK, fmt.Sprintf("record value of %d bytes, never written", len(r.Value))
	default:
		op.Out, op.Value = OutOK, binary.BigEndian.Uint64(r.Value)
	}
	w.hist.Add(op)
}

// check runs the checkers over the history.
func (w *workload) check(rep *Report) {
	ops := w.hist.Ops()
	sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	final := map[string]Op{} // the final read of each key (client id == Clients)
	for _, op := range ops {
		rep.Ops[op.Kind]++
		switch {
		case op.Out == OutOK:
			rep.Acked++
		default:
			rep.Failed[op.Out]++
		}
		if op.Corrupt != "" {
			rep.Corrupt++
			rep.Problems = append(rep.Problems, fmt.Sprintf("corrupt read of %s by client %d at %s: %s", op.Key, op.Client, time.Duration(op.Call), op.Corrupt))
		}
		if op.Client == w.cfg.Clients && op.Kind == OpGet {
			final[op.Key] = op
		}
	}
	// Lost: an acknowledged put with no delete of its key called after it
	// was called, yet the key's final read shows another value or none.
	// Resurrected: an acknowledged delete with no put called after it, yet
	// the key reads back a value at the end.
	for _, op := range ops {
		if op.Client == w.cfg.Clients || op.Out != OutOK {
			continue
		}
		f, ok := final[op.Key]
		if !ok || f.Out == OutUnknown {
			continue // the final read failed: reported below
		}
		// mayFollow: an operation of kind on the key that may take effect
		// after op did: not finished before op was called, or of unknown
		// outcome (it may take effect at any time).
		mayFollow := func(kind string) bool {
			for _, o := range ops {
				if o.Key == op.Key && o.Kind == kind && o.Client != w.cfg.Clients && o.Out != OutNotFound && o.Out != OutConflict &&
					(o.Out == OutUnknown || o.Return > op.Call) && o != op {
					return true
				}
			}
			return false
		}
		switch op.Kind {
		case OpPut:
			if !mayFollow(OpDelete) && (f.Out != OutOK || f.Value != op.Value) {
				rep.Lost++
				rep.Problems = append(rep.Problems, fmt.Sprintf("lost: put %s=%d acknowledged at %s; final read: %s %d", op.Key, op.Value, time.Duration(op.Return), f.Out, f.Value))
			}
		case OpDelete:
			if !mayFollow(OpPut) && f.Out == OutOK {
				rep.Resurrected++
				rep.Problems = append(rep.Problems, fmt.Sprintf("resurrected: %s deleted at %s reads back value %d", op.Key, time.Duration(op.Return), f.Value))
			}
		}
	}
	for k, f := range final {
		if f.Out == OutUnknown {
			rep.Problems = append(rep.Problems, fmt.Sprintf("final read of %s failed after healing: %s", k, f.Err))
		}
	}
	m := model.ToModel()
	res, _ := porcupine.CheckOperationsVerbose(m, operations(ops), time.Minute)
	rep.Linearizable = map[porcupine.CheckResult]string{porcupine.Ok: "yes", porcupine.Illegal: "no", porcupine.Unknown: "unknown (timed out)"}[res]
	if res != porcupine.Ok {
		rep.Problems = append(rep.Problems, "history not linearizable: "+rep.Linearizable)
		rep.Problems = append(rep.Problems, Explain(ops)...)
	}
}

// explainBudget bounds the time Explain spends in the checker.
const explainBudget = 60 * time.Second

// Explain checks a history key by key and describes each key that is not
// linearizable: the operations just before the end of the shortest prefix
// (by call time) that cannot be linearized. Operations called later but
// concurrent with those may be what explains them, so read it as a place
// to look, not a proof.
func Explain(ops []Op) []string {
	byKey := map[string][]Op{}
	var keys []string
	for _, op := range ops {
		if _, ok := byKey[op.Key]; !ok {
			keys = append(keys, op.Key)
		}
		byKey[op.Key] = append(byKey[op.Key], op)
	}
	sort.Strings(keys)
	m := model.ToModel()
	var out []string
	// Checking a key with many operations of unknown outcome can take
	// exponential time: each check is bounded, and so is the whole
	// explanation (a run once spent 40 minutes and 3 GiB here).
	deadline := time.Now().Add(explainBudget)
	check := func(ops []Op) porcupine.CheckResult {
		left := time.Until(deadline)
		if left <= 0 {
			return porcupine.Unknown
		}
		return porcupine.CheckOperationsTimeout(m, operations(ops), min(left, 10*time.Second))
	}
	for _, k := range keys {
		kops := byKey[k]
		switch check(kops) {
		case porcupine.Ok:
			continue
		case porcupine.Unknown:
			out = append(out, fmt.Sprintf("key %s: not checked to the end (time limit)", k))
			continue
		}
		sort.Slice(kops, func(i, j int) bool { return kops[i].Call < kops[j].Call })
		lo, hi := 1, len(kops)
		for lo < hi {
			mid := (lo + hi) / 2
			if check(kops[:mid]) == porcupine.Ok {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		out = append(out, fmt.Sprintf("key %s: not linearizable; the first %d of its %d operations are not; they end with:", k, lo, len(kops)))
		for _, op := range kops[max(0, lo-8):lo] {
			ret := time.Duration(op.Return).String()
			if op.Return == math.MaxInt64 {
				ret = "?"
			}
			out = append(out, fmt.Sprintf("  client %d %s %d -> %s %d [%s, %s] %s", op.Client, op.Kind, op.Value, op.Out, outValue(op),
				time.Duration(op.Call), ret, op.Err))
		}
	}
	return out
}

// writeEvidence keeps what reproduces a failed run.
func writeEvidence(cfg Config, rep *Report, ops []Op) error {
	for name, v := range map[string]any{"report.json": rep, "history.json": ops, "faults.json": rep.Faults} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(cfg.Dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// PrintReport writes the run's table.
func PrintReport(out io.Writer, rep *Report, reproduce string) {
	kinds := make([]string, 0, len(rep.Ops))
	for k := range rep.Ops {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var ops, failed []string
	for _, k := range kinds {
		ops = append(ops, fmt.Sprintf("%s %d", k, rep.Ops[k]))
	}
	for k, n := range rep.Failed {
		failed = append(failed, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(failed)
	fmt.Fprintf(out, "seed               %d\n", rep.Seed)
	fmt.Fprintf(out, "duration           %s\n", rep.Duration)
	fmt.Fprintf(out, "faults             %d (partitions: %v, small disk: %v)\n", len(rep.Faults), rep.Partitions, rep.SmallDisk)
	fmt.Fprintf(out, "operations         %s\n", strings.Join(ops, ", "))
	fmt.Fprintf(out, "acknowledged       %d\n", rep.Acked)
	fmt.Fprintf(out, "record reads       %d from the clients' caches, %d from the masters\n", rep.RecordCacheHits, rep.RecordCacheMisses)
	fmt.Fprintf(out, "failed             %s\n", strings.Join(failed, ", "))
	fmt.Fprintf(out, "lost %d\n", rep.Lost)
	fmt.Fprintf(out, "corrupt            %d\n", rep.Corrupt)
	fmt.Fprintf(out, "resurrected        %d\n", rep.Resurrected)
	fmt.Fprintf(out, "linearizable       %s\n", rep.Linearizable)
	fmt.Fprintf(out, "leader kills       %d, longest write unavailability after one %s\n", rep.LeaderKills, rep.WriteUnavailable.Round(time.Millisecond))
	if len(rep.SlowestFailover) > 0 {
		var fs []string
		for _, f := range rep.SlowestFailover {
			fs = append(fs, fmt.Sprintf("%s %s %s", f.At, f.Kind, f.Target))
		}
		fmt.Fprintf(out, "  around it        %s\n", strings.Join(fs, "; "))
	}
	fmt.Fprintf(out, "full redundancy    %s after healing (fsck clean: %v)\n", rep.HealTime.Round(100*time.Millisecond), rep.Healed)
	if rep.OK() {
		fmt.Fprintln(out, "result             PASS")
		return
	}
	fmt.Fprintln(out, "result             FAIL")
	for i, p := range rep.Problems {
		if i == 60 {
			fmt.Fprintf(out, "  ... and %d more (report.json)\n", len(rep.Problems)-60)
			break
		}
		fmt.Fprintf(out, "  %s\n", p)
	}
	fmt.Fprintf(out, "reproduce: %s\n", reproduce)
}

// checkReplicas reads every key's blob from each of its replicas directly.
func (c *Cluster) checkReplicas(ctx context.Context, w *workload) []string {
	var problems []string
	hc := &http.Client{Timeout: 30 * time.Second}
	for _, key := range keyNames(w.cfg.Keys) {
		var lr *masterpb.LookupResponse
		err := c.call(ctx, 5*time.Second, func(ctx context.Context, m masterpb.MasterClient) (err error) {
			lr, err = m.Lookup(ctx, &masterpb.LookupRequest{Key: []byte(key)})
			return err
		})
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("replica check of %s: look-up failed: %v", key, err))
			continue
		}
		for _, r := range lr.Replicas {
			resp, err := hc.Get(fmt.Sprintf("http://%s/v1/volumes/%d/blobs/%x", r.Address, lr.Volume, lr.Hash))
			if err != nil {
				problems = append(problems, fmt.Sprintf("replica %s of %s: %v", r.Id, key, err))
				continue
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				problems = append(problems, fmt.Sprintf("replica %s of %s: status %d %s %v", r.Id, key, resp.StatusCode, resp.Header.Get("X-Rais-Error"), err))
				continue
			}
			if _, err := ParsePayload(key, body); err != nil {
				problems = append(problems, fmt.Sprintf("replica %s of %s holds wrong bytes: %v", r.Id, key, err))
			}
		}
	}
	return problems
}

// WaitHealthy waits for a leader and every chunk server alive.
func (c *Cluster) WaitHealthy(ctx context.Context, bound time.Duration) error {
	return c.poll(ctx, bound, "a leader and every chunk server alive", func(st *masterpb.StatusResponse) bool {
		alive := 0
		for _, cs := range st.Chunkservers {
			if cs.State == "alive" {
				alive++
			}
		}
		return alive == len(c.chunkservers)
	})
}

// WaitWhole waits for every chunk server alive, nothing under-replicated
// or being repaired, and a clean fsck.
func (c *Cluster) WaitWhole(ctx context.Context, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	err := c.poll(ctx, bound, "full redundancy", func(st *masterpb.StatusResponse) bool {
		alive := 0
		for _, cs := range st.Chunkservers {
			if cs.State == "alive" {
				alive++
			}
		}
		return alive == len(c.chunkservers) && st.UnderReplicated == 0 && st.Repairing == 0
	})
	if err != nil {
		return err
	}
	for time.Now().Before(deadline) {
		var r *masterpb.FsckResponse
		ferr := c.call(ctx, 2*time.Minute, func(ctx context.Context, m masterpb.MasterClient) (err error) {
			r, err = m.Fsck(ctx, &masterpb.FsckRequest{Repair: true})
			return err
		})
		if ferr == nil && r.Missing+r.Corrupt+r.Orphaned+uint64(r.UnderReplicated)+uint64(r.CopiesUnchecked) == 0 {
			return nil
		}
		if !sleepCtx(ctx, 2*time.Second) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("fsck not clean within %s", bound)
}

func (c *Cluster) poll(ctx context.Context, bound time.Duration, what string, cond func(*masterpb.StatusResponse) bool) error {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		var st *masterpb.StatusResponse
		err := c.call(ctx, 3*time.Second, func(ctx context.Context, m masterpb.MasterClient) (err error) {
			st, err = m.Status(ctx, &masterpb.StatusRequest{})
			return err
		})
		if err == nil && cond(st) {
			return nil
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
	return fmt.Errorf("chaos: no %s within %s", what, bound)
}

// call runs fn against the masters in turn until one answers.
func (c *Cluster) call(ctx context.Context, per time.Duration, fn func(context.Context, masterpb.MasterClient) error) error {
	var last error
	for _, addr := range c.Masters {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			last = err
			continue
		}
		actx, cancel := context.WithTimeout(ctx, per)
		err = fn(actx, masterpb.NewMasterClient(conn))
		cancel()
		conn.Close()
		if err == nil {
			return nil
		}
		last = err
	}
	return last
}

// Leader returns the name of the master that leads, or "".
func (c *Cluster) Leader(ctx context.Context) string {
	var st *masterpb.StatusResponse
	if err := c.call(ctx, 2*time.Second, func(ctx context.Context, m masterpb.MasterClient) (err error) {
		st, err = m.Status(ctx, &masterpb.StatusRequest{})
		return err
	}); err != nil {
		return ""
	}
	for _, m := range st.Masters {
		if m.Leader {
			return m.Id
		}
	}
	return ""
}
