package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/raisfs/raisfs/api/masterpb"
)

// rebalance asks the leader for a plan that moves volumes from the fullest
// to the emptiest chunk servers, prints it, and (unless --dry-run) follows
// the moves with a progress bar until they are done.
func rebalance(ctx context.Context, masters []string, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("raisadm rebalance", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dry := fl.Bool("dry-run", false, "print the plan, move nothing")
	spread := fl.Float64("spread", 0.1, "stop when the used share of capacity of the fullest and the emptiest server differ by at most this")
	if err := fl.Parse(args); err != nil || fl.NArg() > 0 || *spread <= 0 || *spread >= 1 {
		fmt.Fprintln(stderr, "raisadm rebalance: usage: raisadm rebalance [--dry-run] [--spread FRACTION]")
		return errUsage
	}
	var plan *masterpb.RebalanceResponse
	err := anyMaster(ctx, masters, func(ctx context.Context, m masterpb.MasterClient) (err error) {
		plan, err = m.Rebalance(ctx, &masterpb.RebalanceRequest{DryRun: *dry, Spread: *spread})
		return err
	})
	if err != nil {
		return fmt.Errorf("rebalance: %w", err)
	}
	var total int64
	for _, mv := range plan.Moves {
		fmt.Fprintf(stdout, "move volume %d  %s -> %s  %s\n", mv.Volume, mv.From, mv.To, human(mv.Bytes))
		total += mv.Bytes
	}
	fmt.Fprintf(stdout, "%d moves, %s; spread %.1f%% -> %.1f%% (target %.1f%%)\n",
		len(plan.Moves), human(total), plan.SpreadBefore*100, plan.SpreadAfter*100, *spread*100)
	if *dry || len(plan.Moves) == 0 {
		return nil
	}
	n := len(plan.Moves)
	var bar *progressbar.ProgressBar
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && stdout == os.Stdout {
		bar = progressbar.NewOptions(n, progressbar.OptionSetDescription("moving volumes"), progressbar.OptionShowCount())
	}
	last := time.Now()
	for {
		var st *masterpb.StatusResponse
		err := anyMaster(ctx, masters, func(ctx context.Context, m masterpb.MasterClient) (err error) {
			st, err = m.Status(ctx, &masterpb.StatusRequest{})
			return err
		})
		if err != nil {
			return fmt.Errorf("rebalance: %w", err)
		}
		done := n - min(n, int(st.MovesPending))
		if bar != nil {
			bar.Set(done)
		} else if time.Since(last) >= 5*time.Second {
			last = time.Now()
			fmt.Fprintf(stdout, "  %d of %d moves done\n", done, n)
		}
		if st.MovesPending == 0 && st.Repairing == 0 {
			if bar != nil {
				bar.Finish()
				fmt.Fprintln(stdout)
			}
			fmt.Fprintln(stdout, "rebalance done")
			return nil
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("rebalance: %w (the moves go on; raisadm status shows them)", ctx.Err())
		case <-t.C:
		}
	}
}

// class creates or changes a replication class.
func class(ctx context.Context, masters []string, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("raisadm class", flag.ContinueOnError)
	fl.SetOutput(stderr)
	copies := fl.Uint("copies", 3, "copies of each message")
	quorum := fl.Uint("write-quorum", 0, "copies durable before a put is acknowledged (0: all)")
	minDCs := fl.Uint("min-dcs", 0, "copies span at least this many data centers (0 or 1: no rule)")
	name := ""
	if len(args) > 0 {
		name, args = args[0], args[1:]
	}
	if err := fl.Parse(args); err != nil || fl.NArg() > 0 || name == "" || *copies == 0 {
		fmt.Fprintln(stderr, "raisadm class: usage: raisadm class NAME [--copies N] [--write-quorum N] [--min-dcs N]")
		return errUsage
	}
	err := anyMaster(ctx, masters, func(ctx context.Context, m masterpb.MasterClient) error {
		_, err := m.SetClass(ctx, &masterpb.SetClassRequest{Name: name, Copies: uint32(*copies), WriteQuorum: uint32(*quorum), MinDcs: uint32(*minDCs)})
		return err
	})
	if err != nil {
		return fmt.Errorf("class %s: %w", name, err)
	}
	fmt.Fprintf(stdout, "class %s: %d copies, write quorum %d, at least %d data centers\n", name, *copies, *quorum, *minDCs)
	return nil
}
