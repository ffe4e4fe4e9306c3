//go:build !chaosbug_ownwrite

package failpoint

// CacheOwnWritesBlindly: a client caches the value its own transaction
// wrote even when another write reached the record between sending and
// applying (which may have applied after it).
const CacheOwnWritesBlindly = false
