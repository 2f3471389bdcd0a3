package magpie

import (
	"strings"
	"sync"
	"sync/atomic"
)

// cache memoizes read answers for the life of one operation (an event or a
// resync). Any write through the caching client empties it, except for the
// service types, which never change.
type cache struct {
	mu     sync.Mutex
	values map[string]any
	hits   atomic.Int64
}

// WithCache returns a copy of c, sharing its session and counters, that
// memoizes reads (service types and lists, trees, resource paths, users and
// their ids, permission listings) until one of its own writes. Use one per
// event or resync and drop it afterwards: it does not see changes made
// elsewhere. Cached results are shared: treat them as read-only.
func (c *Client) WithCache() *Client {
	return &Client{s: c.s, cache: &cache{values: map[string]any{}}}
}

// CacheHits counts the reads this client answered from its cache.
func (c *Client) CacheHits() int64 {
	if c.cache == nil {
		return 0
	}
	return c.cache.hits.Load()
}

// cached returns the memoized value for key, or fetches and memoizes it.
func cached[T any](c *Client, key string, fetch func() (T, error)) (T, error) {
	if c.cache == nil {
		return fetch()
	}
	c.cache.mu.Lock()
	v, ok := c.cache.values[key]
	c.cache.mu.Unlock()
	if ok {
		c.cache.hits.Add(1)
		return v.(T), nil
	}
	val, err := fetch()
	if err != nil {
		return val, err
	}
	c.cache.mu.Lock()
	c.cache.values[key] = val
	c.cache.mu.Unlock()
	return val, nil
}

// invalidate forgets everything but the service types after a write.
func (c *Client) invalidate() {
	if c.cache == nil {
		return
	}
	c.cache.mu.Lock()
	defer c.cache.mu.Unlock()
	for k := range c.cache.values {
		if !strings.HasPrefix(k, keyServiceTypes) {
			delete(c.cache.values, k)
		}
	}
}

const keyServiceTypes = "service-types"
