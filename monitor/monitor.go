// Package monitor watches directory trees with fsnotify and turns what happens
// in them into handlers.FileEvent values for the handler that registered each
// tree. It keeps one inotify watch per directory, watches new directories as
// they appear (reporting what they already hold), coalesces events per path,
// asks the owning handler to resync after an overflow or a restart, and
// persists its registrations through a Store.
//
// A registration whose tree cannot be watched, or not all of it (its
// directory is missing, the inotify watch or instance limit is reached), is
// kept and reported as degraded (Stats, Degraded): the monitor retries it
// periodically, and once it is watched again asks its handler to resync it.
// Only that registration's events are missing meanwhile.
//
// Events are hints: a rename is reported as a delete of the old name and a
// create of the new one, IsDir is reliable on created and modified events but
// on deleted ones only for directories that were watched, and the handler is
// expected to reconcile from the state on disk.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
)

// DefaultDebounce is the coalescing window the daemon uses.
const DefaultDebounce = 100 * time.Millisecond

// DefaultRetryInterval is how often degraded registrations are retried when
// Options.RetryInterval is 0.
const DefaultRetryInterval = 30 * time.Second

// Registration asks for the events under Path to go to Handler: all of the
// tree when Recursive, else only the direct children of Path.
type Registration struct {
	Path      string `json:"path"`
	Handler   string `json:"handler"`
	Recursive bool   `json:"recursive"`
}

// Store persists registrations; main adapts store.DB to it.
type Store interface {
	// SaveRegistration inserts or replaces the registration of (Path, Handler).
	SaveRegistration(ctx context.Context, r Registration) error
	// DeleteRegistration removes the registration of (path, handler), if any.
	DeleteRegistration(ctx context.Context, path, handler string) error
	// Registrations lists every stored registration.
	Registrations(ctx context.Context) ([]Registration, error)
}

// Options configures a Monitor.
type Options struct {
	// Sink receives every file event (required); main routes it to the
	// dispatcher. An error is logged and the monitor goes on.
	Sink func(ctx context.Context, ev handlers.FileEvent) error
	// Observe, if set, is called after the sink returns, once per event,
	// with the event, the time since the monitor saw it (read the earliest
	// inotify event merged into it, or found it scanning a new directory;
	// the coalescing window included) and the sink's error. It runs on the
	// event loop: it must be quick.
	Observe func(ev handlers.FileEvent, latency time.Duration, err error)
	// Resync asks the owning handler to reconcile a registration's tree. It
	// is called for every registration when Run starts (to catch up on what
	// changed while stopped) and after an inotify overflow. covered reports
	// that the reconcile brought the handler up to date with the whole tree,
	// so that the registration's events still waiting in the coalescing
	// window are redundant: after an overflow they are dropped. A handler
	// that acts on each event itself (a hook run per file) returns false.
	// Optional.
	Resync func(ctx context.Context, r Registration) (covered bool, err error)
	// Store persists registrations; nil keeps them in memory only.
	Store Store
	// Log receives the monitor's logs; nil discards them.
	Log *logrus.Entry
	// Debounce is the per-path coalescing window: the first event of a path
	// is delivered at once, and what follows within the window is merged and
	// delivered when it ends; 0 delivers every event at once. The daemon
	// uses DefaultDebounce.
	Debounce time.Duration
	// RetryInterval is how often Run retries the degraded registrations;
	// 0 means DefaultRetryInterval.
	RetryInterval time.Duration
	// RetryTicks, when set, replaces the RetryInterval ticker: Run retries
	// on every value received (tests).
	RetryTicks <-chan time.Time
}

