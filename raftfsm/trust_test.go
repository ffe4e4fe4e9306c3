package raftfsm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raisfs/raisfs/raftfsm/fsmpb"
)

func applyOne(t *testing.T, f *FSM, idx uint64) {
	t.Helper()
	b, err := Encode(1, &fsmpb.SetMaster{Id: "m1", ApiAddress: "a:1"})
	if err != nil {
		t.Fatal(err)
	}
	f.Apply([]Entry{{Index: idx, Data: b}})
}

func TestTrust_StateSurvivesCleanCloseAndProcessCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	f, err := openWith(path, nil, "boot-1")
	if err != nil {
		t.Fatal(err)
	}
	applyOne(t, f, 7)
	if _, err := openWith(path, nil, "boot-1"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open = %v, want in use", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Clean close: trusted even after a reboot.
	f, err = openWith(path, nil, "boot-2")
	if err != nil {
		t.Fatal(err)
	}
	if f.AppliedIndex() != 7 {
		t.Fatalf("applied after clean close and reboot = %d, want 7", f.AppliedIndex())
	}
	applyOne(t, f, 8)
	f.abandon() // the process dies; the machine does not
	f, err = openWith(path, nil, "boot-2")
	if err != nil {
		t.Fatal(err)
	}
	if f.AppliedIndex() != 8 {
		t.Fatalf("applied after a process crash = %d, want 8", f.AppliedIndex())
	}
	f.Close()
}

func TestTrust_UncleanStopAndRebootDiscardsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	f, err := openWith(path, nil, "boot-1")
	if err != nil {
		t.Fatal(err)
	}
	applyOne(t, f, 9)
	f.abandon()
	// The machine restarted: unsynced writes may be torn. Start empty so
	// the host restores the snapshot and replays the log.
	for _, boot := range []string{"boot-2", ""} {
		g, err := openWith(path, nil, boot)
		if err != nil {
			t.Fatal(err)
		}
		if g.AppliedIndex() != 0 {
			t.Fatalf("boot %q: applied after unclean reboot = %d, want 0 (discarded)", boot, g.AppliedIndex())
		}
		if _, err := os.Stat(path + ".discarded"); err != nil {
			t.Fatalf("discarded state not kept aside: %v", err)
		}
		applyOne(t, g, 1)
		g.abandon()
	}
}
