package chaos

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The report names the faults around the slowest failover: those that
// began up to failoverContext before the kill and until writes resumed.
func TestReport_SlowestFailoverNamesTheFaultsAroundIt(t *testing.T) {
	faults := []Fault{
		{At: 1 * time.Second, Kind: "pause", Target: "cs1"},
		{At: 12 * time.Second, Kind: "partition", Target: "m2"},
		{At: 20 * time.Second, Kind: "kill-leader", Target: "m1"},
		{At: 23 * time.Second, Kind: "heal", Target: "m2"},
		{At: 30 * time.Second, Kind: "pause", Target: "cs2"},
	}
	got := faultsBetween(faults, 20*time.Second-failoverContext, 25*time.Second)
	if len(got) != 3 || got[0].Kind != "partition" || got[2].Kind != "heal" {
		t.Fatalf("faults around a kill at 20 s with writes back at 25 s: %+v", got)
	}
	rep := &Report{Seed: 1, LeaderKills: 1, WriteUnavailable: 5 * time.Second, SlowestFailover: got, Failed: map[string]int{}}
	var out bytes.Buffer
	PrintReport(&out, rep, "")
	if !strings.Contains(out.String(), "around it        12s partition m2; 20s kill-leader m1; 23s heal m2") {
		t.Fatalf("report:\n%s", out.String())
	}
}
