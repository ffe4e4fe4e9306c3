package chaos

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Leftovers: a run that is killed outright (SIGKILL, a test binary's
// timeout) cannot unmount its small disk or delete its network
// namespaces; its processes die with it (Pdeathsig). Each run records what
// it set up in a ledger named after its pid, and the next run removes what
// dead runs left behind.

func ledgerPath(pid int) string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("rais-chaos-%d.ledger", pid))
}

// record appends one line ("mount PATH" or "netns NAME" or "link NAME").
func record(kind, what string) {
	f, err := os.OpenFile(ledgerPath(os.Getpid()), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", kind, what)
}

// forgetLedger removes this run's ledger once it cleaned up itself.
func forgetLedger() { os.Remove(ledgerPath(os.Getpid())) }

// cleanLeftovers undoes what runs that are no longer alive set up.
func cleanLeftovers() {
	ledgers, _ := filepath.Glob(filepath.Join(os.TempDir(), "rais-chaos-*.ledger"))
	for _, l := range ledgers {
		pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(l), "rais-chaos-"), ".ledger"))
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // not a ledger, or its run is alive
		}
		f, err := os.Open(l)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			kind, what, _ := strings.Cut(sc.Text(), " ")
			switch kind {
			case "mount":
				exec.Command("umount", what).Run()
			case "netns":
				exec.Command("ip", "netns", "del", what).Run()
			case "link":
				exec.Command("ip", "link", "del", what).Run()
			}
		}
		f.Close()
		os.Remove(l)
	}
}
