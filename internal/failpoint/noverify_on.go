//go:build chaosbug_noverify

package failpoint

// SkipReadVerification: see noverify_off.go.
const SkipReadVerification = true
