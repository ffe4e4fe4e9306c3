package mailfront

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/crypto/bcrypt"

	"github.com/raisfs/raisfs/mailstore"
)

// Users is the user database: a file of "name:bcrypt-hash" lines (blank
// lines and lines starting with # are ignored). Reload re-reads it, so
// users can be added, changed and removed without a restart (`rais imap`
// does when the file changes and on SIGHUP).
type Users struct {
	path string // "" for StaticUsers

	mu     sync.RWMutex
	hashes map[string][]byte
	stamp  fileStamp // of the file as last read
	seen   fileStamp // of the file at the last check, read or not
}

// fileStamp tells whether a file was replaced or rewritten since it was
// read: AddUser renames a new file into place (another inode), an editor
// may rewrite it in place (another size or modification time).
type fileStamp struct {
	ino     uint64
	size    int64
	modNano int64
}

func stampOf(fi os.FileInfo) fileStamp {
	st := fileStamp{size: fi.Size(), modNano: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

// dummyHash makes a login for an unknown user cost as much as one for a
// known user, so timing does not tell which names exist.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("no such user"), bcrypt.DefaultCost)

// LoadUsers reads path.
func LoadUsers(path string) (*Users, error) {
	hashes, stamp, err := readUsers(path)
	if err != nil {
		return nil, err
	}
	return &Users{path: path, hashes: hashes, stamp: stamp, seen: stamp}, nil
}

// Reload re-reads the file once it has changed since it was last read
// and then stayed the same from one call to the next (an editor writing
// it in place is not caught half way), or at once with force. A file that
// does not parse, or that names no users (a truncated write, most
// likely), changes nothing: the users stay as they were and the error
// says why, so a half-edited file never locks everyone out.
func (u *Users) Reload(force bool) (reloaded bool, err error) {
	if u.path == "" {
		return false, nil
	}
	if !force {
		fi, err := os.Stat(u.path)
		if err != nil {
			return false, fmt.Errorf("users file: %w", err)
		}
		now := stampOf(fi)
		u.mu.Lock()
		loaded, settled := now == u.stamp, now == u.seen
		u.seen = now
		u.mu.Unlock()
		if loaded || !settled {
			return false, nil
		}
	}
	hashes, stamp, err := readUsers(u.path)
	if err != nil {
		return false, err
	}
	if len(hashes) == 0 {
		return false, fmt.Errorf("users file %s names no users: keeping the %d loaded (restart to run without users)", u.path, u.Len())
	}
	u.mu.Lock()
	u.hashes, u.stamp, u.seen = hashes, stamp, stamp
	u.mu.Unlock()
	return true, nil
}

// Len is the number of users.
func (u *Users) Len() int {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return len(u.hashes)
}

func readUsers(path string) (map[string][]byte, fileStamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("users file: %w", err)
	}
	hashes := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok || !mailstore.ValidUser(name) {
			return nil, fileStamp{}, fmt.Errorf("%s:%d: want NAME:BCRYPT-HASH", path, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fileStamp{}, fmt.Errorf("%s:%d: user %s: not a bcrypt hash: %w", path, n, name, err)
		}
		hashes[name] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fileStamp{}, fmt.Errorf("users file: %w", err)
	}
	return hashes, stampOf(fi), nil
}

// StaticUsers is a user database in memory (tests, rais dev's demo user).
func StaticUsers(passwords map[string]string) (*Users, error) {
	u := &Users{hashes: map[string][]byte{}}
	for name, pw := range passwords {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		u.hashes[name] = h
	}
	return u, nil
}

// Check reports whether password is user's.
func (u *Users) Check(user, password string) bool {
	u.mu.RLock()
	h, ok := u.hashes[user]
	u.mu.RUnlock()
	if !ok {
		bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword(h, []byte(password)) == nil
}

// Exists reports whether user exists.
func (u *Users) Exists(user string) bool {
	u.mu.RLock()
	defer u.mu.RUnlock()
	_, ok := u.hashes[user]
	return ok
}

// Lookup maps an LMTP recipient address to a user: the whole address if
// it is a user, else its local part ("demo@localhost" is demo).
func (u *Users) Lookup(addr string) (string, bool) {
	if u.Exists(addr) {
		return addr, true
	}
	local, _, ok := strings.Cut(addr, "@")
	if ok && u.Exists(local) {
		return local, true
	}
	return "", false
}

// AddUser sets name's password in the users file at path (creating it),
// replacing the file atomically.
func AddUser(path, name, password string) error {
	if !mailstore.ValidUser(name) || strings.Contains(name, ":") {
		return fmt.Errorf("user name %q: want 1-128 printable characters, no '/', ':' or spaces", name)
	}
	if password == "" {
		return errors.New("empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	var lines []string
	if b, err := os.ReadFile(path); err == nil {
		for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			if n, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && n == name {
				continue
			}
			if l != "" {
				lines = append(lines, l)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lines = append(lines, name+":"+string(h))
	tmp, err := os.CreateTemp(filepath.Dir(path), ".users-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
