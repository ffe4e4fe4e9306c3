// Package txnpb holds the protobuf encoding of a records transaction,
// shared by the client API and the Raft log entries.
package txnpb

// Regenerate with `go generate ./...` (needs protoc and protoc-gen-go; see
// the README's Development section).
//go:generate protoc -I ../.. --go_out=../.. --go_opt=paths=source_relative api/txnpb/txn.proto
