package integration

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runChaos runs `rais chaos` from bin and returns its exit code and output.
func runChaos(t *testing.T, bin string, seed int, duration string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	// Bounded, and killed with the test: a run left behind by a killed
	// test once kept a core busy for 40 minutes.
	d, err := time.ParseDuration(duration)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "chaos", "--seed", fmt.Sprint(seed), "--duration", duration, "--dir", t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("rais chaos --seed %d did not finish within %s:\n%s", seed, d+6*time.Minute, out.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String()
}

// The harness on the real build, on fixed seeds: every checker passes.
func TestChaos_FixedSeeds(t *testing.T) {
	rais, _ := binaries(t)
	for _, seed := range []int{1, 2, 3, 4, 5, 9} { // 1, 3, 4, 5 and 9 found bugs (ARCHITECTURE.md, "Chaos harness")
		code, out := runChaos(t, rais, seed, "25s")
		t.Logf("seed %d:\n%s", seed, out)
		if code != 0 || !strings.Contains(out, "lost 0\n") || !strings.Contains(out, "linearizable       yes") {
			t.Fatalf("rais chaos --seed %d exited %d", seed, code)
		}
	}
}

// A checker that cannot fail proves nothing: builds with deliberate bugs
// (internal/failpoint) must make the harness fail.
func TestChaos_CatchesDeliberateBugs(t *testing.T) {
	binaries(t) // skips with -short
	for _, v := range []struct {
		tag   string
		seeds []int
		want  string // a line of the report that names the failure
	}{
		{"chaosbug_ackearly", []int{1, 3}, "linearizable       no"},
		{"chaosbug_noverify", []int{2, 4}, "corrupt read of"},
		{"chaosbug_staleread", []int{1, 2}, "linearizable       no"},
		{"chaosbug_nocacheinval", []int{1, 2}, "linearizable       no"},
		{"chaosbug_ownwrite", []int{1, 2}, "linearizable       no"},
	} {
		t.Run(v.tag, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "rais")
			if out, err := exec.Command("go", "build", "-tags", v.tag, "-o", bin, "../cmd/rais").CombinedOutput(); err != nil {
				t.Fatalf("build %s: %v\n%s", v.tag, err, out)
			}
			for _, seed := range v.seeds {
				code, out := runChaos(t, bin, seed, "25s")
				if code == 1 && strings.Contains(out, "result             FAIL") && strings.Contains(out, v.want) {
					t.Logf("%s caught with seed %d:\n%s", v.tag, seed, out)
					return
				}
				t.Logf("%s not caught with seed %d (exit %d):\n%s", v.tag, seed, code, out)
			}
			t.Fatalf("the harness did not catch %s", v.tag)
		})
	}
}
