package raftfsm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// The state file is written without fsync (bbolt NoSync): the Raft log is
// the durable record, and the state is derived from it. That halves the
// fsyncs of every commit (see DESIGN.md, "Why the state file is not
// fsynced"). The price is that after the machine (not just the process)
// stops uncleanly, the file may be torn, and must be rebuilt from the
// newest Raft snapshot and the log.
//
// Three small files beside the state decide whether it can be trusted:
//
//	state.db.lock   flock held while the state is open (one master per dir)
//	state.db.clean  written (and synced) by a clean Close, removed (and the
//	                removal synced) before the first write of a session
//	state.db.boot   the kernel's boot id of the session that has it open
//
// At open the file is trusted if the last session closed cleanly, or if
// it ran in this same boot of the kernel: a process crash loses nothing
// that was written to the page cache. Otherwise it is moved aside to
// state.db.discarded and the master restores the newest snapshot.

const bootIDPath = "/proc/sys/kernel/random/boot_id"

// readBootID returns the kernel's boot id, or "" if it cannot be read (then
// no unclean stop is trusted).
func readBootID() string {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

func lockState(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock state: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock state %s: in use by another process: %w", path, err)
	}
	return f, nil
}

// trusted reports whether the state file at path may be used as it is.
func trusted(path, bootID string) (bool, string) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return true, "no state yet"
	}
	if _, err := os.Stat(path + ".clean"); err == nil {
		return true, "closed cleanly"
	}
	last, err := os.ReadFile(path + ".boot")
	if err == nil && bootID != "" && string(bytes.TrimSpace(last)) == bootID {
		return true, "the process stopped, the machine did not"
	}
	return false, "the last session did not close cleanly and the machine has restarted since"
}

// beginSession records, durably, that the state is open and may hold
// unsynced writes from now on.
func beginSession(path, bootID string) error {
	if err := os.Remove(path + ".clean"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := writeSynced(path+".boot", []byte(bootID+"\n")); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// endSession records, durably, that the state file is complete on disk.
func endSession(path string) error {
	if err := writeSynced(path+".clean", nil); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
