package handlers

import (
	"math"
	"testing"
	"time"
)

func TestBackoffLimit(t *testing.T) {
	const forever = time.Duration(math.MaxInt64)
	for _, tc := range []struct {
		name    string
		b       Backoff
		attempt int
		want    time.Duration
	}{
		{"zero value first", Backoff{}, 0, time.Second},
		{"zero value doubles", Backoff{}, 3, 8 * time.Second},
		{"zero value below cap", Backoff{}, 9, 512 * time.Second},
		{"zero value capped", Backoff{}, 10, 10 * time.Minute},
		{"negative fields take defaults", Backoff{Base: -1, Max: -1}, 1, 2 * time.Second},
		{"negative attempt is the first", Backoff{Base: time.Second, Max: time.Minute}, -5, time.Second},
		{"exactly the cap", Backoff{Base: time.Second, Max: 4 * time.Second}, 2, 4 * time.Second},
		{"just over the cap", Backoff{Base: time.Second, Max: 4*time.Second - 1}, 2, 4*time.Second - 1},
		{"base over max", Backoff{Base: time.Hour, Max: time.Minute}, 0, time.Minute},
		{"shift would overflow", Backoff{Base: 3 * time.Hour, Max: forever}, 40, forever},
		{"shift would wrap to a small value", Backoff{Base: 3, Max: time.Hour}, 62, time.Hour},
		{"shift by 63", Backoff{Base: 1, Max: forever}, 63, forever},
		{"largest shift that fits", Backoff{Base: 1, Max: forever}, 62, 1 << 62},
		{"huge attempt", Backoff{}, math.MaxInt, 10 * time.Minute},
		{"huge attempt, huge max", Backoff{Base: time.Nanosecond, Max: forever}, math.MaxInt, forever},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.b.limit(tc.attempt); got != tc.want {
				t.Fatalf("%+v.limit(%d) = %s, want %s", tc.b, tc.attempt, got, tc.want)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	for _, tc := range []struct {
		name    string
		b       Backoff
		attempt int
		limit   time.Duration
	}{
		{"zero value", Backoff{}, 0, time.Second},
		{"zero value capped", Backoff{}, 1000, 10 * time.Minute},
		{"huge attempt", Backoff{Base: time.Millisecond, Max: time.Hour}, math.MaxInt, time.Hour},
		{"largest max", Backoff{Base: time.Second, Max: math.MaxInt64}, math.MaxInt, math.MaxInt64},
		{"tiny", Backoff{Base: 1, Max: 1}, 5, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Full jitter: every draw is within [0, limit], and 400 draws
			// all falling in one half of it would be a broken generator
			// (probability 2⁻³⁹⁹).
			low, high := false, false
			for range 400 {
				d := tc.b.Delay(tc.attempt)
				if d < 0 || d > tc.limit {
					t.Fatalf("%+v.Delay(%d) = %s, want within [0, %s]", tc.b, tc.attempt, d, tc.limit)
				}
				low = low || d <= tc.limit/2
				high = high || d > tc.limit/2
			}
			if !low || !high {
				t.Errorf("%+v.Delay(%d) not spread over [0, %s]: some below half %v, some above %v", tc.b, tc.attempt, tc.limit, low, high)
			}
		})
	}
}
