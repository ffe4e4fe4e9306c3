//go:build chaosbug_staleread

package failpoint

// StaleReads: see staleread_off.go.
const StaleReads = true
