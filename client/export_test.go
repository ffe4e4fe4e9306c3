package client

import "time"

// SetMinLinger makes c's put groups wait up to d for the callers of the
// group before (see batcher.loop), however short the rounds.
func SetMinLinger(c *Client, d time.Duration) {
	c.batch.mu.Lock()
	defer c.batch.mu.Unlock()
	c.batch.minLinger = d
}
