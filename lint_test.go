package raisfs_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules enforces the layering in ARCHITECTURE.md: which package
// may depend on which. A violation is a design change, and is made by
// changing this table and the document together.
func TestImportRules(t *testing.T) {
	const mod = "github.com/raisfs/raisfs"
	rules := []struct {
		pkg       string
		forbidden []string
		stdOnly   bool
	}{
		{pkg: mod, stdOnly: true},
		{pkg: mod + "/chunkserver", forbidden: []string{mod + "/master", mod + "/raftfsm", mod + "/client", "github.com/hashicorp/raft", "go.etcd.io/bbolt"}},
		{pkg: mod + "/client", forbidden: []string{mod + "/master", mod + "/raftfsm", mod + "/chunkserver", "github.com/hashicorp/raft", "go.etcd.io/bbolt"}},
		{pkg: mod + "/cmd/raisadm", forbidden: []string{mod + "/master", mod + "/raftfsm", mod + "/chunkserver", "github.com/hashicorp/raft", "go.etcd.io/bbolt"}},
		// The mail front end reaches the cluster only through the SDK.
		{pkg: mod + "/mailstore", forbidden: []string{mod + "/master", mod + "/raftfsm", mod + "/chunkserver", "github.com/hashicorp/raft", "go.etcd.io/bbolt"}},
		{pkg: mod + "/mailfront", forbidden: []string{mod + "/master", mod + "/raftfsm", mod + "/chunkserver", "github.com/hashicorp/raft", "go.etcd.io/bbolt"}},
		{pkg: mod + "/raftfsm", forbidden: []string{mod + "/master", mod + "/chunkserver", mod + "/client", "google.golang.org/grpc", "net/http"}},
	}
	for _, r := range rules {
		if _, err := os.Stat(strings.TrimPrefix(strings.TrimPrefix(r.pkg, mod), "/") + "/"); r.pkg != mod && err != nil {
			continue // package not written yet
		}
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", r.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", r.pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == r.pkg {
				continue
			}
			if r.stdOnly {
				t.Errorf("%s imports %s; it may use the standard library only", r.pkg, dep)
			}
			for _, f := range r.forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s, which the layering forbids", r.pkg, dep)
				}
			}
			if (strings.Contains(dep, "/cmd/") && dep != r.pkg) || strings.HasSuffix(dep, "/integration") || strings.Contains(dep, "/integration/") {
				t.Errorf("%s depends on %s: nothing imports cmd/ or integration/", r.pkg, dep)
			}
		}
	}
}
