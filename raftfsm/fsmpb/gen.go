// Package fsmpb holds the protobuf encoding of the master group's Raft log
// entries and state records. It is a durable, versioned format.
package fsmpb

// Regenerate with `go generate ./...` (needs protoc and protoc-gen-go; see
// the README's Development section).
//go:generate protoc -I . -I ../.. --go_out=. --go_opt=paths=source_relative fsm.proto
