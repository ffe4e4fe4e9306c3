package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raisfs/raisfs/mailfront"
)

// devLayout is what `rais dev` keeps in DIR/dev.json: the ports chosen at
// the first start, reused on every later one (the masters' Raft addresses
// are part of the cluster's membership and must not change).
type devLayout struct {
	Masters      []devNode `json:"masters"`
	ChunkServers []devNode `json:"chunkservers"`
	Mail         *devMail  `json:"mail,omitempty"`
}

// devMail is the mail front end's addresses.
type devMail struct {
	ID       string `json:"id"`
	IMAP     string `json:"imap"`
	LMTP     string `json:"lmtp"`
	HTTPAddr string `json:"http,omitempty"` // /metrics and /healthz
	// API is where layouts written before the front end had named
	// addresses kept IMAP (and "http" LMTP); read once, then moved.
	API string `json:"api,omitempty"`
}

type devNode struct {
	ID       string `json:"id"`
	API      string `json:"api"`            // master gRPC API, or chunk server data API
	Raft     string `json:"raft,omitempty"` // masters only
	HTTPAddr string `json:"http,omitempty"` // masters' /metrics
}

// upgrade moves the addresses of a layout written before the front end
// had named ones (IMAP in "api", LMTP in "http") to their names.
func (m *devMail) upgrade() {
	if m.API != "" && m.IMAP == "" {
		m.IMAP, m.LMTP, m.HTTPAddr = m.API, m.HTTPAddr, ""
	}
	m.API = ""
}

// devPorts holds the listening sockets rais dev opened for its children,
// by address, until each is handed to the child that serves it.
type devPorts map[string]net.Listener

// bind listens on addr ("127.0.0.1:0" for a new port) and returns the
// address actually bound.
func (p devPorts) bind(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	a := ln.Addr().String()
	p[a] = ln
	return a, nil
}

func (p devPorts) closeAll() {
	for a, ln := range p {
		ln.Close()
		delete(p, a)
	}
}

// loadOrCreateLayout reads DIR/dev.json (or makes a new layout) and binds
// every port in it. The sockets stay open and are passed to the children,
// so no other process can take a port between choosing and using it.
func loadOrCreateLayout(dir string, chunkservers int) (*devLayout, devPorts, error) {
	path := filepath.Join(dir, "dev.json")
	var l devLayout
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &l); err != nil {
			return nil, nil, fmt.Errorf("%s: %w (remove the directory to start afresh)", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	ports := devPorts{}
	var portErr error
	port := func(addr string) string {
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		a, err := ports.bind(addr)
		if err != nil && portErr == nil {
			portErr = fmt.Errorf("port %s (from %s): %w; is another cluster or program using it?", addr, path, err)
		}
		return a
	}
	for len(l.Masters) < 3 {
		l.Masters = append(l.Masters, devNode{ID: fmt.Sprintf("m%d", len(l.Masters)+1)})
	}
	for len(l.ChunkServers) < chunkservers {
		l.ChunkServers = append(l.ChunkServers, devNode{ID: fmt.Sprintf("cs%d", len(l.ChunkServers)+1)})
	}
	for i := range l.Masters {
		m := &l.Masters[i]
		m.API, m.Raft, m.HTTPAddr = port(m.API), port(m.Raft), port(m.HTTPAddr)
	}
	for i := range l.ChunkServers[:chunkservers] {
		cs := &l.ChunkServers[i]
		cs.API = port(cs.API)
	}
	if l.Mail == nil {
		l.Mail = &devMail{ID: "imap1"}
	}
	l.Mail.upgrade()
	l.Mail.IMAP, l.Mail.LMTP, l.Mail.HTTPAddr = port(l.Mail.IMAP), port(l.Mail.LMTP), port(l.Mail.HTTPAddr)
	if portErr != nil {
		ports.closeAll()
		return nil, nil, portErr
	}
	b, _ := json.MarshalIndent(l, "", "  ")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		ports.closeAll()
		return nil, nil, err
	}
	return &l, ports, nil
}

// devVolumeSize: small volumes, so that sealing and new volumes happen
// in a demo; masters and chunk servers must agree on it.
const devVolumeSize = 256 << 20

// devGOMAXPROCS is the Go scheduler's processor count for each of a dev
// cluster's processes: the machine's CPUs shared out among them, at least
// one. The default (every process may run on every CPU) makes each of
// them keep spare threads spinning for work and wake one another's
// threads for every message on a machine they all share; with 8
// processes on 2 CPUs, 1 each gave 12–15% more puts per second at 15%
// less CPU per put (ARCHITECTURE.md, put path).
func devGOMAXPROCS(cpus, processes int) int {
	return max(1, cpus/max(1, processes))
}

