package chaos

import (
	"encoding/json"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestAnalyzeHistory checks a saved history key by key and prints the
// operations of the keys that are not linearizable:
//
//	RAIS_CHAOS_HISTORY=DIR/history.json go test ./internal/chaos -run TestAnalyzeHistory -v
func TestAnalyzeHistory(t *testing.T) {
	path := os.Getenv("RAIS_CHAOS_HISTORY")
	if path == "" {
		t.Skip("set RAIS_CHAOS_HISTORY to a history.json left by a failed run")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ops []Op
	if err := json.Unmarshal(b, &ops); err != nil {
		t.Fatal(err)
	}
	byKey := map[string][]Op{}
	for _, op := range ops {
		byKey[op.Key] = append(byKey[op.Key], op)
	}
	m := model.ToModel()
	for k, kops := range byKey {
		if porcupine.CheckOperations(m, operations(kops)) {
			continue
		}
		sort.Slice(kops, func(i, j int) bool { return kops[i].Call < kops[j].Call })
		// The shortest prefix that is not linearizable ends at the
		// operation that cannot be placed; show what led to it.
		lo, hi := 1, len(kops)
		for lo < hi {
			mid := (lo + hi) / 2
			if porcupine.CheckOperations(m, operations(kops[:mid])) {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		t.Errorf("key %s is not linearizable; the first %d of its %d operations are not; the last of them:", k, lo, len(kops))
		for _, op := range kops[max(0, lo-25):lo] {
			t.Logf("  c%d %-6s v=%-6d %-9s [%v, %v] %s", op.Client, op.Kind, op.Value, op.Out, time.Duration(op.Call), time.Duration(op.Return), op.Err)
		}
	}
}
