// Command raisadm is the RAIS-FS operator's tool: store, read, inspect and
// delete objects, and show the cluster's state.
//
//	raisadm [--masters H:P,...] [--timeout D] COMMAND [ARGS]
//
// The masters come from --masters or the RAIS_MASTERS environment variable
// (which `rais dev` prints). Exit status: 0 on success, 1 with a one-line
// error on failure, 2 for usage errors.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/internal/rpcerr"
)

const usage = `usage: raisadm [--masters H:P,...] [--timeout D] COMMAND [ARGS]

commands:
  put KEY FILE|-        store FILE (or standard input) under KEY
  get KEY [-o FILE]     write KEY's bytes to standard output (or FILE)
  stat KEY              show KEY's size, hash, class and creation time
  rm KEY                delete KEY
  ls [PREFIX]           list keys (with size and hash)
  status [--json]       masters, chunk servers, object and byte counts
  drain ID [--no-wait]  move every volume off chunk server ID, then retire it
                        (waits with progress; safe to run again, resumes)
  undrain ID            cancel a drain (or put a retired server back in use)
  fsck [--repair]       check every blob on every copy; exit 1 on problems
                        (with --repair: only on what could not be fixed)
  rebalance [--dry-run] [--spread F]
                        move volumes from the fullest to the emptiest servers
  class NAME [--copies N] [--write-quorum N] [--min-dcs N]
                        create or change a replication class
  bench [FLAGS]         N puts then N gets; raisadm bench -h for the flags

The masters come from --masters or $RAIS_MASTERS.
`

