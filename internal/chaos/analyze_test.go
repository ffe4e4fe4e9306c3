package chaos

import (
	"encoding/json"
	"os"
	"testing"
)

// TestAnalyzeHistory explains a saved history key by key:
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
	for _, l := range Explain(ops) {
		t.Log(l)
	}
}
