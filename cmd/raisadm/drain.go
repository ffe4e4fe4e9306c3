package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raisfs/raisfs/api/masterpb"
	"github.com/raisfs/raisfs/internal/rpcerr"
)

// anyMaster runs call against the masters in turn until one answers
// (followers forward to the leader), each attempt bounded by 5 s.
func anyMaster(ctx context.Context, masters []string, call func(context.Context, masterpb.MasterClient) error) error {
	return anyMasterTimeout(ctx, masters, 5*time.Second, call)
}

// anyMasterTimeout is anyMaster with each attempt bounded by per.
func anyMasterTimeout(ctx context.Context, masters []string, per time.Duration, call func(context.Context, masterpb.MasterClient) error) error {
	var last error
	for _, addr := range masters {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			last = err
			continue
		}
		actx, cancel := context.WithTimeout(ctx, per)
		err = call(actx, masterpb.NewMasterClient(conn))
		cancel()
		conn.Close()
		if err == nil {
			return nil
		}
		last = fmt.Errorf("master %s: %w", addr, rpcerr.FromStatus(err))
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("no master answered: %w", last)
}

// drain marks a chunk server draining (or, with undrain, alive again) and,
// unless --no-wait, follows the masters' repair until the server is
// retired, with a progress bar on a terminal.
func drain(ctx context.Context, masters []string, undrain bool, args []string, stdout, stderr io.Writer) error {
	name := "drain"
	if undrain {
		name = "undrain"
	}
	fl := flag.NewFlagSet("raisadm "+name, flag.ContinueOnError)
	fl.SetOutput(stderr)
	noWait := fl.Bool("no-wait", false, "return once the server is marked draining")
	id := ""
	if len(args) > 0 {
		id, args = args[0], args[1:]
	}
	if err := fl.Parse(args); err != nil || fl.NArg() > 0 || id == "" {
		fmt.Fprintf(stderr, "raisadm %s: usage: raisadm %s ID%s\n", name, name, map[bool]string{false: " [--no-wait]", true: ""}[undrain])
		return errUsage
	}
	var resp *masterpb.DrainResponse
	err := anyMaster(ctx, masters, func(ctx context.Context, m masterpb.MasterClient) (err error) {
		resp, err = m.Drain(ctx, &masterpb.DrainRequest{Id: id, Undrain: undrain})
		return err
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, id, err)
	}
	fmt.Fprintf(stdout, "%s: %s, member of %d volumes\n", id, resp.State, resp.Volumes)
	if undrain || *noWait || resp.State == "retired" {
		return nil
	}
	total := int(resp.Volumes)
	var bar *progressbar.ProgressBar
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && stdout == os.Stdout {
		bar = progressbar.NewOptions(total, progressbar.OptionSetDescription("moving volumes off "+id), progressbar.OptionShowCount())
	}
	last := time.Now()
	for {
		var st *masterpb.StatusResponse
		err := anyMaster(ctx, masters, func(ctx context.Context, m masterpb.MasterClient) (err error) {
			st, err = m.Status(ctx, &masterpb.StatusRequest{})
			return err
		})
		if err != nil {
			return fmt.Errorf("drain %s: %w", id, err)
		}
		for _, cs := range st.Chunkservers {
			if cs.Id != id {
				continue
			}
			left := int(cs.Volumes)
			if bar != nil {
				bar.Set(max(0, total-left))
			} else if time.Since(last) >= 5*time.Second {
				last = time.Now()
				fmt.Fprintf(stdout, "  %s: %s, %d of %d volumes moved\n", id, cs.State, max(0, total-left), total)
			}
			switch cs.State {
			case "retired":
				if bar != nil {
					bar.Finish()
					fmt.Fprintln(stdout)
				}
				fmt.Fprintf(stdout, "%s: drained and retired; it holds nothing that is needed\n", id)
				return nil
			case "alive":
				return fmt.Errorf("drain %s: cancelled (the server is alive again)", id)
			}
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("drain %s: %w (the drain goes on; run the command again to follow it)", id, ctx.Err())
		case <-t.C:
		}
	}
}
