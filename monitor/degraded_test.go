package monitor

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/cowbird-go/cowbird/handlers"
)

// limit makes inotify_add_watch fail with ENOSPC, as when
// fs.inotify.max_user_watches is reached, for the directories at or below
// the paths it is set for.
type limit struct {
	mu    sync.Mutex
	full  []string
	calls map[string]int // add attempts per directory
}

func (l *limit) set(paths ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.full = paths
}

func (l *limit) attempts(dir string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls[dir]
}

func (l *limit) add(w *fsnotify.Watcher, dir string) error {
	l.mu.Lock()
	if l.calls == nil {
		l.calls = map[string]int{}
	}
	l.calls[dir]++
	full := slices.ContainsFunc(l.full, func(p string) bool { return dir == p || under(dir, p) })
	l.mu.Unlock()
	if full {
		return syscall.ENOSPC
	}
	return w.Add(dir)
}

func (l *limit) prep(m *Monitor) { m.addWatch = l.add }

func TestRegisterMissingDirectoryWhileRunning(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	mkdir(t, p("a"))
	ticks := make(chan time.Time)
	h := start(t, Options{RetryTicks: ticks}, nil, rec(p("a"), "fs"))

	if err := h.m.Register(t.Context(), p("b"), "cat", true); err != nil {
		t.Fatalf("Register of a missing directory: %v", err)
	}
	st := h.m.Stats()
	if st.Degraded != 1 || st.WatchErrors == 0 {
		t.Errorf("stats %+v, want 1 degraded and a watch error", st)
	}
	if d := h.m.Degraded(); len(d) != 1 || d[0].Registration != rec(p("b"), "cat") || !errors.Is(d[0].Err, fs.ErrNotExist) {
		t.Errorf("degraded = %+v", d)
	}
	// The other registration is not affected.
	write(t, p("a/f"), "x")
	h.expect([]handlers.FileEvent{fe(created, p("a/f"), false, "fs")}, fe(modified, p("a/f"), false, "fs"))

	tick(t, ticks)
	waitFor(t, "a failed retry", func() bool { d := h.m.Degraded(); return len(d) == 1 && d[0].Failures == 2 })

	mkdir(t, p("b/sub"))
	tick(t, ticks)
	if got := h.waitResyncs(1); !slices.Equal(got, []Registration{rec(p("b"), "cat")}) {
		t.Errorf("resynced %v, want b", got)
	}
	if st := h.m.Stats(); st.Degraded != 0 || st.Watches != 3 {
		t.Errorf("stats %+v, want nothing degraded and a, b, b/sub watched", st)
	}
	write(t, p("b/sub/g"), "x")
	h.expect([]handlers.FileEvent{fe(created, p("b/sub/g"), false, "cat")}, fe(modified, p("b/sub/g"), false, "cat"))
}

// TestWatchLimitDegradesOnlyThatRegistration registers two trees, one of
// which hits the watch limit halfway: the other one's events flow, retries
// under the limit cost one attempt, and once the limit is lifted the tree is
// watched whole and resynced.
func TestWatchLimitDegradesOnlyThatRegistration(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	mkdir(t, p("a"))
	mkdir(t, p("b/b1"))
	mkdir(t, p("b/b2"))
	var l limit
	l.set(p("b/b2"))
	ticks := make(chan time.Time)
	h := startWith(t, Options{RetryTicks: ticks}, nil, l.prep, rec(p("a"), "fs"), rec(p("b"), "geo"))

	st := h.m.Stats()
	if st.Degraded != 1 || st.WatchLimitErrors == 0 {
		t.Fatalf("stats %+v, want b degraded by the watch limit", st)
	}
	if d := h.m.Degraded(); len(d) != 1 || d[0].Path != p("b") || !errors.Is(d[0].Err, syscall.ENOSPC) {
		t.Fatalf("degraded = %+v", d)
	}
	write(t, p("a/f"), "x")
	h.expect([]handlers.FileEvent{fe(created, p("a/f"), false, "fs")}, fe(modified, p("a/f"), false, "fs"))
	// What could be watched of b is.
	write(t, p("b/b1/f"), "x")
	h.expect([]handlers.FileEvent{fe(created, p("b/b1/f"), false, "geo")}, fe(modified, p("b/b1/f"), false, "geo"))

	// Still at the limit: the retry tries the directory that failed, only.
	before := l.attempts(p("b/b2"))
	tick(t, ticks)
	waitFor(t, "a failed retry", func() bool { d := h.m.Degraded(); return len(d) == 1 && d[0].Failures == 2 })
	if n := l.attempts(p("b/b2")) - before; n != 1 {
		t.Errorf("%d attempts on b/b2 in a retry, want 1", n)
	}

	l.set()
	tick(t, ticks)
	if got := h.waitResyncs(1); !slices.Equal(got, []Registration{rec(p("b"), "geo")}) {
		t.Errorf("resynced %v, want b", got)
	}
	if st := h.m.Stats(); st.Degraded != 0 || st.Watches != 4 {
		t.Errorf("stats %+v, want nothing degraded, 4 watches", st)
	}
	write(t, p("b/b2/f"), "x")
	h.expect([]handlers.FileEvent{fe(created, p("b/b2/f"), false, "geo")}, fe(modified, p("b/b2/f"), false, "geo"))
}

