package filesystem

import "time"

// LockHeld reports whether h.mu, which serializes the handler's disk
// changes, is held by someone.
func LockHeld(h *Handler) bool {
	if h.mu.TryLock() {
		h.mu.Unlock()
		return false
	}
	return true
}

// SetAfter replaces the wait between periodic reconciles.
func SetAfter(h *Handler, after func(time.Duration) <-chan time.Time) { h.after = after }
