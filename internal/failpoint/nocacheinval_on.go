//go:build chaosbug_nocacheinval

package failpoint

// SkipCacheInvalidation: see nocacheinval_off.go.
const SkipCacheInvalidation = true