// TestNewDirectoryOverWatchLimit checks that a new directory that cannot be
// watched degrades the registrations that want it, and that the retry
// watches it and resyncs them.
func TestNewDirectoryOverWatchLimit(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	var l limit
	l.set(p("new"))
	ticks := make(chan time.Time)
	h := startWith(t, Options{RetryTicks: ticks}, nil, l.prep, rec(root, "fs"))

	mkdir(t, p("new"))
	h.expect([]handlers.FileEvent{fe(created, p("new"), true, "fs")})
	waitFor(t, "the registration degraded", func() bool { return h.m.Stats().Degraded == 1 })

	l.set()
	tick(t, ticks)
	h.waitResyncs(1)
	write(t, p("new/f"), "x")
	h.expect([]handlers.FileEvent{fe(created, p("new/f"), false, "fs")}, fe(modified, p("new/f"), false, "fs"))
	if st := h.m.Stats(); st.Degraded != 0 || st.Watches != 2 {
		t.Errorf("stats %+v, want nothing degraded, 2 watches", st)
	}
}

// TestNoInotifyInstance starts with the inotify instance limit reached: Run
// goes on without watches, and once the instance can be created it watches
// and resyncs every registration.
func TestNoInotifyInstance(t *testing.T) {
	root := t.TempDir()
	var mu sync.Mutex
	refuse := true
	prep := func(m *Monitor) {
		m.newWatcher = func() (*fsnotify.Watcher, error) {
			mu.Lock()
			defer mu.Unlock()
			if refuse {
				return nil, syscall.EMFILE
			}
			return fsnotify.NewWatcher()
		}
	}
	ticks := make(chan time.Time)
	h := startWith(t, Options{RetryTicks: ticks}, nil, prep, rec(root, "fs"))
	select {
	case <-h.m.Started():
	default:
		t.Fatal("not started")
	}
	if st := h.m.Stats(); st.Degraded != 1 || st.Watches != 0 || st.WatchErrors == 0 {
		t.Errorf("stats %+v, want the registration degraded, no watch", st)
	}
	if d := h.m.Degraded(); len(d) != 1 || !errors.Is(d[0].Err, syscall.EMFILE) {
		t.Errorf("degraded = %+v, want the instance error", d)
	}

	tick(t, ticks) // still refused
	waitFor(t, "a failed retry", func() bool { return h.m.Stats().WatchErrors >= 2 })

	mu.Lock()
	refuse = false
	mu.Unlock()
	tick(t, ticks)
	h.waitResyncs(1)
	if st := h.m.Stats(); st.Degraded != 0 || st.Watches != 1 {
		t.Errorf("stats %+v, want watched", st)
	}
	write(t, filepath.Join(root, "f"), "x")
	h.expect([]handlers.FileEvent{fe(created, filepath.Join(root, "f"), false, "fs")}, fe(modified, filepath.Join(root, "f"), false, "fs"))
}

// TestRegisteredDirectoryRemovedThenRecreated checks that a registered
// directory that is removed is watched again, and resynced, once it is
// back.
func TestRegisteredDirectoryRemovedThenRecreated(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ws")
	mkdir(t, dir)
	ticks := make(chan time.Time)
	h := start(t, Options{RetryTicks: ticks}, nil, rec(dir, "cat"))

	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the registration degraded", func() bool { return h.m.Stats().Degraded == 1 })
	mkdir(t, dir)
	tick(t, ticks)
	h.waitResyncs(1)
	write(t, filepath.Join(dir, "f"), "x")
	h.expect([]handlers.FileEvent{fe(created, filepath.Join(dir, "f"), false, "cat")},
		fe(deleted, dir, true, "cat"), fe(modified, filepath.Join(dir, "f"), false, "cat"))
	if st := h.m.Stats(); st.Degraded != 0 {
		t.Errorf("stats %+v, want nothing degraded", st)
	}
}

// TestUnregisterDegraded checks that unregistering a degraded registration
// ends its retries.
func TestUnregisterDegraded(t *testing.T) {
	root := t.TempDir()
	ticks := make(chan time.Time)
	h := start(t, Options{RetryTicks: ticks}, nil, rec(filepath.Join(root, "missing"), "cat"))
	if st := h.m.Stats(); st.Degraded != 1 {
		t.Fatalf("stats %+v, want 1 degraded", st)
	}
	if err := h.m.Unregister(t.Context(), filepath.Join(root, "missing"), "cat"); err != nil {
		t.Fatal(err)
	}
	if st := h.m.Stats(); st.Degraded != 0 {
		t.Errorf("stats %+v, want nothing degraded", st)
	}
	tick(t, ticks) // taken once the start-up resyncs are done
	mkdir(t, filepath.Join(root, "missing"))
	tick(t, ticks)
	tick(t, ticks) // the previous one was handled once this one is taken
	select {
	case r := <-h.resyncs:
		t.Errorf("resync of unregistered %v", r)
	default:
	}
}
