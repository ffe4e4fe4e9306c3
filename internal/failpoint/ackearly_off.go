//go:build !chaosbug_ackearly

package failpoint

// AckBeforeCommit: the client acknowledges a put once the replicas hold
// the bytes and commits the key in the background, ignoring the outcome.
const AckBeforeCommit = false
