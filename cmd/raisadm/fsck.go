package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/raisfs/raisfs/api/masterpb"
)

// errProblems makes raisadm exit 1 after printing its report.
type errProblems struct{ n uint64 }

func (e errProblems) Error() string { return fmt.Sprintf("fsck: %d problems", e.n) }

func problems(r *masterpb.FsckResponse) uint64 {
	return r.Missing + r.Corrupt + r.Orphaned + uint64(r.UnderReplicated) + uint64(r.CopiesUnchecked)
}

// fsck checks the metadata against the chunk servers. With --repair it
// asks for repairs, waits for them (copies to finish; orphans are queued
// for deletion) and checks again: the exit code is then 1 only for what
// could not be fixed.
func fsck(ctx context.Context, masters []string, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("raisadm fsck", flag.ContinueOnError)
	fl.SetOutput(stderr)
	repair := fl.Bool("repair", false, "fix what can be fixed: replace damaged copies, queue orphans for deletion")
	examples := fl.Uint("examples", 10, "describe up to this many problems")
	wait := fl.Duration("repair-wait", 10*time.Minute, "with --repair, how long to wait for the copies before checking again")
	if err := fl.Parse(args); err != nil || fl.NArg() > 0 {
		return errUsage
	}
	run := func(repair bool) (*masterpb.FsckResponse, error) {
		var r *masterpb.FsckResponse
		err := anyMasterTimeout(ctx, masters, time.Hour, func(ctx context.Context, m masterpb.MasterClient) (err error) {
			r, err = m.Fsck(ctx, &masterpb.FsckRequest{Repair: repair, MaxExamples: uint32(*examples)})
			return err
		})
		return r, err
	}
	r, err := run(*repair)
	if err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	report(stdout, r)
	if problems(r) == 0 {
		return nil
	}
	if !*repair {
		return errProblems{problems(r)}
	}
	fmt.Fprintf(stdout, "repair: %d missing blobs put back from other members, %d copies queued for replacement, %d orphans queued for deletion; waiting for the copies\n",
		r.NeedlesFilled, r.CopiesQueued, r.OrphansQueued)
	deadline := time.Now().Add(*wait)
	for time.Now().Before(deadline) {
		var st *masterpb.StatusResponse
		err := anyMaster(ctx, masters, func(ctx context.Context, m masterpb.MasterClient) (err error) {
			st, err = m.Status(ctx, &masterpb.StatusRequest{})
			return err
		})
		if err == nil && st.Repairing == 0 && st.UnderReplicated == 0 && r.CopiesQueued == 0 {
			break
		}
		r.CopiesQueued = 0 // the first round of repairs has had time to start
		t := time.NewTimer(2 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	r, err = run(false)
	if err != nil {
		return fmt.Errorf("fsck after repair: %w", err)
	}
	fmt.Fprintln(stdout, "after repair:")
	report(stdout, r)
	if n := problems(r); n > 0 {
		return errProblems{n}
	}
	return nil
}

func report(w io.Writer, r *masterpb.FsckResponse) {
	fmt.Fprintf(w, "volumes %d, blobs %d, copies checked %d, not checked %d\n", r.Volumes, r.Blobs, r.CopiesChecked, r.CopiesUnchecked)
	fmt.Fprintf(w, "missing %d, corrupt %d, orphaned %d, under-replicated volumes %d\n", r.Missing, r.Corrupt, r.Orphaned, r.UnderReplicated)
	for _, e := range r.Examples {
		fmt.Fprintf(w, "  %s\n", e)
	}
	if problems(r) == 0 {
		fmt.Fprintln(w, "clean")
	}
}
