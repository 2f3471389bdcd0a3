package handlers

import (
	"math"
	"math/rand/v2"
	"time"
)

// Default bounds of a Backoff with zero fields: the original's Celery retry
// policy (cowbird.md §5.4).
const (
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = 10 * time.Minute
)

// Backoff is exponential backoff with full jitter: the wait before retry n
// (0 first) is a random duration in [0, min(Max, Base·2ⁿ)]. A zero or
// negative field takes its default (DefaultBackoffBase, DefaultBackoffMax),
// so the zero value is usable.
type Backoff struct {
	// Base is the bound of the first wait.
	Base time.Duration
	// Max caps every wait.
	Max time.Duration
}

// Delay returns a random wait before retry attempt (0 first; a negative
// attempt counts as 0). It never overflows, whatever attempt is.
func (b Backoff) Delay(attempt int) time.Duration {
	limit := b.limit(attempt)
	if limit == math.MaxInt64 {
		return rand.N(limit)
	}
	return rand.N(limit + 1)
}

// limit is the upper bound of Delay(attempt): min(Max, Base·2^attempt).
func (b Backoff) limit(attempt int) time.Duration {
	b = b.withDefaults()
	attempt = max(attempt, 0)
	// Base·2^attempt ≤ Max exactly when Base ≤ Max>>attempt (rounded down),
	// and then the shift cannot overflow.
	if attempt < 63 && b.Base <= b.Max>>attempt {
		return b.Base << attempt
	}
	return b.Max
}

// withDefaults returns b with its zero or negative fields set to the defaults.
func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = DefaultBackoffBase
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	return b
}
