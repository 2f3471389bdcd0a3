package filesystem

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
)

// The handler's two locks:
//
//   - runMu serializes reconciles and workspace changes (user and permission
//     events, resyncs, the periodic reconcile). File events do not take it.
//   - mu guards the disk. A file event holds it exclusively for its whole
//     run, Magpie's answers included, and so does a workspace's removal. A
//     reconcile holds it shared, one section at a time: one directory
//     listed, planned and fixed, or one subdirectory looked at, or one
//     user's notebooks symlink. A section never waits for Magpie: when it
//     needs an answer that is not in, it changes nothing, leaves the lock
//     and runs again once the answer is in. So a file event waits for the
//     sections in progress, not for a whole reconcile.
//
// user_created runs as a file event does (mu held exclusively, no runMu):
// a new user's workspace does not wait for a reconcile either.
//
// A file event or user_created that runs between two sections of a
// reconcile may be undone by a later section that acts on what an earlier
// one saw (a directory listed before the event, emptied after it). So a
// reconcile that is not a dry run tracks the file events and new users that
// run meanwhile, and after its last section reconciles their paths and
// users again, each as its event does (with mu held exclusively, and so
// atomically, from what is on disk then).

// lockMode is how a run holds mu.
type lockMode uint8

const (
	// shared: the caller holds runMu; each section of the run holds mu
	// shared, and file events run between sections.
	shared lockMode = iota
	// exclusive: the caller holds mu exclusively (file events).
	exclusive
)

// section is one stretch of a run's disk work under mu (see locked).
type section struct {
	again bool    // it runs again after waiting for Magpie's answers
	jobs  []job   // to start once mu is released (a job may run in this goroutine)
	wait  []*perm // answers it needed that were not in yet
}

// spawn starts j once the section is over.
func (s *section) spawn(j job) { s.jobs = append(s.jobs, j) }

// incomplete reports whether the section needed answers that were not in
// yet; it then changed nothing (and started no job), and runs again.
func (s *section) incomplete() bool { return len(s.wait) > 0 }

// locked runs f as a section: under mu shared in a shared run, as is in an
// exclusive one (the caller holds mu). When f needed Magpie answers that
// were not in (every one it needed is then being asked), locked waits for
// them without mu and runs f again. The jobs f spawned start once mu is
// released.
func (r *run) locked(ctx context.Context, f func(s *section) error) error {
	again := false
	for {
		s := &section{again: again}
		if r.mode == shared {
			r.handler.mu.RLock()
		}
		err := f(s)
		if r.mode == shared {
			r.handler.mu.RUnlock()
		}
		if err == nil && s.incomplete() {
			for _, p := range s.wait {
				select {
				case <-p.done:
				case <-ctx.Done():
					return nil // the run stops: its cause is read at its end
				}
			}
			again = true
			continue
		}
		if hook := r.handler.beforeJobs; hook != nil && len(s.jobs) > 0 {
			hook(s.jobs)
		}
		for _, j := range s.jobs {
			r.spawn(ctx, j)
		}
		return err
	}
}

// readable is access.readable for a section: an answer not in yet makes s
// incomplete (and is being asked).
func (r *run) readable(ctx context.Context, s *section, user string, resID int) (bool, error) {
	read, pending, err := r.access.poll(ctx, user, resID)
	if pending != nil {
		s.wait = append(s.wait, pending)
	}
	return read, err
}

// trackFileEvents starts recording the paths of the file events, and the
// users of the user_created events, that run until untrackFileEvents; a
// shared run that changes the disk calls it before it looks at anything.
func (h *Handler) trackFileEvents() {
	h.evMu.Lock()
	defer h.evMu.Unlock()
	h.evTrack = true
	h.evPaths, h.evUsers = nil, nil
}

// untrackFileEvents stops recording and returns the paths recorded (the
// paths below another one left out) and the users, sorted.
func (h *Handler) untrackFileEvents() (paths, users []string) {
	h.evMu.Lock()
	paths, users = h.evPaths, h.evUsers
	h.evTrack, h.evPaths, h.evUsers = false, nil, nil
	h.evMu.Unlock()
	slices.Sort(paths)
	paths = slices.Compact(paths)
	var out []string
	for _, p := range paths {
		if n := len(out); n > 0 && (out[n-1] == p || strings.HasPrefix(p, out[n-1]+string(filepath.Separator))) {
			continue
		}
		out = append(out, p)
	}
	slices.Sort(users)
	return out, slices.Compact(users)
}

// fileEventRan records the path of a file event that ran, when a run
// tracks them.
func (h *Handler) fileEventRan(path string) {
	h.evMu.Lock()
	defer h.evMu.Unlock()
	if h.evTrack {
		h.evPaths = append(h.evPaths, filepath.Clean(path))
	}
}

// userCreatedRan records the user of a user_created that ran, when a run
// tracks them.
func (h *Handler) userCreatedRan(user string) {
	h.evMu.Lock()
	defer h.evMu.Unlock()
	if h.evTrack {
		h.evUsers = append(h.evUsers, user)
	}
}
