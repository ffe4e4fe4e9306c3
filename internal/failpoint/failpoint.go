// Package failpoint holds deliberate bugs that the chaos harness must
// catch (a checker that cannot fail proves nothing). Each is a constant,
// false in every normal build, true only when the binary is built with
// its tag; code behind a false constant is compiled out.
//
//	go build -tags chaosbug_noverify ./cmd/rais   // reads skip verification
//	go build -tags chaosbug_ackearly ./cmd/rais   // puts acknowledged before their commit
//	go build -tags chaosbug_staleread ./cmd/rais  // look-ups answered by any master from its own state
//	go build -tags chaosbug_nocacheinval ./cmd/rais  // record writes do not invalidate clients' caches
//	go build -tags chaosbug_ownwrite ./cmd/rais      // clients cache their own writes even after others' writes
//
// internal/chaos's tests build each variant and check the harness fails it.
package failpoint
