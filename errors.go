package raisfs

import "errors"

// Sentinel errors. Each is defined here once; other packages wrap them with
// fmt.Errorf("...: %w", err) or alias them, and callers test with errors.Is.
var (
	// ErrNotFound: the blob, volume or key does not exist (or was deleted).
	ErrNotFound = errors.New("not found")
	// ErrInvalidArgument: the request is malformed (bad hash, bad id, bad range).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrHashMismatch: the bytes received do not hash to the name they were sent under.
	ErrHashMismatch = errors.New("content hash mismatch")
	// ErrSizeMismatch: the body is shorter or longer than declared (a torn upload).
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrTooLarge: the body exceeds the configured maximum blob size.
	ErrTooLarge = errors.New("blob too large")
	// ErrCorrupt: stored bytes failed verification. Never retry the same
	// replica; read another one and report this one for repair.
	ErrCorrupt = errors.New("corrupt data")
	// ErrNoSpace: the server or data dir is past its high-water mark (or the
	// disk is full). Nothing was written; try another replica set.
	ErrNoSpace = errors.New("no space")
	// ErrSealed: the volume is sealed and takes no new blobs.
	ErrSealed = errors.New("volume sealed")
	// ErrExists: the thing being created already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict: the key is already bound to other content. Messages are
	// immutable: a retry with the same key and the same content succeeds.
	ErrConflict = errors.New("conflict")
	// ErrCompareFailed: a transaction's compare did not hold (a record
	// changed since it was read); nothing was written. Read again and retry.
	ErrCompareFailed = errors.New("compare failed")
	// ErrNoPlacement: no set of servers satisfies the replication class
	// (too few servers, data centers or free space). Nothing was written.
	ErrNoPlacement = errors.New("no placement")
	// ErrLeaseExpired: the write lease ran out before the put committed;
	// the bytes written under it are garbage. Start the put again.
	ErrLeaseExpired = errors.New("lease expired")
	// ErrNotLeader: this master is not the leader and could not forward.
	// The request did not commit; retry against the leader.
	ErrNotLeader = errors.New("not leader")
	// ErrOutcomeUnknown: the request may or may not have committed (leader
	// lost mid-commit, deadline hit while waiting). Commands are
	// idempotent: retrying is safe.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrUnavailable: the component cannot serve right now (failed disk,
	// shutting down); another replica may.
	ErrUnavailable = errors.New("unavailable")
	// ErrPermissionDenied: the write was not authorised.
	ErrPermissionDenied = errors.New("permission denied")
)
