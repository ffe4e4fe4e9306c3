//go:build !chaosbug_staleread

package failpoint

// StaleReads: a master answers look-ups from its own state, leader or not,
// without confirming leadership or catching up first.
const StaleReads = false
