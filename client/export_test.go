package client

import "time"

// SetMinLinger makes c's put groups wait up to d for the callers of the
// group before (see batcher.loop), however short the rounds.
func SetMinLinger(c *Client, d time.Duration) {
	c.batch.mu.Lock()
	defer c.batch.mu.Unlock()
	c.batch.minLinger = d
}

// RecordCacheSizes reports how many keys c's record cache tracks and how
// many per-key entries it holds (changed, pending, watched).
func RecordCacheSizes(c *Client) (tracked, perKey int) {
	rc := c.records
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.requested), len(rc.changed) + len(rc.pending) + len(rc.watchedAt)
}
