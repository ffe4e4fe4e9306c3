//go:build !chaosbug_noverify

package failpoint

// SkipReadVerification: chunk servers serve (and scrub) needles without
// checking block checksums and hashes, and the client does not check what
// it reads against the object's hash.
const SkipReadVerification = false
