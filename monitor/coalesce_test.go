package monitor

import (
	"slices"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/handlers"
)

func fe(op handlers.FileOp, path string, isDir bool, handler string) handlers.FileEvent {
	return handlers.FileEvent{Op: op, Path: path, IsDir: isDir, Handler: handler}
}

const (
	created  = handlers.FileCreated
	modified = handlers.FileModified
	deleted  = handlers.FileDeleted
)

func TestCoalescer(t *testing.T) {
	tests := []struct {
		name string
		in   []handlers.FileEvent
		want []handlers.FileEvent
	}{
		{"modifications collapse",
			[]handlers.FileEvent{fe(modified, "/r/f", false, "h"), fe(modified, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(modified, "/r/f", false, "h")}},
		{"create absorbs modify",
			[]handlers.FileEvent{fe(created, "/r/f", false, "h"), fe(modified, "/r/f", false, "h"), fe(modified, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(created, "/r/f", false, "h")}},
		{"create then delete is nothing",
			[]handlers.FileEvent{fe(created, "/r/f", false, "h"), fe(modified, "/r/f", false, "h"), fe(deleted, "/r/f", false, "h")},
			nil},
		{"delete replaces modify",
			[]handlers.FileEvent{fe(modified, "/r/f", false, "h"), fe(deleted, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(deleted, "/r/f", false, "h")}},
		{"delete then create keeps both",
			[]handlers.FileEvent{fe(deleted, "/r/d", true, "h"), fe(created, "/r/d", false, "h"), fe(modified, "/r/d", false, "h")},
			[]handlers.FileEvent{fe(deleted, "/r/d", true, "h"), fe(created, "/r/d", false, "h")}},
		{"parents stay before children",
			[]handlers.FileEvent{fe(created, "/r/d", true, "h"), fe(created, "/r/d/f", false, "h"), fe(modified, "/r/d", true, "h"), fe(created, "/r/d/e", true, "h")},
			[]handlers.FileEvent{fe(created, "/r/d", true, "h"), fe(created, "/r/d/f", false, "h"), fe(created, "/r/d/e", true, "h")}},
		{"deleted directory drops pending creations below it",
			[]handlers.FileEvent{fe(created, "/r/d/f", false, "h"), fe(deleted, "/r/d/x", false, "h"), fe(modified, "/r/dd", false, "h"), fe(deleted, "/r/d", true, "h")},
			[]handlers.FileEvent{fe(deleted, "/r/d/x", false, "h"), fe(modified, "/r/dd", false, "h"), fe(deleted, "/r/d", true, "h")}},
		{"handlers are kept apart",
			[]handlers.FileEvent{fe(created, "/r/f", false, "a"), fe(created, "/r/f", false, "b"), fe(deleted, "/r/f", false, "a")},
			[]handlers.FileEvent{fe(created, "/r/f", false, "b")}},
		{"a path seen again after collapsing goes last",
			[]handlers.FileEvent{fe(created, "/r/f", false, "h"), fe(created, "/r/g", false, "h"), fe(deleted, "/r/f", false, "h"), fe(created, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(created, "/r/g", false, "h"), fe(created, "/r/f", false, "h")}},
	}
	t0 := time.Unix(1000, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCoalescer(time.Second)
			for _, ev := range tt.in {
				c.add(ev, t0)
			}
			if got := c.due(t0.Add(time.Second)); !slices.Equal(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
			if _, ok := c.next(); ok {
				t.Error("events left after the window")
			}
		})
	}
}

func TestCoalescerWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newCoalescer(time.Second)
	c.add(fe(created, "/r/a", false, "h"), t0)
	c.add(fe(created, "/r/b", false, "h"), t0.Add(500*time.Millisecond))
	c.add(fe(modified, "/r/a", false, "h"), t0.Add(900*time.Millisecond))

	if next, ok := c.next(); !ok || !next.Equal(t0.Add(time.Second)) {
		t.Fatalf("next = %v, %v; want %v", next, ok, t0.Add(time.Second))
	}
	if got := c.due(t0.Add(999 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("due before the window ended: %v", got)
	}
	if got := c.due(t0.Add(time.Second)); !slices.Equal(got, []handlers.FileEvent{fe(created, "/r/a", false, "h")}) {
		t.Fatalf("first window: %v", got)
	}
	// A change after delivery opens a new window for that path.
	c.add(fe(modified, "/r/a", false, "h"), t0.Add(1100*time.Millisecond))
	want := []handlers.FileEvent{fe(created, "/r/b", false, "h"), fe(modified, "/r/a", false, "h")}
	if got := c.due(t0.Add(3 * time.Second)); !slices.Equal(got, want) {
		t.Fatalf("second window: %v, want %v", got, want)
	}
}

func TestCoalescerNoWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newCoalescer(0)
	c.add(fe(created, "/r/a", false, "h"), t0)
	if got := c.due(t0); !slices.Equal(got, []handlers.FileEvent{fe(created, "/r/a", false, "h")}) {
		t.Fatalf("got %v", got)
	}
}
