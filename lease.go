package raisfs

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// LeaseHeader is the HTTP header that carries a write lease to a chunk server.
const LeaseHeader = "X-Rais-Lease"

// Lease operations: what a token allows.
const (
	LeaseOpPut    = "put"
	LeaseOpDelete = "delete"
	LeaseOpAdmin  = "admin" // create, seal, compact, import a volume
)

// Lease is a master-signed permission to perform one operation on one
// volume (and, for put and delete, one blob) until Expiry. Any master can
// sign and check one: the key is in the replicated state, so a new leader
// honours the leases the old one granted. Expiry is compared with the
// checker's clock; masters and chunk servers are assumed to agree within a
// small fraction of the lease lifetime (NTP), and leases last a minute.
type Lease struct {
	Op     string
	Volume VolumeID
	Hash   Hash // zero for LeaseOpAdmin
	Expiry time.Time
}

func (l Lease) message() string {
	return fmt.Sprintf("rais-lease-v1|%s|%d|%s|%d", l.Op, l.Volume, l.Hash, l.Expiry.UnixNano())
}

// Sign returns the token for l under key: "EXPIRY.SIGNATURE".
func (l Lease) Sign(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(l.message()))
	return strconv.FormatInt(l.Expiry.UnixNano(), 10) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckLease checks that token is a lease for op on (vol, h) signed with
// key, and returns its expiry without comparing it with any clock (the
// master compares it with the time a put commits). Errors wrap
// ErrPermissionDenied.
func CheckLease(key []byte, token, op string, vol VolumeID, h Hash) (time.Time, error) {
	exp, _, ok := strings.Cut(token, ".")
	if !ok || len(key) == 0 {
		return time.Time{}, fmt.Errorf("lease for %s %s: missing or malformed token: %w", op, vol, ErrPermissionDenied)
	}
	ns, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("lease for %s %s: malformed expiry: %w", op, vol, ErrPermissionDenied)
	}
	expiry := time.Unix(0, ns)
	want := Lease{Op: op, Volume: vol, Hash: h, Expiry: expiry}.Sign(key)
	if !hmac.Equal([]byte(want), []byte(token)) {
		return time.Time{}, fmt.Errorf("lease for %s %s: bad signature: %w", op, vol, ErrPermissionDenied)
	}
	return expiry, nil
}

// VerifyLease checks that token grants op on (vol, h) under key at time
// now. Errors wrap ErrPermissionDenied (bad or missing token) or
// ErrLeaseExpired.
func VerifyLease(key []byte, token, op string, vol VolumeID, h Hash, now time.Time) error {
	expiry, err := CheckLease(key, token, op, vol, h)
	if err != nil {
		return err
	}
	if now.After(expiry) {
		return fmt.Errorf("lease for %s %s expired %s ago: %w", op, vol, now.Sub(expiry).Round(time.Millisecond), ErrLeaseExpired)
	}
	return nil
}
