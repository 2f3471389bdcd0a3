package monitor

import (
	"time"

	"github.com/cowbird-go/cowbird/handlers"
)

// coalescer holds file events for a short window and merges those of the same
// (handler, path). Entries leave in the order their path was first seen, so a
// parent directory reported before its children stays before them.
type coalescer struct {
	window time.Duration
	queue  []*entry
	byKey  map[entryKey]*entry
}

type entryKey struct{ handler, path string }

// entry is one (handler, path) waiting in the window; evs is never longer
// than two (a delete followed by a create).
type entry struct {
	evs []handlers.FileEvent
	due time.Time
}

func newCoalescer(window time.Duration) *coalescer {
	return &coalescer{window: window, byKey: map[entryKey]*entry{}}
}

// add merges ev into the pending events.
func (c *coalescer) add(ev handlers.FileEvent, now time.Time) {
	k := entryKey{ev.Handler, ev.Path}
	e := c.byKey[k]
	if e == nil {
		e = &entry{evs: []handlers.FileEvent{ev}, due: now.Add(c.window)}
		c.byKey[k] = e
		c.queue = append(c.queue, e)
	} else if e.merge(ev); len(e.evs) == 0 {
		delete(c.byKey, k)
	}
	if ev.Op == handlers.FileDeleted && ev.IsDir {
		c.dropUnder(ev.Handler, ev.Path)
	}
}

// merge folds ev into the entry's events.
func (e *entry) merge(ev handlers.FileEvent) {
	last := &e.evs[len(e.evs)-1]
	switch {
	case ev.Op == last.Op, ev.Op == handlers.FileModified && last.Op == handlers.FileCreated:
		// A repeat, or a modification of something not yet reported.
		last.IsDir = last.IsDir || ev.IsDir
	case ev.Op == handlers.FileDeleted && last.Op == handlers.FileCreated:
		e.evs = e.evs[:len(e.evs)-1] // never reported, gone again
	case ev.Op == handlers.FileDeleted && last.Op == handlers.FileModified:
		ev.IsDir = ev.IsDir || last.IsDir
		*last = ev
	default:
		e.evs = append(e.evs, ev)
	}
}

// dropUnder forgets pending creations and modifications below a deleted
// directory: they name paths that no longer exist. Deletions stay.
func (c *coalescer) dropUnder(handler, dir string) {
	for k, e := range c.byKey {
		if k.handler != handler || !under(k.path, dir) {
			continue
		}
		kept := e.evs[:0]
		for _, ev := range e.evs {
			if ev.Op == handlers.FileDeleted {
				kept = append(kept, ev)
			}
		}
		if e.evs = kept; len(kept) == 0 {
			delete(c.byKey, k)
		}
	}
}

// drop forgets every waiting event of handler at or below root and returns
// how many (handler, path) entries it dropped.
func (c *coalescer) drop(handler, root string) int {
	n := 0
	for k, e := range c.byKey {
		if k.handler == handler && (k.path == root || under(k.path, root)) {
			e.evs = nil // skipped by due and next
			delete(c.byKey, k)
			n++
		}
	}
	return n
}

// due removes and returns, in order, the events whose window has ended.
func (c *coalescer) due(now time.Time) []handlers.FileEvent {
	var out []handlers.FileEvent
	for len(c.queue) > 0 {
		e := c.queue[0]
		if len(e.evs) > 0 && e.due.After(now) {
			break
		}
		c.queue = c.queue[1:]
		if len(e.evs) == 0 {
			continue
		}
		delete(c.byKey, entryKey{e.evs[0].Handler, e.evs[0].Path})
		out = append(out, e.evs...)
	}
	return out
}

// next is when the first pending event is due; ok is false when none waits.
func (c *coalescer) next() (t time.Time, ok bool) {
	for _, e := range c.queue {
		if len(e.evs) > 0 {
			return e.due, true
		}
	}
	return time.Time{}, false
}
