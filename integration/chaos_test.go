package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raisfs/raisfs/client"
	"github.com/raisfs/raisfs/internal/chaos"
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

// A leader cut off by the network (not killed: its connections stay open
// and nothing answers on them) must not hold the clients' calls for their
// whole attempt timeout (5 s): the connections' unacknowledged-data timeout
// (internal/netx) fails them within about 2 s and the client goes to the
// new leader. Needs root and iproute2 (network namespaces).
func TestChaos_PartitionedLeaderIsLeftQuickly(t *testing.T) {
	rais, _ := binaries(t)
	if os.Geteuid() != 0 {
		t.Skip("network partitions need root")
	}
	cl, err := chaos.StartCluster(chaos.ClusterConfig{Bin: rais, Dir: t.TempDir(), ChunkServers: 3, VolumeSize: 64 << 20, Partitions: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	if !cl.CanPartition() {
		t.Skip("no network namespaces here")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.WaitHealthy(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(ctx, client.Config{Masters: cl.Masters, NoPutBatching: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	put := func(i int) error {
		_, err := c.Put(ctx, fmt.Sprintf("p/%d", i), strings.NewReader(fmt.Sprintf("value %d", i)), nil)
		return err
	}
	for i := 0; i < 20; i++ { // warm: the client knows the leader
		if err := put(i); err != nil {
			t.Fatal(err)
		}
	}
	leader := cl.Leader(ctx)
	if leader == "" {
		t.Fatal("no leader")
	}
	// Writers keep calling through the cut; the first put called after it
	// and acknowledged says when writes resumed.
	cut := time.Now()
	if err := cl.Partition(leader); err != nil {
		t.Fatal(err)
	}
	defer cl.Unpartition(leader)
	resumed := make(chan time.Duration, 4)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				called := time.Now()
				if put(1000*(w+1)+i) == nil {
					resumed <- called.Sub(cut) + time.Since(called)
					return
				}
			}
		})
	}
	select {
	case d := <-resumed:
		t.Logf("writes resumed %s after the leader %s was cut off", d.Round(time.Millisecond), leader)
		if d > 4*time.Second {
			t.Fatalf("writes resumed %s after the leader was cut off, want well under the 5 s attempt timeout", d.Round(time.Millisecond))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("writes did not resume within 30 s of the leader being cut off")
	}
	cancel()
	wg.Wait()
}
