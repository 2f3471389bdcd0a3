package monitor

import "time"

// minSweep is the number of entries below which a recent map is not swept.
const minSweep = 64

// recent maps paths to what was recorded about them lately: put sweeps the
// entries older than ttl once the map has doubled since the last sweep, so
// that it costs O(1) amortized and the map stays within twice its live size
// (plus minSweep).
type recent[V any] struct {
	ttl     time.Duration
	entries map[string]recentEntry[V]
	swept   int // len(entries) after the last sweep
}

type recentEntry[V any] struct {
	v  V
	at time.Time
}

func newRecent[V any](ttl time.Duration) *recent[V] {
	return &recent[V]{ttl: ttl, entries: map[string]recentEntry[V]{}}
}

// put records v for path at now.
func (r *recent[V]) put(path string, v V, now time.Time) {
	r.entries[path] = recentEntry[V]{v, now}
	if len(r.entries) >= 2*r.swept+minSweep {
		for p, e := range r.entries {
			if now.Sub(e.at) > r.ttl {
				delete(r.entries, p)
			}
		}
		r.swept = len(r.entries)
	}
}

// get returns what was recorded for path, and when.
func (r *recent[V]) get(path string) (v V, at time.Time, ok bool) {
	e, ok := r.entries[path]
	return e.v, e.at, ok
}

func (r *recent[V]) delete(path string) { delete(r.entries, path) }

func (r *recent[V]) clear() { clear(r.entries) }
