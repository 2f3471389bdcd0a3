package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
)

const hangGuard = 10 * time.Second

// memStore is an in-memory Store.
type memStore struct {
	mu   sync.Mutex
	regs map[regKey]Registration
}

func newMemStore() *memStore { return &memStore{regs: map[regKey]Registration{}} }

func (s *memStore) SaveRegistration(_ context.Context, r Registration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.regs[regKey{r.Path, r.Handler}] = r
	return nil
}

func (s *memStore) DeleteRegistration(_ context.Context, path, handler string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.regs, regKey{path, handler})
	return nil
}

func (s *memStore) Registrations(context.Context) ([]Registration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Registration
	for _, r := range s.regs {
		out = append(out, r)
	}
	return out, nil
}

var _ Store = (*memStore)(nil)

// harness runs a monitor whose sink and resync feed channels.
type harness struct {
	t       *testing.T
	m       *Monitor
	events  chan handlers.FileEvent
	resyncs chan Registration
	cancel  context.CancelFunc
	done    chan error
	// late are the events of earlier expect calls: their tails (the Write
	// after a Create, a repeat) may still arrive.
	late []handlers.FileEvent
}

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// start registers regs, runs the monitor and waits for its start-up resyncs
// (which come once every registration is watched, for those whose directory
// exists). fail, if set, decides the sink's answer to each event.
func start(t *testing.T, opts Options, fail func(handlers.FileEvent) error, regs ...Registration) *harness {
	t.Helper()
	return startWith(t, opts, fail, nil, regs...)
}

// startWith is start with prep called on the monitor before Run.
func startWith(t *testing.T, opts Options, fail func(handlers.FileEvent) error, prep func(*Monitor), regs ...Registration) *harness {
	t.Helper()
	h := &harness{
		t:       t,
		events:  make(chan handlers.FileEvent, 4096),
		resyncs: make(chan Registration, 64),
		done:    make(chan error, 1),
	}
	opts.Log = quietLog()
	opts.Sink = func(ctx context.Context, ev handlers.FileEvent) error {
		h.events <- ev
		if fail != nil {
			return fail(ev)
		}
		return nil
	}
	resync := opts.Resync
	opts.Resync = func(ctx context.Context, r Registration) (bool, error) {
		h.resyncs <- r
		if resync != nil {
			return resync(ctx, r)
		}
		return false, nil
	}
	h.m = New(opts)
	if prep != nil {
		prep(h.m)
	}
	resyncs := 0
	for _, r := range regs {
		if err := h.m.Register(t.Context(), r.Path, r.Handler, r.Recursive); err != nil {
			t.Fatal(err)
		}
		if isDir(r.Path) {
			resyncs++
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.m.Run(ctx) }()
	t.Cleanup(h.stop)
	select {
	case <-h.m.Started():
	case <-time.After(hangGuard):
		t.Fatal("monitor did not start")
	}
	h.waitResyncs(resyncs)
	return h
}

func (h *harness) stop() {
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
		h.done <- nil // later stops return at once
	case <-time.After(hangGuard):
		h.t.Fatal("Run did not return")
	}
}

// waitResyncs returns the next n resync calls.
func (h *harness) waitResyncs(n int) []Registration {
	h.t.Helper()
	var got []Registration
	for len(got) < n {
		select {
		case r := <-h.resyncs:
			got = append(got, r)
		case <-time.After(hangGuard):
			h.t.Fatalf("waited for %d resyncs, got %v", n, got)
		}
	}
	return got
}

