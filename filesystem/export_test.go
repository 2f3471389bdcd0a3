package filesystem

import "time"

// LockHeld reports whether h.mu, which guards the handler's disk, is held
// by someone (shared or exclusively).
func LockHeld(h *Handler) bool {
	if h.mu.TryLock() {
		h.mu.Unlock()
		return false
	}
	return true
}

// SetAfter replaces the wait between periodic reconciles.
func SetAfter(h *Handler, after func(time.Duration) <-chan time.Time) { h.after = after }

// SetBeforeJobs makes h call hook between a section of a run and the start
// of the jobs it spawned, without the disk lock, with the link directories
// (relative to workspace_dir) of those jobs.
func SetBeforeJobs(h *Handler, hook func(mirrors []string)) {
	h.beforeJobs = func(jobs []job) {
		var rels []string
		for _, j := range jobs {
			if j.mirror != nil {
				rels = append(rels, j.mirror.rel)
			}
		}
		hook(rels)
	}
}
