package chaos

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/raisfs/raisfs/api/masterpb"
)

// nemesis injects one fault at a time, on a schedule drawn from its rng:
// kill -9 and restart of a chunk server or a master (the leader half the
// time), SIGSTOP/SIGCONT pauses longer than the timeouts, a byte flipped in
// a stored volume file, and a volume file cut short while its server is
// down; and, as root, a node cut off from everyone by its network link (the
// leader half the time). At most one chunk server and one master are
// faulted at once, so a
// majority of masters and two of three copies stay: what fails beyond
// that is a bug, not bad luck.
type nemesis struct {
	cl          *Cluster
	rng         *rand.Rand
	start       time.Time
	log         *slog.Logger
	faults      []Fault
	leaderKills []time.Duration // since start
	damaged     map[string]bool // chunk servers whose files were damaged this run
	keys        int
}

func (n *nemesis) record(kind, target, detail string) {
	f := Fault{At: time.Since(n.start).Round(time.Millisecond), Kind: kind, Target: target, Detail: detail}
	n.faults = append(n.faults, f)
	n.log.Info("chaos: fault", "at", f.At, "kind", kind, "target", target, "detail", detail)
}

func (n *nemesis) pick(ps []*proc) *proc { return ps[n.rng.IntN(len(ps))] }

func (n *nemesis) run(ctx context.Context) {
	n.damaged = map[string]bool{}
	for sleepCtx(ctx, time.Duration(1000+n.rng.IntN(2000))*time.Millisecond) {
		hold := time.Duration(2000+n.rng.IntN(4000)) * time.Millisecond
		// Damage to stored messages takes no time: half the rounds add a
		// flipped byte to whatever else they do.
		if n.rng.IntN(2) == 0 {
			if name, d := n.flipLive(ctx); d != "" {
				n.damaged[name] = true
				n.record("bitflip", name, d)
			}
		}
		switch r := n.rng.IntN(11); {
		case r < 3: // kill -9 a chunk server, restart it later
			p := n.pick(n.cl.chunkservers)
			n.record("kill", p.name, "")
			p.kill()
			sleepCtx(ctx, hold)
			n.record("restart", p.name, "")
			p.start()
		case r < 5: // kill -9 a master, the leader half the time
			p := n.pick(n.cl.masters)
			if n.rng.IntN(2) == 0 {
				if l := n.cl.proc(n.cl.Leader(ctx)); l != nil {
					p = l
				}
			}
			leader := p.name == n.cl.Leader(ctx)
			kind := "kill"
			if leader {
				kind = "kill-leader"
				n.leaderKills = append(n.leaderKills, time.Since(n.start))
			}
			n.record(kind, p.name, "")
			p.kill()
			sleepCtx(ctx, hold)
			n.record("restart", p.name, "")
			p.start()
		case r < 7 && n.cl.CanPartition() && n.rng.IntN(2) == 0: // cut a node off, the leader half the time
			p := n.pick(n.cl.all())
			if n.rng.IntN(2) == 0 {
				if l := n.cl.proc(n.cl.Leader(ctx)); l != nil {
					p = l
				}
			}
			kind := "partition"
			if p.name == n.cl.Leader(ctx) {
				kind = "partition-leader"
				n.leaderKills = append(n.leaderKills, time.Since(n.start))
			}
			n.record(kind, p.name, hold.String())
			n.cl.Partition(p.name)
			sleepCtx(ctx, hold)
			n.record("heal", p.name, "")
			n.cl.Unpartition(p.name)
		case r < 7: // pause past the timeouts
			ps := n.cl.chunkservers
			if n.rng.IntN(3) == 0 {
				ps = n.cl.masters
			}
			p := n.pick(ps)
			pause := time.Duration(6000+n.rng.IntN(3000)) * time.Millisecond
			n.record("pause", p.name, pause.String())
			p.signal(syscall.SIGSTOP)
			sleepCtx(ctx, pause)
			n.record("resume", p.name, "")
			p.signal(syscall.SIGCONT)
		case r < 8 || r == 10: // flip a byte of a live message on one of its replicas
			name, d := n.flipLive(ctx)
			if d != "" {
				n.damaged[name] = true
				n.record("bitflip", name, d)
			}
		case r < 9: // flip a byte anywhere in a volume file (headers, garbage, footers)
			p := n.pick(n.cl.chunkservers)
			if len(n.damaged) >= 2 && !n.damaged[p.name] {
				continue
			}
			if d := n.flip(p); d != "" {
				n.damaged[p.name] = true
				n.record("bitflip-any", p.name, d)
			}
		default: // cut a volume file short while its server is down
			p := n.pick(n.cl.chunkservers)
			if len(n.damaged) >= 2 && !n.damaged[p.name] {
				continue
			}
			p.kill()
			d := n.truncate(p)
			n.damaged[p.name] = true
			n.record("truncate", p.name, d)
			p.start()
		}
	}
}

