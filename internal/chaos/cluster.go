// Package chaos is the harness that tries hardest to break RAIS-FS: it runs
// a cluster of real processes, drives a recorded workload against it while
// a nemesis kills, pauses and damages them on a schedule drawn from a seed,
// and then checks that no acknowledged message was lost or corrupted and
// that the history of operations is linearizable. `rais chaos` and the
// tests in integration/ run it.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process of the cluster, restartable with the same
// arguments (and so the same ports and data).
type proc struct {
	name, addr string // addr: the API address (masters) or data address
	args       []string
	bin        string
	logPath    string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.cmd, p.done, p.paused = cmd, done, false
	return nil
}

// kill sends SIGKILL and waits for the process to go.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT) // a paused process dies too
	cmd.Process.Kill()
	<-done
}

// stop asks for a clean shutdown (SIGTERM), then kills after a while.
func (p *proc) stop(wait time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cmd.Process.Kill()
		<-done
	}
}

func (p *proc) signal(sig syscall.Signal) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	p.paused = sig == syscall.SIGSTOP
	return p.cmd.Process.Signal(sig) == nil
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Cluster is 3 masters and N chunk servers, each a child process of bin.
type Cluster struct {
	Dir          string
	Masters      []string // API addresses
	masters      []*proc
	chunkservers []*proc
	log          *slog.Logger
	mounts       []string // unmounted by Stop
	// SmallDisk names the chunk server whose data is on a small tmpfs.
	SmallDisk string
	net       *netns // nil: no partitions
}

