//go:build chaosbug_ownwrite

package failpoint

// CacheOwnWritesBlindly: see ownwrite_off.go.
const CacheOwnWritesBlindly = true