func (n *nemesis) volumeFile(p *proc) (string, int64) {
	files, _ := filepath.Glob(filepath.Join(n.cl.Dir, p.name, "vol-*.dat"))
	if len(files) == 0 {
		return "", 0
	}
	f := files[n.rng.IntN(len(files))]
	st, err := os.Stat(f)
	if err != nil || st.Size() <= 64 {
		return "", 0
	}
	return f, st.Size()
}

// flipLive flips a bit in the body of a stored message: a random key's
// current blob, on one of its replicas, found in that server's volume file
// by the hash its needle header carries. Only servers already damaged, or
// a third one while fewer than two are, are chosen.
func (n *nemesis) flipLive(ctx context.Context) (string, string) {
	// Mostly write-once keys: damage to them is read back, not overwritten.
	key := fmt.Sprintf("s%d", n.rng.IntN(max(n.keys/2, 1)))
	if n.rng.IntN(4) == 0 {
		key = fmt.Sprintf("k%d", n.rng.IntN(n.keys))
	}
	var lr *masterpb.LookupResponse
	if err := n.cl.call(ctx, 3*time.Second, func(ctx context.Context, m masterpb.MasterClient) (err error) {
		lr, err = m.Lookup(ctx, &masterpb.LookupRequest{Key: []byte(key)})
		return err
	}); err != nil || len(lr.Replicas) == 0 || lr.Size < 64 {
		return "", ""
	}
	// Never damage a third server's copies: once two are damaged, pick a
	// replica on one of them.
	var pool []*masterpb.Replica
	for _, r := range lr.Replicas {
		if len(n.damaged) < 2 || n.damaged[r.Id] {
			pool = append(pool, r)
		}
	}
	if len(pool) == 0 {
		return "", ""
	}
	r := pool[n.rng.IntN(len(pool))]
	f := filepath.Join(n.cl.Dir, r.Id, fmt.Sprintf("vol-%d.dat", lr.Volume))
	b, err := os.ReadFile(f)
	if err != nil {
		return "", ""
	}
	i := bytes.LastIndex(b, lr.Hash)
	if i < 0 || i+64+int(lr.Size) > len(b) {
		return "", ""
	}
	off := int64(i + 64 + n.rng.IntN(int(lr.Size))) // the header holds the hash in its first 64 bytes
	fh, err := os.OpenFile(f, os.O_RDWR, 0)
	if err != nil {
		return "", ""
	}
	defer fh.Close()
	one := []byte{b[off] ^ 1<<n.rng.IntN(8)}
	if _, err := fh.WriteAt(one, off); err != nil {
		return "", ""
	}
	return r.Id, fmt.Sprintf("%s (%s) in %s at %d", key, lr.Hash[:4], filepath.Base(f), off)
}

// flip inverts one bit of one byte past the superblock.
func (n *nemesis) flip(p *proc) string {
	f, size := n.volumeFile(p)
	if f == "" {
		return ""
	}
	off := 64 + n.rng.Int64N(size-64)
	fh, err := os.OpenFile(f, os.O_RDWR, 0)
	if err != nil {
		return ""
	}
	defer fh.Close()
	var b [1]byte
	if _, err := fh.ReadAt(b[:], off); err != nil {
		return ""
	}
	b[0] ^= 1 << n.rng.IntN(8)
	if _, err := fh.WriteAt(b[:], off); err != nil {
		return ""
	}
	return fmt.Sprintf("%s at %d", filepath.Base(f), off)
}

// truncate cuts up to 64 KiB off the end of a volume file.
func (n *nemesis) truncate(p *proc) string {
	f, size := n.volumeFile(p)
	if f == "" {
		return "no volume file"
	}
	cut := min(size-64, 1+n.rng.Int64N(64<<10))
	if err := os.Truncate(f, size-cut); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%s: %d bytes cut off", filepath.Base(f), cut)
}