// Stats are the monitor's counters, for metrics.
type Stats struct {
	// Watches is the number of inotify watches in use.
	Watches int
	// MaxWatches is fs.inotify.max_user_watches as read at start, 0 when
	// unknown; the limit is per user, shared with other processes.
	MaxWatches int
	// Overflows counts inotify queue overflows (each one triggers resyncs).
	Overflows uint64
	// Events counts the file events delivered to the sink.
	Events uint64
	// HandlerErrors counts the sink and resync calls that returned an error.
	HandlerErrors uint64
	// WatchLimitErrors counts watches refused because the inotify watch
	// limit (fs.inotify.max_user_watches) was reached.
	WatchLimitErrors uint64
	// WatchErrors counts the failed attempts to watch a registration's tree
	// (missing directory, watch or instance limit, ...), retries included.
	WatchErrors uint64
	// Degraded is the number of registrations not fully watched now: their
	// events are missing until a retry succeeds.
	Degraded int
	// Pending is the number of (handler, path) events waiting in the
	// coalescing window.
	Pending int
	// Dropped counts waiting events dropped because a resync after an
	// overflow covered them.
	Dropped uint64
}

// Monitor watches the registered trees. Its methods are safe for concurrent
// use; Run processes the events.
type Monitor struct {
	opts   Options
	log    *logrus.Entry
	inject chan error // fed to the event loop as if from fsnotify (tests)

	// newWatcher and addWatch are fsnotify.NewWatcher and Watcher.Add;
	// tests replace them to fail as the inotify limits make them fail.
	newWatcher func() (*fsnotify.Watcher, error)
	addWatch   func(w *fsnotify.Watcher, dir string) error

	mu        sync.Mutex
	regs      map[regKey]Registration
	degraded  map[regKey]*degradation // registrations not fully watched
	running   bool                    // Run is running
	watcher   *fsnotify.Watcher       // nil unless Run is running with an inotify instance
	noWatcher error                   // why watcher is nil while running
	dirs      map[string]bool         // directories watched
	changing  *recent[fileState]      // paths about to be changed by a handler, as they were (Changing)
	maxWatch  int                     // fs.inotify.max_user_watches, 0 if unknown

	overflows, events, handlerErrors, limitErrors, watchErrors, dropped atomic.Uint64
	pending                                                             atomic.Int64 // set by Run after each step
	started                                                             chan struct{}
	startOnce                                                           sync.Once
}

type regKey struct{ path, handler string }

// degradation is why a registration is not fully watched.
type degradation struct {
	err      error
	probe    string // the directory whose watch failed, tried first on retry
	since    time.Time
	failures int
}

// Degradation describes a registration that is not fully watched.
type Degradation struct {
	Registration
	// Err is the last failure to watch it.
	Err error
	// Since is when it was first found degraded.
	Since time.Time
	// Failures counts the failed attempts to watch it since then, the
	// first one included.
	Failures int
}

// New returns a monitor; call Run to start watching.
func New(opts Options) *Monitor {
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	return &Monitor{
		opts:       opts,
		log:        log,
		inject:     make(chan error),
		newWatcher: fsnotify.NewWatcher,
		addWatch:   (*fsnotify.Watcher).Add,
		regs:       map[regKey]Registration{},
		degraded:   map[regKey]*degradation{},
		dirs:       map[string]bool{},
		changing:   newRecent[fileState](changingTTL),
		started:    make(chan struct{}),
	}
}

// Started is closed once Run has established the watches of the stored
// registrations (readiness).
func (m *Monitor) Started() <-chan struct{} { return m.started }

