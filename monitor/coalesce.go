package monitor

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cowbird-go/cowbird/handlers"
)

// coalescer decides when each file event leaves, per (handler, path):
//
//   - leading edge: the first event of a path that is idle leaves at once;
//   - the path is then busy for one window, and what happens to it meanwhile
//     (a file still being written, a quick delete and re-create) is merged
//     into one pending entry that leaves when the window after its first
//     event ends, after which the path is busy for one more window;
//   - a path whose window ends with nothing pending is idle again.
//
// A file that is created and then written is thus reported at once as
// created and, one window later, once as modified, however many writes it
// took. Order is kept: events of one path leave in the order they happened,
// and an event whose parent directory (or any ancestor) has a pending entry
// waits behind it, so a directory's creation is never reported after what
// was created in it; a deleted directory waits behind the pending deletions
// below it. Pending entries leave in the order their path was first queued.
type coalescer struct {
	window time.Duration
	ready  []seenEvent         // leading-edge events, to deliver at once in this order
	queue  []*entry            // pending entries, by due time (= first-queued order)
	byKey  map[entryKey]*entry // the pending entries with events
	busy   map[entryKey]busyMark
	busyQ  []busyUntil // busy marks in time order, to forget expired ones
	// vanished are the paths whose Create was read after they were gone,
	// until their removal is read (see Monitor.handle).
	vanished map[string]bool
	// scanned are the inodes of the files the scan of a new directory
	// reported, whose own Create may follow (see scannedAgain).
	scanned *recent[uint64]
}

type entryKey struct{ handler, path string }

// seenEvent is a file event and when the monitor saw it: when it read the
// earliest inotify event merged into it, or found it scanning a directory.
type seenEvent struct {
	handlers.FileEvent
	seen time.Time
}

// entry is one (handler, path) waiting for its window to end; evs is never
// longer than two (a deletion, or a modification, followed by a creation).
type entry struct {
	evs   []seenEvent
	due   time.Time
	after handlers.FileOp // the path's last delivered operation, "" if unknown
}

// busyMark is a path delivered less than a window ago, and what it was.
type busyMark struct {
	until time.Time
	last  handlers.FileOp
}

type busyUntil struct {
	key   entryKey
	until time.Time
}

func newCoalescer(window time.Duration) *coalescer {
	return &coalescer{window: window, byKey: map[entryKey]*entry{}, busy: map[entryKey]busyMark{}, vanished: map[string]bool{},
		scanned: newRecent[uint64](scanTTL)}
}

// add takes ev, seen at now: it is either ready at once or merged into its
// path's pending entry. Successive calls must not go back in time.
func (c *coalescer) add(ev handlers.FileEvent, now time.Time) {
	c.expire(now)
	k := entryKey{ev.Handler, ev.Path}
	if e := c.byKey[k]; e != nil {
		if e.merge(seenEvent{ev, now}); len(e.evs) == 0 {
			delete(c.byKey, k) // the queue skips it
		}
		if ev.Op == handlers.FileDeleted && ev.IsDir {
			c.dropUnder(ev.Handler, ev.Path)
		}
		return
	}
	mark, busy := c.busy[k]
	busy = busy && now.Before(mark.until)
	wait := busy || c.ancestorPending(ev.Handler, ev.Path)
	if ev.Op == handlers.FileDeleted && ev.IsDir && c.dropUnder(ev.Handler, ev.Path) > 0 {
		wait = true // behind the deletions still pending below it
	}
	if busy && ev.Op == handlers.FileDeleted && mark.last == handlers.FileDeleted {
		return // gone, as last reported (its re-creation was gone before it was seen)
	}
	if !wait {
		c.ready = append(c.ready, seenEvent{ev, now})
		c.markBusy(k, now, ev.Op)
		return
	}
	e := &entry{evs: []seenEvent{{ev, now}}, due: now.Add(c.window)}
	if busy {
		e.after = mark.last
	}
	c.byKey[k] = e
	c.queue = append(c.queue, e)
}

// merge folds ev into the entry's events. A deletion replaces the creation
// or modification before it; it is dropped only when the path's last
// delivered event was a deletion too (created and gone again, unseen). A
// pending creation does not prove the path was absent before: a rename over
// an existing file is reported as a creation alone. An event merged into
// another keeps the earlier seen time of the two.
func (e *entry) merge(ev seenEvent) {
	last := &e.evs[len(e.evs)-1]
	switch {
	case ev.Op == last.Op, ev.Op == handlers.FileModified && last.Op == handlers.FileCreated:
		// A repeat, or a modification of something not yet reported.
		last.IsDir = last.IsDir || ev.IsDir
	case ev.Op == handlers.FileDeleted:
		// Drop what the deletion supersedes, down to an earlier deletion.
		for n := len(e.evs); n > 0 && e.evs[n-1].Op != handlers.FileDeleted; n-- {
			ev.IsDir = ev.IsDir || e.evs[n-1].IsDir
			ev.seen = e.evs[n-1].seen // seen before ev: events are added in time order
			e.evs = e.evs[:n-1]
		}
		if n := len(e.evs); n > 0 { // [deleted, created] + deleted
			e.evs[n-1].IsDir = e.evs[n-1].IsDir || ev.IsDir
			return
		}
		if e.after != handlers.FileDeleted {
			e.evs = append(e.evs, ev)
		}
	default:
		e.evs = append(e.evs, ev)
	}
}

