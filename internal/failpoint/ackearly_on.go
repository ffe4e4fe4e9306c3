//go:build chaosbug_ackearly

package failpoint

// AckBeforeCommit: see ackearly_off.go.
const AckBeforeCommit = true