// Register starts watching path for handler and persists the registration.
// A recursive registration is never downgraded by a non-recursive one for
// the same (path, handler). Register does not resync: the caller knows what
// the tree holds.
//
// Register fails only when the registration itself is wrong (no handler, a
// path that is not a directory) or cannot be stored. A tree that cannot be
// watched now (the directory is missing, the inotify watch limit is
// reached) is registered all the same and degraded: Register logs a
// warning and returns nil, and Run retries it and resyncs it once watched.
func (m *Monitor) Register(ctx context.Context, path, handler string, recursive bool) error {
	if handler == "" {
		return fmt.Errorf("register %s: handler name is empty", path)
	}
	path, err := cleanPath(path)
	if err != nil {
		return fmt.Errorf("register %s for %s: %w", path, handler, err)
	}
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		return fmt.Errorf("register %s for %s: not a directory", path, handler)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	k := regKey{path, handler}
	r := Registration{Path: path, Handler: handler, Recursive: recursive || m.regs[k].Recursive}
	if m.opts.Store != nil {
		if err := m.opts.Store.SaveRegistration(ctx, r); err != nil {
			return fmt.Errorf("register %s for %s: save: %w", path, handler, err)
		}
	}
	m.regs[k] = r
	if !m.running {
		return nil // Run watches it
	}
	m.watchRegLocked(r)
	return nil
}

// Unregister stops watching path for handler and deletes the stored
// registration. Unregistering what is not registered is not an error.
func (m *Monitor) Unregister(ctx context.Context, path, handler string) error {
	path, err := cleanPath(path)
	if err != nil {
		return fmt.Errorf("unregister %s for %s: %w", path, handler, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.opts.Store != nil {
		if err := m.opts.Store.DeleteRegistration(ctx, path, handler); err != nil {
			return fmt.Errorf("unregister %s for %s: delete: %w", path, handler, err)
		}
	}
	delete(m.regs, regKey{path, handler})
	delete(m.degraded, regKey{path, handler})
	for dir := range m.dirs {
		if want, _ := m.watchModeLocked(dir); !want {
			m.unwatchLocked(dir)
		}
	}
	return nil
}

// Registrations lists the registrations in memory, by handler then path.
func (m *Monitor) Registrations() []Registration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sortedRegsLocked()
}

// Stats returns the current counters.
func (m *Monitor) Stats() Stats {
	m.mu.Lock()
	watches, degraded, limit := len(m.dirs), len(m.degraded), m.maxWatch
	m.mu.Unlock()
	return Stats{
		Watches:          watches,
		MaxWatches:       limit,
		Overflows:        m.overflows.Load(),
		Events:           m.events.Load(),
		HandlerErrors:    m.handlerErrors.Load(),
		WatchLimitErrors: m.limitErrors.Load(),
		WatchErrors:      m.watchErrors.Load(),
		Degraded:         degraded,
		Pending:          int(m.pending.Load()),
		Dropped:          m.dropped.Load(),
	}
}

// Degraded lists the registrations that are not fully watched now, by
// handler then path.
func (m *Monitor) Degraded() []Degradation {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Degradation
	for _, r := range m.sortedRegsLocked() {
		if d := m.degraded[regKey{r.Path, r.Handler}]; d != nil {
			out = append(out, Degradation{Registration: r, Err: d.err, Since: d.since, Failures: d.failures})
		}
	}
	return out
}

func (m *Monitor) sortedRegsLocked() []Registration {
	out := make([]Registration, 0, len(m.regs))
	for _, r := range m.regs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Registration) int {
		if c := strings.Compare(a.Handler, b.Handler); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out
}

// watchModeLocked reports whether some registration needs dir watched, and
// whether one needs its whole subtree watched.
func (m *Monitor) watchModeLocked(dir string) (want, recursive bool) {
	for _, r := range m.regs {
		if r.Recursive && (r.Path == dir || under(dir, r.Path)) {
			return true, true
		}
		want = want || r.Path == dir
	}
	return want, false
}

// matches reports whether an event on p belongs to registration r.
func (r Registration) matches(p string) bool {
	if r.Recursive {
		return under(p, r.Path)
	}
	return filepath.Dir(p) == r.Path
}

// under reports whether p is strictly below dir.
func under(p, dir string) bool {
	return len(p) > len(dir) && strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

func cleanPath(p string) (string, error) {
	if p == "" {
		return "", errors.New("path is empty")
	}
	return filepath.Abs(p)
}