// expect reads events until every event of want was seen; an event in
// neither want, allowed nor an earlier call's sets fails the test. It returns
// what it read.
func (h *harness) expect(want []handlers.FileEvent, allowed ...handlers.FileEvent) []handlers.FileEvent {
	h.t.Helper()
	allowed = append(allowed, h.late...)
	h.late = append(allowed, want...)
	missing := slices.Clone(want)
	var got []handlers.FileEvent
	for len(missing) > 0 {
		select {
		case ev := <-h.events:
			got = append(got, ev)
			if !slices.Contains(want, ev) && !slices.Contains(allowed, ev) {
				h.t.Fatalf("unexpected event %+v\nread so far: %+v", ev, got)
			}
			missing = slices.DeleteFunc(missing, func(w handlers.FileEvent) bool { return w == ev })
		case <-time.After(hangGuard):
			h.t.Fatalf("missing events %+v\nread: %+v", missing, got)
		}
	}
	return got
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func rec(path, handler string) Registration {
	return Registration{Path: path, Handler: handler, Recursive: true}
}

func TestFileOperations(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"w", "c", "d"} {
		write(t, filepath.Join(root, f), "x")
	}
	h := start(t, Options{}, nil, rec(root, "fs"))
	p := func(name string) string { return filepath.Join(root, name) }

	f, err := os.OpenFile(p("w"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("more"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	h.expect([]handlers.FileEvent{fe(modified, p("w"), false, "fs")})

	if err := os.Chmod(p("c"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.expect([]handlers.FileEvent{fe(modified, p("c"), false, "fs")}, fe(modified, p("w"), false, "fs"))

	if err := os.Remove(p("d")); err != nil {
		t.Fatal(err)
	}
	h.expect([]handlers.FileEvent{fe(deleted, p("d"), false, "fs")}, fe(modified, p("d"), false, "fs"))

	write(t, p("n"), "new")
	h.expect([]handlers.FileEvent{fe(created, p("n"), false, "fs")}, fe(modified, p("n"), false, "fs"))

	mkdir(t, p("dir"))
	h.expect([]handlers.FileEvent{fe(created, p("dir"), true, "fs")})
	if st := h.m.Stats(); st.Watches != 2 || st.Events < 5 {
		t.Errorf("stats = %+v, want 2 watches and at least 5 events", st)
	}
}

func TestNestedDirectoriesCreatedQuickly(t *testing.T) {
	root := t.TempDir()
	h := start(t, Options{}, nil, rec(root, "fs"))
	p := func(name string) string { return filepath.Join(root, name) }

	mkdir(t, p("a/b/c"))
	write(t, p("a/f1"), "1")
	write(t, p("a/b/f2"), "2")
	write(t, p("a/b/c/f3"), "3")

	want := []handlers.FileEvent{
		fe(created, p("a"), true, "fs"), fe(created, p("a/b"), true, "fs"), fe(created, p("a/b/c"), true, "fs"),
		fe(created, p("a/f1"), false, "fs"), fe(created, p("a/b/f2"), false, "fs"), fe(created, p("a/b/c/f3"), false, "fs"),
	}
	allowed := []handlers.FileEvent{
		fe(modified, p("a/f1"), false, "fs"), fe(modified, p("a/b/f2"), false, "fs"), fe(modified, p("a/b/c/f3"), false, "fs"),
	}
	got := h.expect(want, allowed...)
	first := func(path string) int {
		return slices.IndexFunc(got, func(ev handlers.FileEvent) bool { return ev.Path == path })
	}
	for _, ev := range got {
		if parent := filepath.Dir(ev.Path); parent != root && first(parent) > first(ev.Path) {
			t.Errorf("%s reported before its parent: %+v", ev.Path, got)
		}
	}

	// Every new directory is watched: files landing there now are seen.
	write(t, p("a/b/c/f4"), "4")
	h.expect([]handlers.FileEvent{fe(created, p("a/b/c/f4"), false, "fs")}, append(allowed, fe(modified, p("a/b/c/f4"), false, "fs"))...)
	if st := h.m.Stats(); st.Watches != 4 {
		t.Errorf("watches = %d, want 4 (root, a, a/b, a/b/c)", st.Watches)
	}
}

func TestDebounced(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	h := start(t, Options{Debounce: 20 * time.Millisecond}, nil, rec(root, "fs"))

	mkdir(t, p("a/b"))
	write(t, p("a/b/f"), "f")
	write(t, p("a/b/f"), "again")
	got := h.expect([]handlers.FileEvent{
		fe(created, p("a"), true, "fs"), fe(created, p("a/b"), true, "fs"), fe(created, p("a/b/f"), false, "fs"),
	}, fe(modified, p("a/b/f"), false, "fs")) // when the write lands after the window
	if got[0] != fe(created, p("a"), true, "fs") {
		t.Errorf("first event %+v, want the top directory", got[0])
	}
}

func TestRenameFile(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	mkdir(t, p("d1"))
	mkdir(t, p("d2"))
	write(t, p("x"), "x")
	h := start(t, Options{}, nil, rec(root, "fs"))

	if err := os.Rename(p("x"), p("y")); err != nil {
		t.Fatal(err)
	}
	h.expect([]handlers.FileEvent{fe(deleted, p("x"), false, "fs"), fe(created, p("y"), false, "fs")})

	if err := os.Rename(p("y"), p("d1/y")); err != nil {
		t.Fatal(err)
	}
	h.expect([]handlers.FileEvent{fe(deleted, p("y"), false, "fs"), fe(created, p("d1/y"), false, "fs")})

	if err := os.Rename(p("d1/y"), p("d2/z")); err != nil {
		t.Fatal(err)
	}
	h.expect([]handlers.FileEvent{fe(deleted, p("d1/y"), false, "fs"), fe(created, p("d2/z"), false, "fs")})
}

func TestRenameDirectory(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	mkdir(t, p("d/sub"))
	write(t, p("d/sub/f"), "f")
	h := start(t, Options{}, nil, rec(root, "fs"))

	if err := os.Rename(p("d"), p("e")); err != nil {
		t.Fatal(err)
	}
	h.expect([]handlers.FileEvent{
		fe(deleted, p("d"), true, "fs"),
		fe(created, p("e"), true, "fs"), fe(created, p("e/sub"), true, "fs"), fe(created, p("e/sub/f"), false, "fs"),
	})
	h.m.mu.Lock()
	dirs := slices.Sorted(func(yield func(string) bool) {
		for d := range h.m.dirs {
			if !yield(d) {
				return
			}
		}
	})
	h.m.mu.Unlock()
	if want := []string{root, p("e"), p("e/sub")}; !slices.Equal(dirs, want) {
		t.Errorf("watched %v, want %v", dirs, want)
	}

	// The moved subtree reports its new paths, never the old ones.
	write(t, p("e/sub/g"), "g")
	h.expect([]handlers.FileEvent{fe(created, p("e/sub/g"), false, "fs")},
		fe(deleted, p("d"), true, "fs"), fe(modified, p("e/sub/g"), false, "fs"))

	if err := os.RemoveAll(p("e")); err != nil {
		t.Fatal(err)
	}
	h.expect([]handlers.FileEvent{fe(deleted, p("e"), true, "fs")},
		fe(deleted, p("e/sub"), true, "fs"), fe(deleted, p("e/sub/f"), false, "fs"), fe(deleted, p("e/sub/g"), false, "fs"),
		fe(modified, p("e/sub/f"), false, "fs"), fe(modified, p("e/sub/g"), false, "fs"))
	if st := h.m.Stats(); st.Watches != 1 {
		t.Errorf("watches after removal = %d, want 1", st.Watches)
	}
}

func TestNonRecursive(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	mkdir(t, p("old"))
	h := start(t, Options{}, nil, Registration{Path: root, Handler: "geo"})

	mkdir(t, p("sub"))
	write(t, p("old/deep"), "not reported")
	write(t, p("f"), "f")
	h.expect([]handlers.FileEvent{fe(created, p("sub"), true, "geo"), fe(created, p("f"), false, "geo")},
		fe(modified, p("f"), false, "geo"))

	// The original lost the create of a rename inside a non-recursive watch.
	if err := os.Rename(p("f"), p("g")); err != nil {
		t.Fatal(err)
	}
	write(t, p("sub/x"), "not reported")
	h.expect([]handlers.FileEvent{fe(deleted, p("f"), false, "geo"), fe(created, p("g"), false, "geo")},
		fe(modified, p("f"), false, "geo"))
	// A later event proves nothing from below the root was queued before it.
	write(t, p("marker"), "m")
	h.expect([]handlers.FileEvent{fe(created, p("marker"), false, "geo")}, fe(modified, p("marker"), false, "geo"))
	if st := h.m.Stats(); st.Watches != 1 {
		t.Errorf("watches = %d, want 1", st.Watches)
	}
}

func TestOverlappingRegistrations(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	mkdir(t, p("sub"))
	h := start(t, Options{}, nil, rec(root, "cat"), Registration{Path: p("sub"), Handler: "geo"}, rec(p("sub"), "fs"))

	write(t, p("sub/f"), "f")
	h.expect([]handlers.FileEvent{
		fe(created, p("sub/f"), false, "cat"), fe(created, p("sub/f"), false, "geo"), fe(created, p("sub/f"), false, "fs"),
	}, fe(modified, p("sub/f"), false, "cat"), fe(modified, p("sub/f"), false, "geo"), fe(modified, p("sub/f"), false, "fs"))

	mkdir(t, p("sub/deep"))
	write(t, p("sub/deep/g"), "g")
	h.expect([]handlers.FileEvent{
		fe(created, p("sub/deep"), true, "cat"), fe(created, p("sub/deep"), true, "geo"), fe(created, p("sub/deep"), true, "fs"),
		fe(created, p("sub/deep/g"), false, "cat"), fe(created, p("sub/deep/g"), false, "fs"),
	}, fe(modified, p("sub/deep/g"), false, "cat"), fe(modified, p("sub/deep/g"), false, "fs"))

	// Unregistering one of them keeps the shared watches the others need.
	if err := h.m.Unregister(t.Context(), p("sub"), "fs"); err != nil {
		t.Fatal(err)
	}
	if st := h.m.Stats(); st.Watches != 3 {
		t.Errorf("watches = %d, want 3", st.Watches)
	}
}

func TestUnregisterStopsEvents(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	mkdir(t, p("a/x"))
	mkdir(t, p("b"))
	store := newMemStore()
	h := start(t, Options{Store: store}, nil, rec(p("a"), "A"), rec(p("b"), "B"))

	if err := h.m.Unregister(t.Context(), p("a"), "A"); err != nil {
		t.Fatal(err)
	}
	write(t, p("a/f"), "not reported")
	write(t, p("a/x/f"), "not reported")
	write(t, p("b/g"), "g")
	h.expect([]handlers.FileEvent{fe(created, p("b/g"), false, "B")}, fe(modified, p("b/g"), false, "B"))

	if got, want := h.m.Registrations(), []Registration{rec(p("b"), "B")}; !slices.Equal(got, want) {
		t.Errorf("registrations = %v, want %v", got, want)
	}
	if got, _ := store.Registrations(t.Context()); !slices.Equal(got, []Registration{rec(p("b"), "B")}) {
		t.Errorf("stored = %v", got)
	}
	if st := h.m.Stats(); st.Watches != 1 {
		t.Errorf("watches = %d, want 1", st.Watches)
	}
}

func TestHandlerErrorDoesNotStopLoop(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	fail := func(ev handlers.FileEvent) error {
		if ev.Path == p("bad") {
			return errors.New("boom")
		}
		return nil
	}
	h := start(t, Options{}, fail, rec(root, "fs"))

	write(t, p("bad"), "x")
	h.expect([]handlers.FileEvent{fe(created, p("bad"), false, "fs")}, fe(modified, p("bad"), false, "fs"))
	write(t, p("good"), "x")
	h.expect([]handlers.FileEvent{fe(created, p("good"), false, "fs")},
		fe(modified, p("bad"), false, "fs"), fe(modified, p("good"), false, "fs"))
	if st := h.m.Stats(); st.HandlerErrors == 0 {
		t.Errorf("handler errors not counted: %+v", st)
	}
}

func TestOverflowResyncs(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	h := start(t, Options{}, nil, rec(a, "fs"), Registration{Path: b, Handler: "geo"})

	// A directory whose creation was lost in the overflow gets watched too.
	mkdir(t, filepath.Join(a, "lost"))
	h.expect([]handlers.FileEvent{fe(created, filepath.Join(a, "lost"), true, "fs")})
	h.m.mu.Lock()
	h.m.unwatchLocked(filepath.Join(a, "lost"))
	h.m.mu.Unlock()

	select {
	case h.m.inject <- fsnotify.ErrEventOverflow:
	case <-time.After(hangGuard):
		t.Fatal("event loop did not take the overflow")
	}
	got := h.waitResyncs(2) // they run at once, in any order
	slices.SortFunc(got, func(x, y Registration) int { return strings.Compare(x.Handler, y.Handler) })
	want := []Registration{rec(a, "fs"), {Path: b, Handler: "geo"}}
	if !slices.Equal(got, want) {
		t.Errorf("resyncs = %v, want %v", got, want)
	}
	if st := h.m.Stats(); st.Overflows != 1 || st.Watches != 3 {
		t.Errorf("stats = %+v, want 1 overflow and 3 watches", st)
	}
	write(t, filepath.Join(a, "lost", "f"), "f")
	h.expect([]handlers.FileEvent{fe(created, filepath.Join(a, "lost", "f"), false, "fs")},
		fe(modified, filepath.Join(a, "lost", "f"), false, "fs"))
}

// TestOverflowDropsCoveredEvents checks that the events read before an
// overflow and still waiting are dropped for a registration whose resync
// covers them, and kept for one whose resync does not (a hook per file).
func TestOverflowDropsCoveredEvents(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	covers := func(_ context.Context, r Registration) (bool, error) { return r.Handler == "fs", nil }
	h := start(t, Options{Debounce: time.Hour, Resync: covers}, nil, rec(a, "fs"), rec(b, "hooks"))
	// Each creation leaves at once; the write that follows it waits for
	// the (hour-long) window.
	for i := range 3 {
		write(t, filepath.Join(a, fmt.Sprint(i)), "x")
		write(t, filepath.Join(b, fmt.Sprint(i)), "x")
	}
	waitFor(t, "6 pending events", func() bool { return h.m.Stats().Pending == 6 })
	if st := h.m.Stats(); st.Events != 6 {
		t.Fatalf("stats %+v, want the 6 creations delivered", st)
	}

	select {
	case h.m.inject <- fsnotify.ErrEventOverflow:
	case <-time.After(hangGuard):
		t.Fatal("event loop did not take the overflow")
	}
	h.waitResyncs(2)
	waitFor(t, "fs's events dropped, hooks' kept", func() bool {
		st := h.m.Stats()
		return st.Dropped == 3 && st.Pending == 3
	})
	if st := h.m.Stats(); st.Events != 6 {
		t.Errorf("stats %+v, want no event delivered after the creations", st)
	}
}

// waitFor polls cond until it holds, failing after hangGuard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRestartResyncsStoredRegistrations(t *testing.T) {
	root, gone := t.TempDir(), t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	store := newMemStore()
	h := start(t, Options{Store: store}, nil, rec(root, "fs"), rec(gone, "fs"))
	h.stop()

	// Changes while stopped: a file appears, a registered directory goes.
	write(t, p("while-stopped"), "x")
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}

	seen := make(chan []string, 1)
	reconcile := func(_ context.Context, r Registration) (bool, error) {
		entries, err := os.ReadDir(r.Path)
		if err != nil {
			return false, err
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		seen <- names
		return true, nil
	}
	ticks := make(chan time.Time)
	h2 := start(t, Options{Store: store, Resync: reconcile, RetryTicks: ticks}, nil)
	if got := h2.waitResyncs(1); !slices.Equal(got, []Registration{rec(root, "fs")}) {
		t.Errorf("resynced %v, want only %s", got, root)
	}
	select {
	case names := <-seen:
		if !slices.Equal(names, []string{"while-stopped"}) {
			t.Errorf("reconcile saw %v", names)
		}
	case <-time.After(hangGuard):
		t.Fatal("reconcile did not run")
	}
	// The gone directory stays registered, degraded, until it is back.
	if got, _ := store.Registrations(t.Context()); len(got) != 2 {
		t.Errorf("stored = %v, want both registrations kept", got)
	}
	if d := h2.m.Degraded(); len(d) != 1 || d[0].Registration != rec(gone, "fs") || !errors.Is(d[0].Err, fs.ErrNotExist) {
		t.Errorf("degraded = %+v, want %s missing", d, gone)
	}
	write(t, p("after"), "x")
	h2.expect([]handlers.FileEvent{fe(created, p("after"), false, "fs")}, fe(modified, p("after"), false, "fs"))

	mkdir(t, gone)
	write(t, filepath.Join(gone, "back"), "x")
	tick(t, ticks)
	if got := h2.waitResyncs(1); !slices.Equal(got, []Registration{rec(gone, "fs")}) {
		t.Errorf("resynced %v, want %s", got, gone)
	}
	if names := <-seen; !slices.Equal(names, []string{"back"}) {
		t.Errorf("reconcile saw %v", names)
	}
	if st := h2.m.Stats(); st.Degraded != 0 {
		t.Errorf("stats %+v, want nothing degraded", st)
	}
	write(t, filepath.Join(gone, "new"), "x")
	h2.expect([]handlers.FileEvent{fe(created, filepath.Join(gone, "new"), false, "fs")}, fe(modified, filepath.Join(gone, "new"), false, "fs"))
}

// tick sends one retry tick.
func tick(t *testing.T, ticks chan<- time.Time) {
	t.Helper()
	select {
	case ticks <- time.Now():
	case <-time.After(hangGuard):
		t.Fatal("event loop did not take the retry tick")
	}
}

// The attribute event of a change announced by Changing is not reported;
// a later change of the same path is, and other paths' are.
func TestChanging(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	write(t, p("own"), "x")
	write(t, p("other"), "x")
	h := start(t, Options{}, nil, rec(root, "fs"))

	h.m.Changing(p("own"), 0)
	for _, f := range []string{"own", "other"} {
		if err := os.Chmod(p(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h.expect([]handlers.FileEvent{fe(modified, p("other"), false, "fs")})
	// Someone else's change of the same path is reported.
	if err := os.Chmod(p("own"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.expect([]handlers.FileEvent{fe(modified, p("own"), false, "fs")})
	if err := os.Remove(p("own")); err != nil {
		t.Fatal(err)
	}
	h.expect([]handlers.FileEvent{fe(deleted, p("own"), false, "fs")})
}

// Changing holds however late the event is read (no time window): an
// event read before the change is an earlier one's and is reported, the
// first one read after it is the caller's, and the next ones are reported.
func TestChangingReadLate(t *testing.T) {
	root := t.TempDir()
	f := filepath.Join(root, "f")
	write(t, f, "x")
	m := New(Options{})
	if err := m.Register(t.Context(), root, "fs", true); err != nil {
		t.Fatal(err)
	}
	q := newCoalescer(0)
	read := func(op fsnotify.Op) int {
		m.handle(fsnotify.Event{Name: f, Op: op}, q)
		return len(q.due(time.Now()))
	}
	m.Changing(f, 0)
	if n := read(fsnotify.Chmod); n != 1 {
		t.Errorf("an earlier change read before the caller's: %d events, want 1", n)
	}
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	if n := read(fsnotify.Write); n != 1 {
		t.Errorf("a write: %d events, want 1 (only attribute events can be the caller's)", n)
	}
	if n := read(fsnotify.Chmod); n != 0 {
		t.Errorf("the caller's change: %d events, want 0", n)
	}
	if err := os.Chmod(f, 0o640); err != nil {
		t.Fatal(err)
	}
	if n := read(fsnotify.Chmod); n != 1 {
		t.Errorf("a later change: %d events, want 1", n)
	}
}

// A change announced but not made (the chmod failed) does not hide
// someone else's change to other others bits.
func TestChangingNotMade(t *testing.T) {
	root := t.TempDir()
	f := filepath.Join(root, "f")
	write(t, f, "x")
	if err := os.Chmod(f, 0o640); err != nil {
		t.Fatal(err)
	}
	m := New(Options{})
	if err := m.Register(t.Context(), root, "fs", true); err != nil {
		t.Fatal(err)
	}
	q := newCoalescer(0)
	m.Changing(f, 0o4) // r-- announced, never set
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	m.handle(fsnotify.Event{Name: f, Op: fsnotify.Chmod}, q)
	if n := len(q.due(time.Now())); n != 1 {
		t.Errorf("someone else's chmod to others ---: %d events, want 1", n)
	}
}

func TestWatchLimitError(t *testing.T) {
	err := watchLimitError("/data/wps_outputs/x", syscall.ENOSPC, 8192, 8190)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("%v does not wrap ENOSPC", err)
	}
	for _, want := range []string{"/data/wps_outputs/x", "max_user_watches=8192", "8190 used", "sysctl fs.inotify.max_user_watches=32768"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

func TestRegister(t *testing.T) {
	dir := t.TempDir()
	store := newMemStore()
	m := New(Options{Store: store, Log: quietLog()})
	ctx := t.Context()

	write(t, filepath.Join(dir, "file"), "x")
	if err := m.Register(ctx, filepath.Join(dir, "file"), "fs", true); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file path: %v", err)
	}
	if err := m.Register(ctx, dir, "", true); err == nil || !strings.Contains(err.Error(), "handler") {
		t.Errorf("empty handler: %v", err)
	}
	if got, _ := store.Registrations(ctx); len(got) != 0 {
		t.Errorf("failed registrations were stored: %v", got)
	}

	// Recursive wins over a later non-recursive request.
	if err := m.Register(ctx, dir, "fs", true); err != nil {
		t.Fatal(err)
	}
	if err := m.Register(ctx, dir+"/", "fs", false); err != nil {
		t.Fatal(err)
	}
	want := []Registration{rec(dir, "fs")}
	if got := m.Registrations(); !slices.Equal(got, want) {
		t.Errorf("registrations = %v, want %v", got, want)
	}
	if got, _ := store.Registrations(ctx); !slices.Equal(got, want) {
		t.Errorf("stored = %v, want %v", got, want)
	}

	// A directory that does not exist yet is registered: Run watches it
	// once it does.
	if err := m.Register(ctx, filepath.Join(dir, "missing"), "fs", true); err != nil {
		t.Errorf("missing path: %v", err)
	}
	if got, _ := store.Registrations(ctx); len(got) != 2 {
		t.Errorf("stored = %v, want the missing directory's registration too", got)
	}
}