// ClusterConfig sizes a cluster.
type ClusterConfig struct {
	Bin          string // the rais binary
	Dir          string
	ChunkServers int
	// VolumeSize is small so that volumes fill, seal and new ones open
	// during a run.
	VolumeSize int64
	// SmallDisk puts the last chunk server's data on a 40 MiB tmpfs, so
	// it runs out of space during the run (needs root; skipped otherwise).
	SmallDisk bool
	// Partitions runs each process in a network namespace of its own so
	// that the nemesis can cut it off (needs root; skipped otherwise).
	Partitions bool
	Logger     *slog.Logger
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// StartCluster starts the processes and returns once they are started (not
// yet healthy: see WaitHealthy).
func StartCluster(cfg ClusterConfig) (*Cluster, error) {
	if cfg.ChunkServers < 3 {
		return nil, errors.New("chaos: at least 3 chunk servers")
	}
	if cfg.VolumeSize == 0 {
		cfg.VolumeSize = 8 << 20
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: cfg.Dir, log: cfg.Logger}
	cleanLeftovers()
	if cfg.SmallDisk && os.Geteuid() == 0 {
		dir := filepath.Join(cfg.Dir, fmt.Sprintf("cs%d", cfg.ChunkServers))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", dir).CombinedOutput(); err != nil {
			c.log.Warn("chaos: no small disk (mount tmpfs failed)", "err", err, "out", strings.TrimSpace(string(out)))
		} else {
			record("mount", dir)
			c.mounts = append(c.mounts, dir)
			c.SmallDisk = fmt.Sprintf("cs%d", cfg.ChunkServers)
		}
	}
	names := []string{"m1", "m2", "m3"}
	for i := range cfg.ChunkServers {
		names = append(names, fmt.Sprintf("cs%d", i+1))
	}
	if cfg.Partitions {
		n, err := newNetns(names)
		if err != nil {
			c.log.Warn("chaos: running without network partitions", "err", err)
		} else {
			c.net = n
		}
	}
	// addr is a free port on the node's address: loopback, or its own
	// namespace's address.
	addr := func(name string) (string, error) {
		a, err := freePort()
		if err != nil || c.net == nil {
			return a, err
		}
		_, port, _ := strings.Cut(a, ":")
		return c.net.nodes[name].ip + ":" + port, nil
	}
	type mAddrs struct{ id, api, raft string }
	var ms []mAddrs
	var peers []string
	for i := range 3 {
		api, err := addr(names[i])
		if err != nil {
			return nil, err
		}
		raft, err := addr(names[i])
		if err != nil {
			return nil, err
		}
		id := fmt.Sprintf("m%d", i+1)
		ms = append(ms, mAddrs{id, api, raft})
		peers = append(peers, id+"="+raft)
		c.Masters = append(c.Masters, api)
	}
	for _, m := range ms {
		c.masters = append(c.masters, &proc{
			name: m.id, addr: m.api, bin: cfg.Bin, logPath: filepath.Join(cfg.Dir, "logs", m.id+".log"),
			args: []string{"master", "--id", m.id, "--dir", filepath.Join(cfg.Dir, m.id), "--raft-addr", m.raft,
				"--api-addr", m.api, "--peers", strings.Join(peers, ","), "--copies", "3",
				"--volume-size", fmt.Sprint(cfg.VolumeSize), "--server-down-after", "3s", "--repair-after", "6s",
				"--fsck-every", "24h", "--log-level", "warn"},
		})
	}
	for i := range cfg.ChunkServers {
		id := fmt.Sprintf("cs%d", i+1)
		addr, err := addr(id)
		if err != nil {
			return nil, err
		}
		c.chunkservers = append(c.chunkservers, &proc{
			name: id, addr: addr, bin: cfg.Bin, logPath: filepath.Join(cfg.Dir, "logs", id+".log"),
			args: []string{"chunkserver", "--id", id, "--dir", filepath.Join(cfg.Dir, id), "--addr", addr,
				"--masters", strings.Join(c.Masters, ","), "--rack", fmt.Sprintf("rack%d", i%3+1),
				"--volume-size", fmt.Sprint(cfg.VolumeSize), "--min-free", fmt.Sprint(16 << 20),
				"--scrub-every", "5s", "--scrub-rate-mib", "64", "--log-level", "warn"},
		})
	}
	for _, p := range c.all() {
		if c.net != nil {
			p.bin, p.args = c.net.wrap(p.name, p.bin, p.args)
		}
		if err := p.start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// Partition cuts name off from every other process and the clients.
func (c *Cluster) Partition(name string) error {
	if c.net == nil {
		return errors.New("no network namespaces")
	}
	return c.net.cut(name)
}

// Unpartition joins name again.
func (c *Cluster) Unpartition(name string) error {
	if c.net == nil {
		return nil
	}
	return c.net.heal(name)
}

// CanPartition reports whether partitions are available.
func (c *Cluster) CanPartition() bool { return c.net != nil }

func (c *Cluster) all() []*proc { return append(append([]*proc(nil), c.masters...), c.chunkservers...) }

func (c *Cluster) proc(name string) *proc {
	for _, p := range c.all() {
		if p.name == name {
			return p
		}
	}
	return nil
}

// Stop stops every process (chunk servers first) and waits for them.
func (c *Cluster) Stop() {
	for i := len(c.chunkservers) - 1; i >= 0; i-- {
		c.chunkservers[i].stop(10 * time.Second)
	}
	for _, p := range c.masters {
		p.stop(10 * time.Second)
	}
	for _, m := range c.mounts {
		if out, err := exec.Command("umount", m).CombinedOutput(); err != nil {
			c.log.Warn("chaos: unmount", "dir", m, "err", err, "out", strings.TrimSpace(string(out)))
		}
	}
	c.mounts = nil
	if c.net != nil {
		c.net.close()
		c.net = nil
	}
	forgetLedger()
}

// HealAll joins what is cut off, restarts what is down and resumes what
// is paused.
func (c *Cluster) HealAll() error {
	var errs []error
	for _, p := range c.all() {
		if err := c.Unpartition(p.name); err != nil {
			errs = append(errs, err)
		}
		p.signal(syscall.SIGCONT)
		if !p.running() {
			if err := p.start(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// sleepCtx waits d or until ctx ends; false if ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
