// Package chunkserver is the RAIS-FS storage node: it stores blobs named by
// their BLAKE3-256 hash in append-only volume files, and serves them over a
// streaming HTTP data API.
//
// A Store holds the volumes of one server, spread over one data directory
// per disk. A Volume is a data file of needles (header, body, per-64 KiB
// block CRCs) plus an index file that checkpoints hash → offset so that a
// restart reads the index and scans only the tail. Writes are made durable
// by a per-volume group committer: concurrent writers share one fdatasync,
// and a write returns only after it. Reads verify every byte before it
// leaves the server. Server wraps a Store in the HTTP API.
//
// Usage:
//
//	store, err := chunkserver.Open(chunkserver.Config{Dirs: []string{"/data/disk1", "/data/disk2"}})
//	...
//	defer store.Close()
//	srv := &http.Server{Handler: chunkserver.NewServer("cs1", store, nil, logger)}
//	srv.Serve(listener)
//
// DESIGN.md beside this file explains the on-disk format, the durability
// protocol and the choices behind them.
package chunkserver
