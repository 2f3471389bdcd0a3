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

// Run loads the stored registrations, watches every registered tree, starts
// the resync of each registration whose directory exists, and delivers file
// events to the sink until ctx ends; resyncs run beside the delivery (see
// resyncs), and Run waits for them before it returns. Sink and resync errors are logged and
// counted; they never stop the loop. Neither does a tree that cannot be
// watched, nor an inotify instance that cannot be created (the instance
// limit): those registrations are degraded and retried every
// RetryInterval. Events still in the coalescing window when ctx ends are
// dropped (the next start resyncs).
func (m *Monitor) Run(ctx context.Context) error {
	if m.opts.Sink == nil {
		return errors.New("run monitor: Options.Sink is nil")
	}
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return errors.New("run monitor: already running")
	}
	m.running = true
	m.maxWatch = readMaxWatches()
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if m.watcher != nil {
			m.watcher.Close()
		}
		m.running, m.watcher, m.dirs = false, nil, map[string]bool{}
		m.mu.Unlock()
	}()

	if err := m.load(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: nothing to report
		}
		return fmt.Errorf("run monitor: %w", err)
	}
	w := m.openWatcher()
	regs := m.rewatch()
	m.log.WithFields(logrus.Fields{"max_user_watches": m.maxWatch, "watches": m.Stats().Watches}).
		Info("inotify watch budget")
	m.startOnce.Do(func() { close(m.started) })
	// The resyncs run on a context that ends when Run returns, whatever
	// ends it, before Run waits for them.
	rs := newResyncs()
	defer rs.wg.Wait()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	for _, r := range regs {
		if isDir(r.Path) {
			rs.start(ctx, m, r)
		}
	}
	ticks, stopTicks := m.retryTicks()
	defer stopTicks()
	return m.loop(ctx, w, rs, ticks)
}

// retryTicks returns the ticks at which degraded registrations are retried
// (Options.RetryTicks, else a ticker of RetryInterval) and how to stop them.
func (m *Monitor) retryTicks() (<-chan time.Time, func()) {
	if m.opts.RetryTicks != nil {
		return m.opts.RetryTicks, func() {}
	}
	every := m.opts.RetryInterval
	if every <= 0 {
		every = DefaultRetryInterval
	}
	t := time.NewTicker(every)
	return t.C, t.Stop
}