var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "raisadm: %v\n", oneLine(err))
		os.Exit(1)
	}
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("raisadm", flag.ContinueOnError)
	fl.SetOutput(stderr)
	mastersFlag := fl.String("masters", os.Getenv("RAIS_MASTERS"), "masters' API addresses, comma separated (default $RAIS_MASTERS)")
	timeout := fl.Duration("timeout", 30*time.Second, "give up on a command after this long")
	fl.Usage = func() { fmt.Fprint(stderr, usage, "\nflags:\n"); fl.PrintDefaults() }
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fl.NArg() == 0 {
		fl.Usage()
		return errUsage
	}
	if *mastersFlag == "" {
		fmt.Fprintln(stderr, "raisadm: no masters: set --masters or RAIS_MASTERS")
		return errUsage
	}
	masters := strings.Split(*mastersFlag, ",")
	cmd, rest := fl.Arg(0), fl.Args()[1:]
	if cmd != "bench" && cmd != "drain" && cmd != "fsck" && cmd != "rebalance" { // these run as long as they take; each operation has the timeout
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	switch cmd {
	case "status":
		return status(ctx, masters, rest, stdout, stderr)
	case "drain", "undrain":
		return drain(ctx, masters, cmd == "undrain", rest, stdout, stderr)
	case "fsck":
		return fsck(ctx, masters, rest, stdout, stderr)
	case "rebalance":
		return rebalance(ctx, masters, rest, stdout, stderr)
	case "class":
		return class(ctx, masters, rest, stdout, stderr)
	}
	cfg := client.Config{Masters: masters, Timeout: *timeout, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
	if cmd == "bench" {
		return bench(ctx, cfg, rest, stdout, stderr)
	}
	c, err := client.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	need := func(n int, what string) error {
		if len(rest) != n {
			fmt.Fprintf(stderr, "raisadm %s: usage: raisadm %s\n", cmd, what)
			return errUsage
		}
		return nil
	}
	switch cmd {
	case "put":
		if err := need(2, "put KEY FILE|-"); err != nil {
			return err
		}
		var r io.Reader = stdin
		if rest[1] != "-" {
			f, err := os.Open(rest[1])
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		o, err := c.Put(ctx, rest[0], r, nil)
		if err != nil {
			return err
		}
		note := ""
		if o.Deduped {
			note = " (already stored: no bytes sent)"
		}
		fmt.Fprintf(stdout, "stored %s: %d bytes, blake3 %s%s\n", o.Key, o.Size, o.Hash, note)
		return nil
	case "get":
		out := ""
		gfl := flag.NewFlagSet("raisadm get", flag.ContinueOnError)
		gfl.SetOutput(stderr)
		gfl.StringVar(&out, "o", "", "write to this file instead of standard output")
		if len(rest) == 0 {
			fmt.Fprintln(stderr, "raisadm get: usage: raisadm get KEY [-o FILE]")
			return errUsage
		}
		key := rest[0]
		if err := gfl.Parse(rest[1:]); err != nil || gfl.NArg() > 0 {
			return errUsage
		}
		r, err := c.Get(ctx, key)
		if err != nil {
			return err
		}
		defer r.Close()
		var w io.Writer = stdout
		if out != "" {
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			w = f
			if _, err := io.Copy(f, r); err != nil {
				f.Close()
				os.Remove(out)
				return err
			}
			return f.Close()
		}
		_, err = io.Copy(w, r)
		return err
	case "stat":
		if err := need(1, "stat KEY"); err != nil {
			return err
		}
		o, err := c.Stat(ctx, rest[0])
		if err != nil {
			return err
		}
		class := o.Class
		if class == "" {
			class = "default"
		}
		fmt.Fprintf(stdout, "key:     %s\nsize:    %d\nblake3:  %s\nclass:   %s\ncreated: %s\n", o.Key, o.Size, o.Hash, class, o.Created.UTC().Format(time.RFC3339))
		return nil
	case "rm":
		if err := need(1, "rm KEY"); err != nil {
			return err
		}
		return c.Delete(ctx, rest[0])
	case "ls":
		if len(rest) > 1 {
			fmt.Fprintln(stderr, "raisadm ls: usage: raisadm ls [PREFIX]")
			return errUsage
		}
		prefix := ""
		if len(rest) == 1 {
			prefix = rest[0]
		}
		after := ""
		for {
			p, err := c.List(ctx, prefix, after, 1000)
			if err != nil {
				return err
			}
			for _, o := range p.Objects {
				fmt.Fprintf(stdout, "%12d  %s  %s\n", o.Size, o.Hash.String()[:16], o.Key)
			}
			if p.Next == "" {
				return nil
			}
			after = p.Next
		}
	default:
		fmt.Fprintf(stderr, "raisadm: unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}

// statusJSON is the stable shape of `raisadm status --json`.
type statusJSON struct {
	Masters         []masterJSON `json:"masters"`
	ChunkServers    []csJSON     `json:"chunkservers"`
	Objects         int64        `json:"objects"`
	Bytes           int64        `json:"bytes"`
	Blobs           int64        `json:"blobs"`
	Volumes         uint32       `json:"volumes"`
	UnderReplicated uint32       `json:"under_replicated"`
	Repairing       uint32       `json:"repairing"`
	MovesPending    uint32       `json:"moves_pending"`
	RepairingBytes  int64        `json:"repairing_bytes"`
}

type masterJSON struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
}

type csJSON struct {
	ID        string `json:"id"`
	Address   string `json:"address"`
	State     string `json:"state"`
	DC        string `json:"dc"`
	Rack      string `json:"rack"`
	UsedBytes int64  `json:"used_bytes"`
	FreeBytes int64  `json:"free_bytes"`
	Volumes   uint32 `json:"volumes"`
}

func status(ctx context.Context, masters, args []string, stdout, stderr io.Writer) error {
	asJSON := false
	switch {
	case len(args) == 1 && args[0] == "--json":
		asJSON = true
	case len(args) > 0:
		fmt.Fprintln(stderr, "raisadm status: usage: raisadm status [--json]")
		return errUsage
	}
	var st *masterpb.StatusResponse
	var last error
	for _, addr := range masters { // any master answers status
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			last = err
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err = masterpb.NewMasterClient(conn).Status(actx, &masterpb.StatusRequest{})
		cancel()
		conn.Close()
		if err == nil {
			break
		}
		last = fmt.Errorf("master %s: %w", addr, rpcerr.FromStatus(err))
	}
	if st == nil {
		return fmt.Errorf("status: no master answered: %w", last)
	}
	out := statusJSON{Objects: st.Objects, Bytes: st.Bytes, Blobs: st.Blobs, Volumes: st.Volumes, UnderReplicated: st.UnderReplicated, Repairing: st.Repairing, MovesPending: st.MovesPending, RepairingBytes: st.RepairingBytes,
		Masters: []masterJSON{}, ChunkServers: []csJSON{}}
	for _, m := range st.Masters {
		out.Masters = append(out.Masters, masterJSON{ID: m.Id, Address: m.Address, Leader: m.Leader})
	}
	for _, c := range st.Chunkservers {
		out.ChunkServers = append(out.ChunkServers, csJSON{ID: c.Id, Address: c.Address, State: c.State, DC: c.Dc, Rack: c.Rack, UsedBytes: c.UsedBytes, FreeBytes: c.FreeBytes, Volumes: c.Volumes})
	}
	sort.Slice(out.Masters, func(i, j int) bool { return out.Masters[i].ID < out.Masters[j].ID })
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MASTER\tADDRESS\tROLE")
	for _, m := range out.Masters {
		role := "follower"
		if m.Leader {
			role = "leader *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.ID, m.Address, role)
	}
	fmt.Fprintln(tw, "\nCHUNK SERVER\tADDRESS\tSTATE\tDC/RACK\tUSED\tFREE\tVOLUMES")
	for _, c := range out.ChunkServers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\t%s\t%d\n", c.ID, c.Address, c.State, or(c.DC, "-"), or(c.Rack, "-"), human(c.UsedBytes), human(c.FreeBytes), c.Volumes)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nobjects %d, %s; blobs %d; volumes %d, under-replicated %d, repairing %d (%s to copy), moves pending %d\n", out.Objects, human(out.Bytes), out.Blobs, out.Volumes, out.UnderReplicated, out.Repairing, human(out.RepairingBytes), out.MovesPending)
	return nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
