package mailfront

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Users added, changed and removed in the file are seen once the file has
// stayed the same from one Reload to the next; a file that does not parse,
// or names no users, changes nothing; an unchanged file is not read again
// unless forced.
func TestUsers_Reload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := AddUser(path, "ann", "pw-ann"); err != nil {
		t.Fatal(err)
	}
	u, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if reloaded, err := u.Reload(false); reloaded || err != nil {
		t.Fatalf("Reload of an unchanged file = %v, %v; want false, nil", reloaded, err)
	}
	if reloaded, err := u.Reload(true); !reloaded || err != nil {
		t.Fatalf("forced Reload = %v, %v; want true, nil", reloaded, err)
	}
	// Added, and ann's password changed (AddUser renames a new file in).
	if err := AddUser(path, "bob", "pw-bob"); err != nil {
		t.Fatal(err)
	}
	if err := AddUser(path, "ann", "pw-ann-2"); err != nil {
		t.Fatal(err)
	}
	if u.Exists("bob") {
		t.Fatal("bob exists before the reload")
	}
	if reloaded, err := u.Reload(false); reloaded || err != nil {
		t.Fatalf("first Reload after AddUser = %v, %v; want false (not settled yet), nil", reloaded, err)
	}
	if reloaded, err := u.Reload(false); !reloaded || err != nil {
		t.Fatalf("second Reload after AddUser = %v, %v; want true, nil", reloaded, err)
	}
	if !u.Check("bob", "pw-bob") || !u.Check("ann", "pw-ann-2") || u.Check("ann", "pw-ann") {
		t.Fatal("after the reload: want bob's password and ann's new one (not her old one)")
	}
	// A half-edited file: refused, the users stay.
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(good, []byte("carl:not-a-hash\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	u.Reload(false) // sees the change
	if reloaded, err := u.Reload(false); reloaded || err == nil {
		t.Fatalf("Reload of a malformed file = %v, %v; want false and an error", reloaded, err)
	}
	if !u.Check("bob", "pw-bob") || u.Exists("carl") || u.Len() != 2 {
		t.Fatal("a malformed file changed the users")
	}
	// Empty (an in-place write caught between truncate and write): refused.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if reloaded, err := u.Reload(true); reloaded || err == nil || u.Len() != 2 {
		t.Fatalf("Reload of an empty file = %v, %v, %d users; want false, an error, 2 users", reloaded, err, u.Len())
	}
	// Removed: only ann's line left, rewritten in place.
	var annLine []byte
	for _, l := range bytes.Split(good, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("ann:")) {
			annLine = append(l, '\n')
		}
	}
	if err := os.WriteFile(path, annLine, 0o600); err != nil {
		t.Fatal(err)
	}
	u.Reload(false) // sees the change
	if reloaded, err := u.Reload(false); !reloaded || err != nil {
		t.Fatalf("Reload after removing bob = %v, %v", reloaded, err)
	}
	if u.Exists("bob") || !u.Check("ann", "pw-ann-2") {
		t.Fatal("after removing bob: bob still exists or ann cannot log in")
	}
}
