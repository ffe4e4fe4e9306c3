// Package masterpb is the master group's gRPC API, shared by the client
// SDK, the chunk servers and the masters. Generated code is committed.
package masterpb

// Regenerate with `go generate ./...` (needs protoc, protoc-gen-go and
// protoc-gen-go-grpc; see the README's Development section).
//go:generate protoc -I . -I ../.. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative master.proto
