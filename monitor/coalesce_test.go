package monitor

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/handlers"
)

func fe(op handlers.FileOp, path string, isDir bool, handler string) handlers.FileEvent {
	return handlers.FileEvent{Op: op, Path: path, IsDir: isDir, Handler: handler}
}

// fileEvents strips the seen times.
func fileEvents(evs []seenEvent) []handlers.FileEvent {
	var out []handlers.FileEvent
	for _, ev := range evs {
		out = append(out, ev.FileEvent)
	}
	return out
}

const (
	created  = handlers.FileCreated
	modified = handlers.FileModified
	deleted  = handlers.FileDeleted
)

// TestCoalescer feeds events seen at the same instant, takes what is ready
// at once, then what is left once the window has ended.
func TestCoalescer(t *testing.T) {
	tests := []struct {
		name        string
		in          []handlers.FileEvent
		now, window []handlers.FileEvent
	}{
		{"the first event leaves at once, modifications collapse",
			[]handlers.FileEvent{fe(modified, "/r/f", false, "h"), fe(modified, "/r/f", false, "h"), fe(modified, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(modified, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(modified, "/r/f", false, "h")}},
		{"a file being written: created at once, modified once after",
			[]handlers.FileEvent{fe(created, "/r/f", false, "h"), fe(modified, "/r/f", false, "h"), fe(modified, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(created, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(modified, "/r/f", false, "h")}},
		{"created then deleted: the deletion follows",
			[]handlers.FileEvent{fe(created, "/r/f", false, "h"), fe(modified, "/r/f", false, "h"), fe(deleted, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(created, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(deleted, "/r/f", false, "h")}},
		{"re-created and gone again within the window is nothing more",
			[]handlers.FileEvent{fe(deleted, "/r/f", false, "h"), fe(created, "/r/f", false, "h"), fe(modified, "/r/f", false, "h"), fe(deleted, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(deleted, "/r/f", false, "h")},
			nil},
		{"created over an existing file then deleted: deleted",
			// A rename over f reports a creation without a deletion.
			[]handlers.FileEvent{fe(created, "/r/f", false, "h"), fe(created, "/r/f", false, "h"), fe(deleted, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(created, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(deleted, "/r/f", false, "h")}},
		{"deleted, re-created, deleted: one deletion",
			[]handlers.FileEvent{fe(modified, "/r/f", false, "h"), fe(deleted, "/r/f", false, "h"), fe(created, "/r/f", false, "h"), fe(deleted, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(modified, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(deleted, "/r/f", false, "h")}},
		{"delete then create keeps both, in order",
			[]handlers.FileEvent{fe(deleted, "/r/d", true, "h"), fe(created, "/r/d", false, "h"), fe(modified, "/r/d", false, "h")},
			[]handlers.FileEvent{fe(deleted, "/r/d", true, "h")},
			[]handlers.FileEvent{fe(created, "/r/d", false, "h")}},
		{"modify, delete, create",
			[]handlers.FileEvent{fe(modified, "/r/f", false, "h"), fe(deleted, "/r/f", false, "h"), fe(created, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(modified, "/r/f", false, "h")},
			[]handlers.FileEvent{fe(deleted, "/r/f", false, "h"), fe(created, "/r/f", false, "h")}},
		{"children of a directory wait behind its pending creation",
			// /r/d is busy (deleted just now): its re-creation waits, and so
			// do the entries created in it.
			[]handlers.FileEvent{fe(deleted, "/r/d", true, "h"), fe(created, "/r/d", true, "h"), fe(created, "/r/d/f", false, "h"), fe(created, "/r/d/e", true, "h"), fe(created, "/r/d/e/g", false, "h"), fe(created, "/r/x", false, "h")},
			[]handlers.FileEvent{fe(deleted, "/r/d", true, "h"), fe(created, "/r/x", false, "h")},
			[]handlers.FileEvent{fe(created, "/r/d", true, "h"), fe(created, "/r/d/f", false, "h"), fe(created, "/r/d/e", true, "h"), fe(created, "/r/d/e/g", false, "h")}},
		{"a deleted directory drops what was pending below it but deletions, and waits behind them",
			[]handlers.FileEvent{fe(created, "/r/d/f", false, "h"), fe(modified, "/r/d/f", false, "h"), fe(modified, "/r/d/x", false, "h"), fe(deleted, "/r/d/x", false, "h"), fe(deleted, "/r/d", true, "h")},
			[]handlers.FileEvent{fe(created, "/r/d/f", false, "h"), fe(modified, "/r/d/x", false, "h")},
			[]handlers.FileEvent{fe(deleted, "/r/d/x", false, "h"), fe(deleted, "/r/d", true, "h")}},
		{"handlers are kept apart",
			[]handlers.FileEvent{fe(created, "/r/f", false, "a"), fe(created, "/r/f", false, "b"), fe(deleted, "/r/f", false, "a")},
			[]handlers.FileEvent{fe(created, "/r/f", false, "a"), fe(created, "/r/f", false, "b")},
			[]handlers.FileEvent{fe(deleted, "/r/f", false, "a")}},
	}
	t0 := time.Unix(1000, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCoalescer(time.Second)
			for _, ev := range tt.in {
				c.add(ev, t0)
			}
			if got := fileEvents(c.due(t0)); !slices.Equal(got, tt.now) {
				t.Errorf("at once: got %v\nwant %v", got, tt.now)
			}
			if got := fileEvents(c.due(t0.Add(time.Second))); !slices.Equal(got, tt.window) {
				t.Errorf("after the window: got %v\nwant %v", got, tt.window)
			}
			if _, ok := c.next(); ok {
				t.Error("events left after the window")
			}
		})
	}
}

func TestCoalescerWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	c := newCoalescer(time.Second)
	expect := func(now time.Time, want ...handlers.FileEvent) {
		t.Helper()
		if got := fileEvents(c.due(now)); !slices.Equal(got, want) {
			t.Fatalf("at %s: got %v, want %v", now.Sub(t0), got, want)
		}
	}

	c.add(fe(created, "/r/a", false, "h"), at(0))
	if next, ok := c.next(); !ok || !next.IsZero() {
		t.Fatalf("next = %v, %v; want a ready event", next, ok)
	}
	expect(at(0), fe(created, "/r/a", false, "h"))
	c.add(fe(modified, "/r/a", false, "h"), at(500)) // busy: waits until 1500
	c.add(fe(created, "/r/b", false, "h"), at(600))  // idle: at once
	expect(at(600), fe(created, "/r/b", false, "h"))
	c.add(fe(modified, "/r/a", false, "h"), at(900))
	if next, ok := c.next(); !ok || !next.Equal(at(1500)) {
		t.Fatalf("next = %v, %v; want %v", next, ok, at(1500))
	}
	expect(at(1499))
	expect(at(1500), fe(modified, "/r/a", false, "h"))

	// Delivered at 1500, /r/a is busy again until 2500.
	c.add(fe(modified, "/r/a", false, "h"), at(2000))
	expect(at(2000))
	expect(at(3000), fe(modified, "/r/a", false, "h"))
	// A window ended with nothing pending: idle again, the next event
	// leaves at once.
	expect(at(4000))
	c.add(fe(modified, "/r/a", false, "h"), at(4000))
	expect(at(4000), fe(modified, "/r/a", false, "h"))
	if len(c.busy) != 1 || len(c.busyQ) != 1 {
		t.Errorf("busy marks %v / %v, want only /r/a's last", c.busy, c.busyQ)
	}
}

func TestCoalescerNoWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newCoalescer(0)
	in := []handlers.FileEvent{fe(created, "/r/a", false, "h"), fe(modified, "/r/a", false, "h"), fe(deleted, "/r/a", false, "h")}
	for _, ev := range in {
		c.add(ev, t0)
	}
	if got := fileEvents(c.due(t0)); !slices.Equal(got, in) {
		t.Fatalf("got %v, want %v", got, in)
	}
}

// TestCoalescerKeepsOrderAndLosesNothing feeds random event sequences on a
// few paths at random times and checks, per path, that what is delivered
// keeps the order of what happened (each delivered event stands for an
// event at or after the one the previous delivery stood for), that the last
// delivery tells whether the path exists in the end, and that when it does
// exist the last delivery was made when or after the last event happened.
func TestCoalescerKeepsOrderAndLosesNothing(t *testing.T) {
	paths := []string{"/r/a", "/r/b", "/r/d/x"}
	ops := []handlers.FileOp{created, modified, modified, deleted}
	for seed := range uint64(500) {
		rng := rand.New(rand.NewPCG(seed, 7))
		window := time.Duration(rng.IntN(3)) * 50 * time.Millisecond
		c := newCoalescer(window)
		type seen struct {
			ev handlers.FileEvent
			at time.Time
		}
		in := map[string][]seen{}
		out := map[string][]seen{}
		now := time.Unix(1000, 0)
		take := func() {
			for _, ev := range c.due(now) {
				out[ev.Path] = append(out[ev.Path], seen{ev.FileEvent, now})
			}
		}
		for range 60 {
			now = now.Add(time.Duration(rng.IntN(80)) * time.Millisecond)
			take()
			p := paths[rng.IntN(len(paths))]
			ev := fe(ops[rng.IntN(len(ops))], p, false, "h")
			in[p] = append(in[p], seen{ev, now})
			c.add(ev, now)
			if rng.IntN(3) == 0 {
				take()
			}
		}
		now = now.Add(time.Hour)
		take()

		for _, p := range paths {
			evs, got := in[p], out[p]
			if len(evs) == 0 {
				continue
			}
			where := fmt.Sprintf("seed %d, window %s, %s:\nin  %v\nout %v", seed, window, p, evs, got)
			// Match each delivery to the earliest event at or after the
			// previous match with the same operation (a created event may
			// also stand for a created then modified file).
			i := 0
			for _, d := range got {
				for i < len(evs) && (evs[i].ev.Op != d.ev.Op || evs[i].at.After(d.at)) {
					i++
				}
				if i == len(evs) {
					t.Fatalf("delivery %v out of order or never happened; %s", d.ev, where)
				}
				i++
			}
			// The last delivery tells the final state; when the path
			// exists, it was made at or after the last event (no write is
			// left unreported). A deleted path may have its last creation
			// and deletion cancelled out.
			last := evs[len(evs)-1]
			if len(got) == 0 {
				t.Fatalf("nothing delivered; %s", where)
			}
			exists, told := last.ev.Op != deleted, got[len(got)-1].ev.Op != deleted
			if exists != told {
				t.Fatalf("in the end the path exists=%t, the last delivery says %t; %s", exists, told, where)
			}
			if exists && got[len(got)-1].at.Before(last.at) {
				t.Fatalf("the last event (%v) is not covered; %s", last.ev, where)
			}
		}
	}
}

// TestCoalescerBusyMarksExpire checks that the busy marks of a burst of
// paths are forgotten once their window ends.
func TestCoalescerBusyMarksExpire(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newCoalescer(time.Second)
	for i := range 1000 {
		c.add(fe(created, filepath.Join("/r", fmt.Sprint(i)), false, "h"), t0)
	}
	if got := c.due(t0); len(got) != 1000 {
		t.Fatalf("%d events at once, want 1000", len(got))
	}
	c.due(t0.Add(time.Second))
	if len(c.busy) != 0 || len(c.busyQ) != 0 {
		t.Errorf("%d busy marks left, %d queued", len(c.busy), len(c.busyQ))
	}
}

// TestCoalescerSeenTimes checks when each event leaving was seen: an event
// delivered at once when it was added, one that waited when the earliest
// event merged into it was added.
func TestCoalescerSeenTimes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	c := newCoalescer(time.Second)
	expect := func(now time.Time, want ...seenEvent) {
		t.Helper()
		if got := c.due(now); !slices.Equal(got, want) {
			show := func(evs []seenEvent) (out []string) {
				for _, ev := range evs {
					out = append(out, fmt.Sprintf("%v seen at %s", ev.FileEvent, ev.seen.Sub(t0)))
				}
				return out
			}
			t.Fatalf("at %s: got %q, want %q", now.Sub(t0), show(got), show(want))
		}
	}
	for _, p := range []string{"/r/f", "/r/x", "/r/y"} {
		c.add(fe(created, p, false, "h"), at(0))
	}
	expect(at(0), seenEvent{fe(created, "/r/f", false, "h"), at(0)},
		seenEvent{fe(created, "/r/x", false, "h"), at(0)}, seenEvent{fe(created, "/r/y", false, "h"), at(0)})
	c.add(fe(modified, "/r/f", false, "h"), at(100))
	c.add(fe(modified, "/r/x", false, "h"), at(100))
	c.add(fe(deleted, "/r/y", false, "h"), at(100))
	c.add(fe(modified, "/r/f", false, "h"), at(200)) // merged into the modification
	c.add(fe(deleted, "/r/x", false, "h"), at(200))  // replaces the modification
	c.add(fe(created, "/r/y", false, "h"), at(200))  // follows the deletion
	c.add(fe(created, "/r/z", false, "h"), at(300))
	expect(at(300), seenEvent{fe(created, "/r/z", false, "h"), at(300)})
	expect(at(1100), seenEvent{fe(modified, "/r/f", false, "h"), at(100)},
		seenEvent{fe(deleted, "/r/x", false, "h"), at(100)},
		seenEvent{fe(deleted, "/r/y", false, "h"), at(100)}, seenEvent{fe(created, "/r/y", false, "h"), at(200)})
}
