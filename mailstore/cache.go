package mailstore

import (
	"container/list"
	"sync"
)

// bodyCache keeps recently stored or read message bodies in memory, least
// recently used out first, up to a byte budget. It is safe because a
// message's object key is never bound to other bytes (keys are random and
// never reused; see newObjKey), and the bytes it holds were verified
// against their hash when read, or are the bytes this store uploaded. A
// front end then serves the mail it just delivered, and mail that is read
// again (a client's second FETCH, a search after a fetch), without asking
// the chunk servers.
//
// Entries are shared, read-only slices: nothing may modify a body after
// it is added or returned.
type bodyCache struct {
	mu    sync.Mutex
	max   int64 // byte budget; entries larger than max/16 are not kept
	bytes int64
	lru   *list.List // of *cacheEntry, most recent first
	byKey map[string]*list.Element

	hits, misses int64
}

type cacheEntry struct {
	key  string
	body []byte
}

func newBodyCache(max int64) *bodyCache {
	if max <= 0 {
		return nil
	}
	return &bodyCache{max: max, lru: list.New(), byKey: map[string]*list.Element{}}
}

// get returns the body stored under key, if cached. A nil cache has
// nothing.
func (c *bodyCache) get(key string) ([]byte, bool) { return c.lookup(key, true) }

// peek is get without counting a hit or a miss, or refreshing the entry
// (a look for a body's header block).
func (c *bodyCache) peek(key string) ([]byte, bool) { return c.lookup(key, false) }

func (c *bodyCache) lookup(key string, use bool) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[key]
	switch {
	case !ok && use:
		c.misses++
	case ok && use:
		c.hits++
		c.lru.MoveToFront(e)
	}
	if !ok {
		return nil, false
	}
	return e.Value.(*cacheEntry).body, true
}

// add keeps body under key, evicting the least recently used entries to
// stay within the budget.
func (c *bodyCache) add(key string, body []byte) {
	if c == nil || int64(len(body)) > c.max/16 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.lru.MoveToFront(e)
		return
	}
	c.byKey[key] = c.lru.PushFront(&cacheEntry{key: key, body: body})
	c.bytes += int64(len(body))
	for c.bytes > c.max {
		e := c.lru.Back()
		ent := e.Value.(*cacheEntry)
		c.lru.Remove(e)
		delete(c.byKey, ent.key)
		c.bytes -= int64(len(ent.body))
	}
}

// CacheStats are the body cache's counters.
type CacheStats struct {
	Hits, Misses int64
	Bytes        int64
	Entries      int
}

func (c *bodyCache) stats() CacheStats {
	if c == nil {
		return CacheStats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Hits: c.hits, Misses: c.misses, Bytes: c.bytes, Entries: c.lru.Len()}
}
