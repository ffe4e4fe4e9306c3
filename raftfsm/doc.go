// Package raftfsm is the master group's replicated state machine: which
// object key names which blob, which volume holds each blob and on which
// chunk servers, the chunk-server registry, replication classes and the
// lease-signing key. The state lives in a bbolt file, so it is bounded by
// disk, not memory.
//
// The package knows nothing of Raft or the network: master hands it
// committed entries ([]Entry) and snapshot streams. That keeps it testable
// without a cluster and lets tools open a state file offline. DESIGN.md
// explains the choices.
package raftfsm
