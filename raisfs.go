// Package raisfs holds the names every RAIS-FS layer agrees on: the content
// hash that names a blob, volume and node identifiers, and the sentinel
// errors that cross package and wire boundaries.
//
// It imports the standard library only, so the client SDK, the master group
// and the chunk servers can all depend on it without depending on each other.
package raisfs

import (
	"encoding/hex"
	"fmt"
	"strconv"
)

// HashSize is the length in bytes of a BLAKE3-256 digest.
const HashSize = 32

// Hash is the BLAKE3-256 digest of a blob's bytes. A blob is named by its
// Hash everywhere: on disk, on the wire and in the metadata.
type Hash [HashSize]byte

// String returns the lowercase hex form, the only form accepted on the wire.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero value (no blob hashes to it in practice).
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash parses the 64-character lowercase or uppercase hex form of a
// Hash. Anything else (wrong length, non-hex bytes, path tricks such as
// "../") is rejected with an error wrapping ErrInvalidArgument.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*HashSize {
		return h, fmt.Errorf("parse hash %.80q: want %d hex digits, got %d: %w", s, 2*HashSize, len(s), ErrInvalidArgument)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("parse hash %.80q: %w", s, ErrInvalidArgument)
	}
	return h, nil
}

// VolumeID names a volume: the unit the master places and replicates. Many
// blobs share one volume, so repair moves a few hundred volumes, not
// millions of blobs.
type VolumeID uint64

// String returns the decimal form used in URLs and file names.
func (v VolumeID) String() string { return strconv.FormatUint(uint64(v), 10) }

// ParseVolumeID parses the decimal form of a VolumeID. Zero is reserved and
// rejected, as is anything that is not a plain decimal number.
func ParseVolumeID(s string) (VolumeID, error) {
	if len(s) == 0 || len(s) > 20 {
		return 0, fmt.Errorf("parse volume id %.40q: %w", s, ErrInvalidArgument)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("parse volume id %.40q: not a decimal number: %w", s, ErrInvalidArgument)
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("parse volume id %.40q: %w", s, ErrInvalidArgument)
	}
	return VolumeID(n), nil
}

// NodeID names a server (a chunk server or a master). It is chosen by the
// operator and must be stable across restarts.
type NodeID string

// ValidNodeID reports whether id is usable as a node id: 1 to 64 characters
// from [A-Za-z0-9._-], not starting with a dot. Node ids appear in file
// names and URLs, so nothing else is allowed.
func ValidNodeID(id string) bool {
	if len(id) == 0 || len(id) > 64 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