// loop reads the events of w (none while w is nil: an inotify instance is
// tried again at every tick), coalesces and delivers them, and takes the
// resyncs' outcomes, until ctx ends.
func (m *Monitor) loop(ctx context.Context, w *fsnotify.Watcher, rs *resyncs, ticks <-chan time.Time) error {
	q := newCoalescer(m.opts.Debounce)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var wake <-chan time.Time
		if t, ok := q.next(); ok {
			timer.Reset(time.Until(t))
			wake = timer.C
		}
		var events <-chan fsnotify.Event
		var errs <-chan error
		if w != nil {
			events, errs = w.Events, w.Errors
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errors.New("run monitor: watcher closed")
			}
			m.handle(ev, q)
		case err, ok := <-errs:
			if !ok {
				return errors.New("run monitor: watcher closed")
			}
			m.handleError(ctx, err, q, rs)
		case err := <-m.inject:
			m.handleError(ctx, err, q, rs)
		case <-ticks:
			if w == nil {
				if w = m.openWatcher(); w != nil {
					m.handleError(ctx, errNewWatcher, q, rs) // watch and resync everything
				}
			} else {
				m.retry(ctx, rs)
			}
		case d := <-rs.done:
			rs.finish(ctx, m, d, q)
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

// errNewWatcher stands for the creation of the inotify instance after it
// had failed: like an overflow, everything is watched and resynced.
var errNewWatcher = errors.New("inotify instance created")

// errNoInstance is why every registration is degraded when the inotify
// instance could not be created (logged once, not per registration).
var errNoInstance = errors.New("no inotify instance")

// openWatcher creates the inotify instance. When that fails (the inotify
// instance limit, fs.inotify.max_user_instances), it logs, counts and
// returns nil: every registration is then degraded until a retry succeeds.
func (m *Monitor) openWatcher() *fsnotify.Watcher {
	w, err := m.newWatcher()
	if err != nil {
		m.watchErrors.Add(1)
		m.mu.Lock()
		again := m.noWatcher != nil
		m.noWatcher = fmt.Errorf("%w: %w (see fs.inotify.max_user_instances)", errNoInstance, err)
		m.mu.Unlock()
		log := m.log.WithError(err)
		if again {
			log.Debug("inotify instance still not created")
		} else {
			log.Warn("cannot create an inotify instance: no file events until a retry succeeds")
		}
		return nil
	}
	m.mu.Lock()
	m.watcher, m.noWatcher = w, nil
	m.mu.Unlock()
	return w
}

// load merges the stored registrations into memory. Those whose directory
// is missing stay: they are degraded until it appears.
func (m *Monitor) load(ctx context.Context) error {
	if m.opts.Store == nil {
		return nil
	}
	stored, err := m.opts.Store.Registrations(ctx)
	if err != nil {
		return fmt.Errorf("load registrations: %w", err)
	}
	for _, r := range stored {
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
		m.watchRegLocked(r)
	}
	return regs
}

// watchRegLocked watches r's tree (what is not watched yet) and reports
// whether all of it is watched now; if not, r is degraded.
func (m *Monitor) watchRegLocked(r Registration) bool {
	err := m.noWatcher
	if m.watcher != nil {
		_, err = m.watchLocked(r.Path, r.Recursive, false)
	}
	if err != nil {
		m.degradeLocked(r, err)
		return false
	}
	k := regKey{r.Path, r.Handler}
	if d := m.degraded[k]; d != nil {
		delete(m.degraded, k)
		m.log.WithFields(logrus.Fields{"path": r.Path, "handler": r.Handler, "failures": d.failures,
			"degraded_for": time.Since(d.since).Round(time.Second).String()}).
			Warn("registered directory watched again")
	}
	return true
}

// degradeLocked records that r's tree is not fully watched because of err.
// The first failure is a warning; the next ones, until it is watched, are
// debug lines.
func (m *Monitor) degradeLocked(r Registration, err error) {
	m.watchErrors.Add(1)
	var probe string
	if we := (*watchError)(nil); errors.As(err, &we) {
		probe = we.dir
	}
	log := m.log.WithError(err).WithFields(logrus.Fields{"path": r.Path, "handler": r.Handler})
	k := regKey{r.Path, r.Handler}
	if d := m.degraded[k]; d != nil {
		d.err, d.probe = err, probe
		d.failures++
		log.WithField("failures", d.failures).Debug("registered directory still not watched")
		return
	}
	m.degraded[k] = &degradation{err: err, probe: probe, since: time.Now(), failures: 1}
	if errors.Is(err, errNoInstance) {
		log.Debug("registered directory not watched") // warned once by openWatcher
		return
	}
	log.Warn("cannot watch registered directory: its file events are missing until a retry succeeds")
}

// retry watches the degraded registrations again and resyncs those that
// are now fully watched. A registration that failed on a watch limit first
// retries the directory that failed, so that a limit still reached costs
// one system call, not a walk of the tree.
func (m *Monitor) retry(ctx context.Context, rs *resyncs) {
	m.mu.Lock()
	var recovered []Registration
	if len(m.degraded) == 0 {
		m.mu.Unlock()
		return
	}
	for _, r := range m.sortedRegsLocked() {
		d := m.degraded[regKey{r.Path, r.Handler}]
		if d == nil {
			continue
		}
		if d.probe != "" && d.probe != r.Path && !m.dirs[d.probe] && isDir(d.probe) {
			if err := m.addLocked(d.probe); err != nil {
				m.degradeLocked(r, err)
				continue
			}
		}
		if m.watchRegLocked(r) {
			recovered = append(recovered, r)
		}
	}
	m.mu.Unlock()
	for _, r := range recovered {
		rs.start(ctx, m, r)
	}
}

// isDir reports whether p is a directory (following symlinks).
func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// found is an entry met while scanning a newly watched directory, when,
// and its inode (0 if unknown).
type found struct {
	path  string
	isDir bool
	seen  time.Time
	ino   uint64
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
			out = append(out, found{p, d.IsDir(), time.Now(), inoOf(d)})
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
	if m.watcher == nil {
		return &watchError{dir: dir, err: m.noWatcher}
	}
	err := m.addWatch(m.watcher, dir)
	switch {
	case err == nil:
		m.dirs[dir] = true
		return nil
	case errors.Is(err, syscall.ENOSPC):
		m.limitErrors.Add(1)
		return watchLimitError(dir, err, m.maxWatch, len(m.dirs))
	default:
		return &watchError{dir: dir, err: err}
	}
}

// watchError is a failed inotify_add_watch on dir.
type watchError struct {
	dir  string
	err  error
	hint string // what to do about it, if known
}

func (e *watchError) Error() string {
	if e.hint != "" {
		return fmt.Sprintf("watch %s: %v: %s", e.dir, e.err, e.hint)
	}
	return fmt.Sprintf("watch %s: %v", e.dir, e.err)
}

func (e *watchError) Unwrap() error { return e.err }

// watchLimitError explains an ENOSPC from inotify_add_watch: the limit
// (0 if unknown) is reached with used watches of ours, and how to raise it.
func watchLimitError(dir string, err error, limit, used int) error {
	suggest := 4 * limit
	if limit <= 0 {
		suggest = 524288
	}
	return &watchError{dir: dir, err: err, hint: fmt.Sprintf(
		"inotify watch limit reached (fs.inotify.max_user_watches=%d, %d used by cowbird); "+
			"raise it with `sysctl fs.inotify.max_user_watches=%d` and persist that in /etc/sysctl.d/",
		limit, used, suggest)}
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
			// Gone already; its removal follows, and its writes read until
			// then are not reported (a newer file of that name may exist
			// when they are read: its own creation follows).
			q.vanished[ev.Name] = true
			return
		}
		delete(q.vanished, ev.Name)
		if q.scannedAgain(ev.Name, fi, now) {
			return // the scan of its new directory reported this very file
		}
		var news []found
		if fi.IsDir() {
			m.mu.Lock()
			if want, recursive := m.watchModeLocked(ev.Name); want && !m.dirs[ev.Name] {
				news, err = m.watchLocked(ev.Name, recursive, true)
				if err != nil && !errors.Is(err, fs.ErrNotExist) { // gone: its removal follows
					// The registrations that want it miss its events
					// until a retry watches it and resyncs them.
					for _, r := range m.sortedRegsLocked() {
						if r.Path == ev.Name || r.Recursive && under(ev.Name, r.Path) {
							m.degradeLocked(r, err)
						}
					}
				}
			}
			m.mu.Unlock()
		}
		m.emit(q, handlers.FileEvent{Op: handlers.FileCreated, Path: ev.Name, IsDir: fi.IsDir()}, now)
		for _, f := range news {
			m.emit(q, handlers.FileEvent{Op: handlers.FileCreated, Path: f.path, IsDir: f.isDir}, f.seen)
			q.noteScanned(f.path, f.ino, now)
		}
	case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
		delete(q.vanished, ev.Name)
		m.mu.Lock()
		isDir := m.dirs[ev.Name]
		for dir := range m.dirs {
			if dir == ev.Name || under(dir, ev.Name) {
				m.unwatchLocked(dir)
			}
		}
		for _, r := range m.sortedRegsLocked() {
			if r.Path == ev.Name { // watched again, and resynced, when it reappears
				m.degradeLocked(r, fmt.Errorf("watch %s: registered directory removed: %w", r.Path, fs.ErrNotExist))
			}
		}
		m.mu.Unlock()
		m.emit(q, handlers.FileEvent{Op: handlers.FileDeleted, Path: ev.Name, IsDir: isDir}, now)
	case ev.Has(fsnotify.Write), ev.Has(fsnotify.Chmod):
		m.modified(ev, q, now)
	}
}