type child struct {
	name string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("rais dev", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", "rais-data", "directory for all data and logs; reused by the next start")
	n := fl.Int("chunkservers", 4, "number of chunk servers")
	copies := fl.Int("copies", 3, "copies of each message (default replication class), fixed when the cluster is first formed")
	readLease := fl.Duration("read-lease", 0, "masters' read lease (see rais master --help; negative: every read confirms leadership with a quorum)")
	logStore := fl.String("log-store", "", "masters' Raft log store: wal or boltdb (default: what the data dir holds, wal for a new one); fixed when the cluster is first formed")
	volSize := fl.Int64("volume-size", devVolumeSize, "bytes at which a volume is full (small: volumes seal and new ones open often)")
	dcs := fl.Int("dcs", 1, "data centers the chunk servers are spread over (dc1, dc2, ...), for trying failure domains")
	scrubEvery := fl.Duration("scrub-every", 10*time.Minute, "chunk servers re-verify every needle this often")
	repairAfter := fl.Duration("repair-after", 20*time.Second, "a chunk server silent this long has its volumes copied elsewhere (short, so that healing can be watched)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: rais dev [--dir DIR] [--chunkservers N]\n\n"+
			"Runs a whole cluster on this machine: 3 masters, N chunk servers and a mail front end (IMAP and\n"+
			"LMTP, user demo, password demo) as child processes on loopback, data and logs under DIR (reused\n"+
			"on the next start). A child that dies is reported,\n"+
			"not restarted, so failover can be watched. Ctrl-C stops everything.\n\nflags:\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fl.NArg() > 0 || *n < 1 || *n > 64 || *copies < 1 || *copies > *n || *dcs < 1 || *dcs > *n || *volSize < 1<<20 {
		fmt.Fprintln(stderr, "rais dev: want no arguments, 1..64 chunk servers and 1..chunkservers copies")
		return errUsage
	}
	if err := os.MkdirAll(filepath.Join(*dir, "logs"), 0o755); err != nil {
		return err
	}
	lockFile, err := os.OpenFile(filepath.Join(*dir, "dev.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer lockFile.Close()
	if err := syscall.Flock(int(lockFile.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("%s is in use by another rais dev (lock %s): %w", *dir, lockFile.Name(), err)
	}
	layout, ports, err := loadOrCreateLayout(*dir, *n)
	if err != nil {
		return err
	}
	defer ports.closeAll()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var peers, masters []string
	for _, m := range layout.Masters {
		peers = append(peers, m.ID+"="+m.Raft)
		masters = append(masters, m.API)
	}
	childEnv := []string{}
	procs := devGOMAXPROCS(runtime.NumCPU(), len(layout.Masters)+*n+1)
	if os.Getenv("GOMAXPROCS") == "" {
		childEnv = append(childEnv, "GOMAXPROCS="+strconv.Itoa(procs))
	}
	var children []*child
	var mu sync.Mutex
	// start runs `rais ARGS...` with the sockets for addrs (named by
	// names) passed on as file descriptors 3, 4, ...
	start := func(name string, names, addrs []string, args ...string) error {
		logPath := filepath.Join(*dir, "logs", name+".log")
		logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		cmd := exec.Command(self, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.Env = append(append(os.Environ(), childEnv...), listenFDsEnv+"="+strings.Join(names, ","))
		for _, a := range addrs {
			f, err := ports[a].(*net.TCPListener).File()
			if err != nil {
				logf.Close()
				return fmt.Errorf("pass %s's socket %s: %w", name, a, err)
			}
			defer f.Close() // the child has its own copy once started
			cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		}
		// Ctrl-C on the terminal reaches the children too (same process
		// group): they shut down cleanly on their own, and a second Ctrl-C
		// stops them at once. If rais dev itself dies, they get SIGTERM.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start %s: %w", name, err)
		}
		for _, a := range addrs {
			ports[a].Close()
			delete(ports, a)
		}
		c := &child{name: name, addr: addrs[0], cmd: cmd, done: make(chan struct{})}
		go func() {
			c.err = cmd.Wait()
			logf.Close()
			close(c.done)
		}()
		mu.Lock()
		children = append(children, c)
		mu.Unlock()
		return nil
	}
	stopAll := func() {
		mu.Lock()
		cs := append([]*child(nil), children...)
		mu.Unlock()
		// Chunk servers first, masters last.
		for i := len(cs) - 1; i >= 0; i-- {
			cs[i].cmd.Process.Signal(syscall.SIGTERM)
		}
		deadline := time.After(15 * time.Second)
		for _, c := range cs {
			select {
			case <-c.done:
			case <-deadline:
				c.cmd.Process.Kill()
				<-c.done
			}
		}
	}
	for _, m := range layout.Masters {
		err := start(m.ID, []string{"api", "raft", "http"}, []string{m.API, m.Raft, m.HTTPAddr}, "master", "--id", m.ID, "--dir", filepath.Join(*dir, m.ID),
			"--raft-addr", m.Raft, "--api-addr", m.API, "--http-addr", m.HTTPAddr, "--peers", strings.Join(peers, ","),
			"--copies", fmt.Sprint(*copies), "--log-store", *logStore, "--read-lease", readLease.String(), "--volume-size", fmt.Sprint(*volSize),
			"--repair-after", repairAfter.String(), "--server-down-after", "5s", "--fsck-every", "10m")
		if err != nil {
			stopAll()
			return err
		}
	}
	for i, cs := range layout.ChunkServers[:*n] {
		err := start(cs.ID, []string{"api"}, []string{cs.API}, "chunkserver", "--id", cs.ID, "--dir", filepath.Join(*dir, cs.ID),
			"--addr", cs.API, "--masters", strings.Join(masters, ","), "--dc", fmt.Sprintf("dc%d", i%*dcs+1), "--rack", fmt.Sprintf("rack%d", (i / *dcs)%2+1),
			"--volume-size", fmt.Sprint(*volSize), "--min-free", fmt.Sprint(64<<20),
			"--scrub-every", scrubEvery.String())
		if err != nil {
			stopAll()
			return err
		}
	}
	usersFile := filepath.Join(*dir, "users")
	if _, err := os.Stat(usersFile); errors.Is(err, os.ErrNotExist) {
		// Dev mode only: a demo user with a known password.
		if err := mailfront.AddUser(usersFile, "demo", "demo"); err != nil {
			stopAll()
			return err
		}
	}
	mail := layout.Mail
	if err := start(mail.ID, []string{"imap", "lmtp", "http"}, []string{mail.IMAP, mail.LMTP, mail.HTTPAddr}, "imap",
		"--masters", strings.Join(masters, ","), "--users", usersFile, "--imap-addr", mail.IMAP, "--lmtp-addr", mail.LMTP,
		"--http-addr", mail.HTTPAddr); err != nil {
		stopAll()
		return err
	}
	fmt.Fprintf(stdout, "RAIS_MASTERS=%s\nRAIS_IMAP=%s\nRAIS_LMTP=%s\n", strings.Join(masters, ","), mail.IMAP, mail.LMTP)
	mu.Lock()
	for _, c := range children {
		fmt.Fprintf(stdout, "  %-5s %-22s pid %d   log %s\n", c.name, c.addr, c.cmd.Process.Pid, filepath.Join(*dir, "logs", c.name+".log"))
	}
	mu.Unlock()
	if len(childEnv) > 0 {
		fmt.Fprintf(stdout, "  (%d processes share %d CPUs: each runs with GOMAXPROCS=%d; set GOMAXPROCS to choose)\n", len(children), runtime.NumCPU(), procs)
	}
	fmt.Fprintf(stdout, "\nTry (in another shell):\n"+
		"  export RAIS_MASTERS=%s\n"+
		"  go run ./cmd/raisadm status\n"+
		"  go run ./cmd/raisadm put hello.txt README.md && go run ./cmd/raisadm get hello.txt\n"+
		"Kill a master or a chunk server (kill PID) and watch the cluster carry on: %s after a chunk server\n"+
		"dies, its volumes are copied to the others (raisadm status shows under-replicated and repairing).\n"+
		"  go run ./cmd/raisadm drain cs1     moves everything off cs1, then retires it\n"+
		"Mail: point a mail client at IMAP %s (no TLS, user demo, password demo); deliver with LMTP\n"+
		"to %s, recipient demo@localhost (e.g. swaks --protocol LMTP --server %s --to demo@localhost);\n"+
		"its metrics: curl http://%s/metrics\n"+
		"Ctrl-C stops everything.\n",
		strings.Join(masters, ","), *repairAfter, mail.IMAP, mail.LMTP, mail.LMTP, mail.HTTPAddr)

	// Report children that die; do not restart them.
	dead := make(chan *child)
	mu.Lock()
	for _, c := range children {
		go func() {
			<-c.done
			select {
			case dead <- c:
			case <-ctx.Done():
			}
		}()
	}
	mu.Unlock()
	for {
		select {
		case c := <-dead:
			fmt.Fprintf(stdout, "%s (pid %d) exited: %v; not restarting it (see its log)\n", c.name, c.cmd.Process.Pid, c.err)
		case <-ctx.Done():
			fmt.Fprintln(stdout, "stopping the cluster...")
			stopAll()
			fmt.Fprintln(stdout, "stopped")
			return nil
		}
	}
}
