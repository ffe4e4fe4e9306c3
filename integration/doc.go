// Package integration holds end-to-end tests that run RAIS-FS as real OS
// processes: `rais dev` starts masters and chunk servers as children, and
// the tests drive them with raisadm and the client SDK, killing processes
// along the way. They are skipped with -short.
package integration