// modified reports a Write or Chmod as modified, unless the file is gone
// (its removal follows), its Create was read after it was gone, or it is
// the attribute event of a handler's own change (Changing).
func (m *Monitor) modified(ev fsnotify.Event, q *coalescer, now time.Time) {
	if q.vanished[ev.Name] {
		return
	}
	fi, err := os.Lstat(ev.Name)
	if err != nil {
		return // a removal (which also sends Chmod on Linux) follows
	}
	own := false
	if !ev.Has(fsnotify.Write) {
		m.mu.Lock()
		own = m.ownLocked(ev.Name, fi)
		m.mu.Unlock()
	}
	if !own {
		m.emit(q, handlers.FileEvent{Op: handlers.FileModified, Path: ev.Name, IsDir: fi.IsDir()}, now)
	}
}

// emit queues ev, seen at now, once for every registration it belongs to.
func (m *Monitor) emit(q *coalescer, ev handlers.FileEvent, now time.Time) {
	m.mu.Lock()
	var names []string
	for _, r := range m.sortedRegsLocked() {
		if r.matches(ev.Path) {
			names = append(names, r.Handler)
		}
	}
	m.mu.Unlock()
	for _, name := range names {
		ev.Handler = name
		q.add(ev, now)
	}
}

// handleError resyncs every registration after an overflow (events were
// lost, directories may be unwatched) or once the inotify instance could be
// created, and logs anything else.
func (m *Monitor) handleError(ctx context.Context, err error, q *coalescer, rs *resyncs) {
	switch {
	case errors.Is(err, errNewWatcher):
		m.log.Warn("inotify instance created: watching and resyncing every registration")
	case errors.Is(err, fsnotify.ErrEventOverflow):
		clear(q.vanished) // their removals may be lost
		q.scanned.clear()
		m.overflows.Add(1)
		m.log.Warn("inotify event queue overflow: resyncing every registration")
	default:
		m.log.WithError(err).Warn("watcher error")
		return
	}
	for _, r := range m.rewatch() {
		if isDir(r.Path) {
			rs.start(ctx, m, r)
		}
	}
}

// deliver hands ev to the sink, then to Observe with the time since the
// monitor saw it.
func (m *Monitor) deliver(ctx context.Context, ev seenEvent) {
	m.events.Add(1)
	err := m.opts.Sink(ctx, ev.FileEvent)
	if err != nil {
		m.handlerErrors.Add(1)
		m.log.WithError(err).WithFields(logrus.Fields{"path": ev.Path, "handler": ev.Handler, "event": ev.Name()}).
			Error("file event")
	}
	if m.opts.Observe != nil {
		m.opts.Observe(ev.FileEvent, time.Since(ev.seen), err)
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
