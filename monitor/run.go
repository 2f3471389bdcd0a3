package monitor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
)

const maxWatchesFile = "/proc/sys/fs/inotify/max_user_watches"

// Run loads the stored registrations (dropping those whose directory is
// gone), watches every registered tree, resyncs each registration, then
// delivers file events to the sink until ctx ends. Sink and resync errors are
// logged and counted; they never stop the loop. Events still in the
// coalescing window when ctx ends are dropped (the next start resyncs).
func (m *Monitor) Run(ctx context.Context) error {
	if m.opts.Sink == nil {
		return errors.New("run monitor: Options.Sink is nil")
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("run monitor: %w", err)
	}
	defer w.Close()
	m.mu.Lock()
	if m.watcher != nil {
		m.mu.Unlock()
		return errors.New("run monitor: already running")
	}
	m.watcher = w
	m.maxWatch = readMaxWatches()
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.watcher, m.dirs = nil, map[string]bool{}
		m.mu.Unlock()
	}()

	if err := m.load(ctx); err != nil {
		return fmt.Errorf("run monitor: %w", err)
	}
	regs := m.rewatch()
	m.log.WithFields(logrus.Fields{"max_user_watches": m.maxWatch, "watches": m.Stats().Watches}).
		Info("inotify watch budget")
	m.startOnce.Do(func() { close(m.started) })
	for _, r := range regs {
		m.resync(ctx, r)
	}

	q := newCoalescer(m.opts.Debounce)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var wake <-chan time.Time
		if t, ok := q.next(); ok {
			timer.Reset(time.Until(t))
			wake = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("run monitor: watcher closed")
			}
			m.handle(ev, q)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("run monitor: watcher closed")
			}
			m.handleError(ctx, err, q)
		case err := <-m.inject:
			m.handleError(ctx, err, q)
		case <-wake:
		}
		for _, ev := range q.due(time.Now()) {
			if ctx.Err() != nil {
				return nil
			}
			m.deliver(ctx, ev)
		}
		m.pending.Store(int64(len(q.byKey)))
	}
}

// load merges the stored registrations into memory; those whose directory no
// longer exists are deleted from the store.
func (m *Monitor) load(ctx context.Context) error {
	if m.opts.Store == nil {
		return nil
	}
	stored, err := m.opts.Store.Registrations(ctx)
	if err != nil {
		return fmt.Errorf("load registrations: %w", err)
	}
	for _, r := range stored {
		log := m.log.WithFields(logrus.Fields{"path": r.Path, "handler": r.Handler})
		if fi, err := os.Stat(r.Path); err != nil || !fi.IsDir() {
			log.WithError(err).Warn("registered directory is gone: registration dropped")
			if err := m.opts.Store.DeleteRegistration(ctx, r.Path, r.Handler); err != nil {
				log.WithError(err).Warn("drop registration")
			}
			continue
		}
		m.mu.Lock()
		k := regKey{r.Path, r.Handler}
		r.Recursive = r.Recursive || m.regs[k].Recursive
		m.regs[k] = r
		m.mu.Unlock()
	}
	return nil
}

// rewatch forgets watches of directories that are gone, watches every
// registered directory not yet watched, and returns the registrations.
func (m *Monitor) rewatch() []Registration {
	m.mu.Lock()
	defer m.mu.Unlock()
	for dir := range m.dirs {
		if _, err := os.Lstat(dir); err != nil {
			m.unwatchLocked(dir)
		}
	}
	regs := m.sortedRegsLocked()
	for _, r := range regs {
		if _, err := m.watchLocked(r.Path, r.Recursive, false); err != nil {
			m.log.WithError(err).WithFields(logrus.Fields{"path": r.Path, "handler": r.Handler}).
				Error("watch registered directory")
		}
	}
	return regs
}

// found is an entry met while scanning a newly watched directory.
type found struct {
	path  string
	isDir bool
}

// watchLocked adds a watch on root and, when recursive, on every directory
// below it. With scan, it returns what the new directories held (below root,
// parents first); directories already watched were scanned when their watch
// was added and are skipped.
func (m *Monitor) watchLocked(root string, recursive, scan bool) ([]found, error) {
	if !recursive {
		return nil, m.addLocked(root)
	}
	var out []found
	// The trailing separator makes a symlinked root count as a directory.
	start := strings.TrimSuffix(root, "/") + "/"
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		isRoot := p == start
		if isRoot {
			p = root
		}
		if err != nil {
			if isRoot {
				return err
			}
			m.log.WithError(err).WithField("path", p).Warn("scan directory")
			return nil // vanished or unreadable: skip it
		}
		if !isRoot && scan {
			out = append(out, found{p, d.IsDir()})
		}
		if !d.IsDir() {
			return nil
		}
		if m.dirs[p] {
			if scan && !isRoot {
				return fs.SkipDir
			}
			return nil
		}
		if err := m.addLocked(p); err != nil {
			if isRoot || errors.Is(err, syscall.ENOSPC) {
				return err
			}
			m.log.WithError(err).WithField("path", p).Warn("watch directory")
			return fs.SkipDir
		}
		return nil
	})
	return out, err
}

// addLocked adds one inotify watch.
func (m *Monitor) addLocked(dir string) error {
	if m.dirs[dir] {
		return nil
	}
	err := m.watcher.Add(dir)
	switch {
	case err == nil:
		m.dirs[dir] = true
		return nil
	case errors.Is(err, syscall.ENOSPC):
		m.limitErrors.Add(1)
		return watchLimitError(dir, err, m.maxWatch, len(m.dirs))
	default:
		return fmt.Errorf("watch %s: %w", dir, err)
	}
}

