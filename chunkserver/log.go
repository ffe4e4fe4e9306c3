package chunkserver

// Structured log keys, so that every line about one volume or blob can be
// found with one query.
const (
	LogKeyVolume    = "volume"
	LogKeyHash      = "hash"
	LogKeyDir       = "dir"
	LogKeyNode      = "node"
	LogKeySubsystem = "subsystem"
)