// markBusy makes k, just delivered as last, busy for one window from now.
func (c *coalescer) markBusy(k entryKey, now time.Time, last handlers.FileOp) {
	if c.window <= 0 {
		return
	}
	until := now.Add(c.window)
	c.busy[k] = busyMark{until, last}
	c.busyQ = append(c.busyQ, busyUntil{k, until})
}

// expire forgets the busy marks that ended by now.
func (c *coalescer) expire(now time.Time) {
	n := 0
	for ; n < len(c.busyQ) && !now.Before(c.busyQ[n].until); n++ {
		b := c.busyQ[n]
		if c.busy[b.key].until.Equal(b.until) { // not renewed since
			delete(c.busy, b.key)
		}
	}
	if n > 0 {
		clear(c.busyQ[:n]) // release the strings
		c.busyQ = c.busyQ[n:]
	}
}

// ancestorPending reports whether a directory above p has a pending entry
// for handler.
func (c *coalescer) ancestorPending(handler, p string) bool {
	if len(c.byKey) == 0 {
		return false
	}
	for d := filepath.Dir(p); ; d = filepath.Dir(d) {
		if c.byKey[entryKey{handler, d}] != nil {
			return true
		}
		if parent := filepath.Dir(d); parent == d {
			return false
		}
	}
}

// dropUnder forgets pending creations and modifications below a deleted
// directory: they name paths that no longer exist. Deletions stay; it
// returns how many entries still wait below dir.
func (c *coalescer) dropUnder(handler, dir string) int {
	left := 0
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
		} else {
			left++
		}
	}
	return left
}

// dropSeenBefore forgets the pending events of handler at or below root
// seen before t and returns how many (handler, path) entries it emptied.
func (c *coalescer) dropSeenBefore(handler, root string, t time.Time) int {
	n := 0
	for k, e := range c.byKey {
		if k.handler != handler || (k.path != root && !under(k.path, root)) {
			continue
		}
		kept := e.evs[:0]
		for _, ev := range e.evs {
			if !ev.seen.Before(t) {
				kept = append(kept, ev)
			}
		}
		if e.evs = kept; len(kept) == 0 {
			delete(c.byKey, k) // skipped by due and next
			n++
		}
	}
	return n
}

// due removes and returns, in order, the ready events, then the pending
// ones whose window has ended by now. Ready events go first: an event is
// ready only when neither its path nor an ancestor has a pending entry, so a
// pending entry of the same path (or below a directory deleted) was queued
// after it. Each path delivered from the queue is busy for one more window.
func (c *coalescer) due(now time.Time) []seenEvent {
	c.expire(now)
	var out []seenEvent
	if len(c.ready) > 0 {
		out = append(out, c.ready...)
		clear(c.ready)
		c.ready = c.ready[:0]
	}
	for len(c.queue) > 0 {
		e := c.queue[0]
		if len(e.evs) > 0 && e.due.After(now) {
			break
		}
		c.queue[0] = nil
		c.queue = c.queue[1:]
		if len(e.evs) == 0 {
			continue
		}
		k := entryKey{e.evs[0].Handler, e.evs[0].Path}
		delete(c.byKey, k)
		c.markBusy(k, now, e.evs[len(e.evs)-1].Op)
		out = append(out, e.evs...)
	}
	return out
}

// next is when the first pending event is due; ok is false when none waits.
// Ready events are due at once.
func (c *coalescer) next() (t time.Time, ok bool) {
	if len(c.ready) > 0 {
		return time.Time{}, true
	}
	for _, e := range c.queue {
		if len(e.evs) > 0 {
			return e.due, true
		}
	}
	return time.Time{}, false
}

// scanTTL bounds how long after a scan its file's own Create is taken for
// a duplicate; later, it is delivered (a redundant event, never a lost one).
const scanTTL = 10 * time.Second

// noteScanned records that the scan of a new directory reported path (the
// file of inode ino), so that its own Create, read next if the file was
// created after the directory's watch, is not reported twice.
func (c *coalescer) noteScanned(path string, ino uint64, now time.Time) {
	if ino != 0 {
		c.scanned.put(path, ino, now)
	}
}

// scannedAgain reports whether a Create of path, which fi shows now, is
// the one of a file a scan reported already: the same inode, recently. A
// new file of that name (a rename over it) has another inode.
func (c *coalescer) scannedAgain(path string, fi fs.FileInfo, now time.Time) bool {
	ino, at, ok := c.scanned.get(path)
	if !ok {
		return false
	}
	c.scanned.delete(path)
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Ino == ino && now.Sub(at) <= scanTTL
}