// watchLimitError explains an ENOSPC from inotify_add_watch: the limit
// (0 if unknown) is reached with used watches of ours, and how to raise it.
func watchLimitError(dir string, err error, limit, used int) error {
	suggest := 4 * limit
	if limit <= 0 {
		suggest = 524288
	}
	return fmt.Errorf("watch %s: %w: inotify watch limit reached (fs.inotify.max_user_watches=%d, %d used by cowbird); "+
		"raise it with `sysctl fs.inotify.max_user_watches=%d` and persist that in /etc/sysctl.d/",
		dir, err, limit, used, suggest)
}

// unwatchLocked removes one watch. The kernel may have dropped it already
// (deleted directory), so errors are only worth a debug line.
func (m *Monitor) unwatchLocked(dir string) {
	if err := m.watcher.Remove(dir); err != nil {
		m.log.WithError(err).WithField("path", dir).Debug("remove watch")
	}
	delete(m.dirs, dir)
}

// handle translates one fsnotify event: Create -> created (a new directory
// under a recursive registration is watched and what it already holds is
// reported as created), Write and Chmod -> modified, Remove and Rename (the
// old name; the new one arrives as a Create) -> deleted.
func (m *Monitor) handle(ev fsnotify.Event, q *coalescer) {
	now := time.Now()
	switch {
	case ev.Has(fsnotify.Create):
		fi, err := os.Lstat(ev.Name)
		if err != nil {
			return // gone already; its removal follows
		}
		var news []found
		if fi.IsDir() {
			m.mu.Lock()
			if want, recursive := m.watchModeLocked(ev.Name); want && !m.dirs[ev.Name] {
				news, err = m.watchLocked(ev.Name, recursive, true)
			}
			m.mu.Unlock()
			if err != nil {
				m.log.WithError(err).WithField("path", ev.Name).Error("watch new directory")
			}
		}
		m.emit(q, handlers.FileEvent{Op: handlers.FileCreated, Path: ev.Name, IsDir: fi.IsDir()}, now)
		for _, f := range news {
			m.emit(q, handlers.FileEvent{Op: handlers.FileCreated, Path: f.path, IsDir: f.isDir}, now)
		}
	case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
		m.mu.Lock()
		isDir := m.dirs[ev.Name]
		for dir := range m.dirs {
			if dir == ev.Name || under(dir, ev.Name) {
				m.unwatchLocked(dir)
			}
		}
		for _, r := range m.regs {
			if r.Path == ev.Name {
				m.log.WithFields(logrus.Fields{"path": r.Path, "handler": r.Handler}).
					Warn("registered directory removed: no more events until it is registered again")
			}
		}
		m.mu.Unlock()
		m.emit(q, handlers.FileEvent{Op: handlers.FileDeleted, Path: ev.Name, IsDir: isDir}, now)
	case ev.Has(fsnotify.Write), ev.Has(fsnotify.Chmod):
		fi, err := os.Lstat(ev.Name)
		if err != nil {
			return // a removal (which also sends Chmod on Linux) follows
		}
		m.emit(q, handlers.FileEvent{Op: handlers.FileModified, Path: ev.Name, IsDir: fi.IsDir()}, now)
	}
}

// emit queues ev once for every registration it belongs to, unless an Ignore
// call covers it.
func (m *Monitor) emit(q *coalescer, ev handlers.FileEvent, now time.Time) {
	m.mu.Lock()
	var names []string
	if !m.ignoredLocked(ev.Path, ev.Op, now) {
		for _, r := range m.sortedRegsLocked() {
			if r.matches(ev.Path) {
				names = append(names, r.Handler)
			}
		}
	}
	m.mu.Unlock()
	for _, name := range names {
		ev.Handler = name
		q.add(ev, now)
	}
}

// handleError resyncs every registration after an overflow (events were
// lost, directories may be unwatched) and logs anything else. The events
// read before the overflow and still waiting in q are dropped for each
// registration whose resync covered them.
func (m *Monitor) handleError(ctx context.Context, err error, q *coalescer) {
	if !errors.Is(err, fsnotify.ErrEventOverflow) {
		m.log.WithError(err).Warn("watcher error")
		return
	}
	m.overflows.Add(1)
	m.log.Warn("inotify event queue overflow: resyncing every registration")
	for _, r := range m.rewatch() {
		if m.resync(ctx, r) {
			m.dropped.Add(uint64(q.drop(r.Handler, r.Path)))
		}
	}
}

// resync runs the registration's resync and reports whether it covered the
// registration's waiting events.
func (m *Monitor) resync(ctx context.Context, r Registration) bool {
	if m.opts.Resync == nil {
		return false
	}
	covered, err := m.opts.Resync(ctx, r)
	if err != nil {
		m.handlerErrors.Add(1)
		m.log.WithError(err).WithFields(logrus.Fields{"path": r.Path, "handler": r.Handler}).Error("resync")
		return false
	}
	return covered
}

func (m *Monitor) deliver(ctx context.Context, ev handlers.FileEvent) {
	m.events.Add(1)
	if err := m.opts.Sink(ctx, ev); err != nil {
		m.handlerErrors.Add(1)
		m.log.WithError(err).WithFields(logrus.Fields{"path": ev.Path, "handler": ev.Handler, "event": ev.Name()}).
			Error("file event")
	}
}

// readMaxWatches returns fs.inotify.max_user_watches, or 0 when unknown.
func readMaxWatches() int {
	b, err := os.ReadFile(maxWatchesFile)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}
