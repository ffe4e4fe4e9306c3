//go:build !chaosbug_nocacheinval

package failpoint

// SkipCacheInvalidation: the leader applies record writes without telling
// the clients that cache those records.
const SkipCacheInvalidation = false
