package monitor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/cowbird-go/cowbird/handlers"
)

// TestFirstEventNotDelayed uses an hour-long window: the first event of a
// path still arrives, and only what follows it waits.
func TestFirstEventNotDelayed(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	h := start(t, Options{Debounce: time.Hour}, nil, rec(root, "fs"))

	write(t, p("f"), "x") // a creation, then a write
	h.expect([]handlers.FileEvent{fe(created, p("f"), false, "fs")})
	waitFor(t, "the write pending", func() bool { return h.m.Stats().Pending == 1 })
	write(t, p("f"), "more") // merged into the pending modification
	mkdir(t, p("d"))
	h.expect([]handlers.FileEvent{fe(created, p("d"), true, "fs")})
	write(t, p("d/g"), "x")
	h.expect([]handlers.FileEvent{fe(created, p("d/g"), false, "fs")})
	waitFor(t, "two writes pending", func() bool { return h.m.Stats().Pending == 2 })
	if st := h.m.Stats(); st.Events != 3 {
		t.Errorf("stats %+v, want 3 events delivered", st)
	}
}

// drain reads the events of the sink until it has seen marker, then until
// nothing waits in the coalescing window; it returns them all.
func (h *harness) drain(marker handlers.FileEvent) []handlers.FileEvent {
	h.t.Helper()
	var got []handlers.FileEvent
	for !slices.Contains(got, marker) {
		select {
		case ev := <-h.events:
			got = append(got, ev)
		case <-time.After(hangGuard):
			h.t.Fatalf("no %v; read %v", marker, got)
		}
	}
	// Events before the marker's were queued in the window before it was
	// read: once none waits, all of them are in h.events.
	waitFor(h.t, "an empty window", func() bool { return h.m.Stats().Pending == 0 })
	for {
		select {
		case ev := <-h.events:
			got = append(got, ev)
		default:
			return got
		}
	}
}

// TestEventsForOnePathInOrder creates, writes and removes one file many
// times in a row, faster than the window, and checks that its events arrive
// in an order that happened: never modified while absent, never created
// while present, and present in the end. (Deleted twice in a row is
// possible: a creation is not reported when the file is gone by the time
// its event is read, its deletion always is.)
func TestEventsForOnePathInOrder(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	h := start(t, Options{Debounce: 20 * time.Millisecond}, nil, rec(root, "fs"))

	for i := range 200 {
		write(t, p("f"), fmt.Sprint(i))
		if i%3 != 2 {
			write(t, p("f"), "again")
		}
		if i < 199 {
			if err := os.Remove(p("f")); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(t, p("marker"), "")
	var seq []handlers.FileOp
	for _, ev := range h.drain(fe(created, p("marker"), false, "fs")) {
		if ev.Path == p("f") {
			seq = append(seq, ev.Op)
		}
	}
	exists := false // before the first event
	for i, op := range seq {
		switch {
		case op == created && exists && i > 0, op == modified && !exists && i > 0:
			t.Fatalf("event %d (%s) impossible after %v", i, op, seq[:i])
		}
		exists = op != deleted
	}
	if !exists {
		t.Errorf("events end with the file absent: %v", seq)
	}
	if st := h.m.Stats(); st.Overflows != 0 {
		t.Logf("stats %+v", st)
	}
}

// A file created and removed before the monitor read its Create is not
// reported created; the writes read after that Create are not reported
// either, even when the path exists again (a newer file, whose own Create
// follows): a path's events never report a modification after its
// deletion.
func TestVanishedCreateHidesItsWrites(t *testing.T) {
	root := t.TempDir()
	f := filepath.Join(root, "f")
	m := New(Options{})
	if err := m.Register(context.Background(), root, "fs", true); err != nil {
		t.Fatal(err)
	}
	q := newCoalescer(0)
	var got []handlers.FileOp
	step := func(op fsnotify.Op) {
		m.handle(fsnotify.Event{Name: f, Op: op}, q)
		for _, ev := range q.due(time.Now()) {
			got = append(got, ev.Op)
		}
	}
	step(fsnotify.Remove) // an earlier file f, removed
	step(fsnotify.Create) // the next one: gone already when read
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	step(fsnotify.Write) // the vanished file's write, read while a newer f exists
	step(fsnotify.Remove)
	step(fsnotify.Create) // the newer f
	step(fsnotify.Write)
	// Without a window the vanished file's removal is reported too.
	want := []handlers.FileOp{handlers.FileDeleted, handlers.FileDeleted, handlers.FileCreated, handlers.FileModified}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// TestBurstLosesNothing creates directories and files as fast as possible
// under the daemon's window and checks that every one of them is reported
// created (or, after an overflow, that the tree was resynced).
func TestBurstLosesNothing(t *testing.T) {
	root := t.TempDir()
	h := start(t, Options{Debounce: DefaultDebounce}, nil, rec(root, "fs"))
	const dirs, files = 20, 100
	want := map[string]bool{}
	for d := range dirs {
		dir := filepath.Join(root, fmt.Sprint("job", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		want[dir] = true
		for f := range files {
			name := filepath.Join(dir, fmt.Sprint("f", f))
			if err := os.WriteFile(name, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			want[name] = true
		}
	}
	marker := filepath.Join(root, "marker")
	write(t, marker, "")
	seen := map[string]int{}
	for _, ev := range h.drain(fe(created, marker, false, "fs")) {
		if ev.Op != created {
			t.Errorf("unexpected %+v", ev)
		}
		seen[ev.Path]++
	}
	if st := h.m.Stats(); st.Overflows > 0 {
		// The events lost in the overflow are covered by the resync.
		select {
		case <-h.resyncs:
		case <-time.After(hangGuard):
			t.Fatal("overflow without resync")
		}
		t.Skipf("inotify queue overflowed (stats %+v): the resync covers the burst", st)
	}
	for p := range want {
		if seen[p] == 0 {
			t.Errorf("%s never reported", p)
		}
	}
	if len(seen) != len(want)+1 {
		t.Errorf("%d paths reported, want %d", len(seen), len(want)+1)
	}
}

// A file created in a new directory between its watch and its scan is
// reported by both: the scan's report is delivered, its own Create is not
// (same inode), while a file replaced meanwhile (another inode: a rename
// over it) is reported again.
func TestScannedFileNotReportedTwice(t *testing.T) {
	root := t.TempDir()
	d := filepath.Join(root, "job")
	f, g := filepath.Join(d, "f"), filepath.Join(d, "g")
	m := New(Options{})
	if err := m.Register(t.Context(), root, "fs", true); err != nil {
		t.Fatal(err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m.watcher = w
	q := newCoalescer(0)
	var got []string
	step := func(name string, op fsnotify.Op) {
		m.handle(fsnotify.Event{Name: name, Op: op}, q)
		for _, ev := range q.due(time.Now()) {
			got = append(got, string(ev.Op)+" "+filepath.Base(ev.Path))
		}
	}
	mkdir(t, d)
	write(t, f, "x")
	write(t, g, "x")
	step(d, fsnotify.Create) // watched, then scanned: f and g reported
	other := filepath.Join(root, "other")
	write(t, other, "y")
	if err := os.Rename(other, g); err != nil { // a new g before g's Create is read
		t.Fatal(err)
	}
	step(f, fsnotify.Create) // f's own Create: the file the scan reported
	step(g, fsnotify.Create) // g's: another file now
	want := []string{"created job", "created f", "created g", "created g"}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}
