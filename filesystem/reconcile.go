package filesystem

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/safefs"
)

// ReconcileOptions tunes one reconcile.
type ReconcileOptions struct {
	// DryRun computes the difference and returns it in Stats.Changes
	// without changing anything.
	DryRun bool
	// ReuseAnswers lets a full reconcile (the zero Scope) take who may read
	// what from the answers Magpie gave earlier full reconciles, instead of
	// asking again, for the users no user or permission event concerned
	// since, and for at most Options.AnswerMaxAge: for the periodic
	// reconcile. Admin resyncs leave it unset: they ask Magpie afresh (and
	// renew the answers kept). Other scopes always ask afresh.
	ReuseAnswers bool

	// users, when set, are Magpie's users by id, already known to the
	// caller (a permission event reconciling each member's outputs builds
	// the map once, not once per member).
	users map[int]string
	// access, when set, is shared with the caller and its other runs (a
	// group's permission event asks about all its members in advance):
	// the run neither creates nor waits for it.
	access *access
}

// Reconcile brings the links, modes and notebooks symlinks of scope to the
// desired state, applying only the difference, and reports what it did.
// Individual failed changes do not stop the run; they are counted and the
// first is returned in the error. Magpie errors stop the run and are
// returned wrapped (handlers.IsTransient tells whether to retry). A run
// that is not a dry run is counted in the metrics of Collectors.
//
// Reconciles, user and permission events run one at a time; file events
// run between the sections of a reconcile (lock.go).
func (h *Handler) Reconcile(ctx context.Context, scope Scope, opts ReconcileOptions) (Stats, error) {
	h.runMu.Lock()
	defer h.runMu.Unlock()
	if !opts.DryRun {
		h.metrics.running.Inc()
		defer h.metrics.running.Dec()
	}
	st, err := h.reconcile(ctx, h.sessions(), scope, opts, shared)
	if !opts.DryRun {
		h.metrics.observe(st, err)
	}
	return st, err
}

// reconcile is Reconcile with the Magpie session mp, for a caller holding
// h.runMu (mode shared) or h.mu (mode exclusive).
//
// It walks each source directory and the link directory that mirrors it
// side by side, from their open descriptors, and compares their sorted
// listings by name and inode: the cost is one listing per directory and
// one lstat per user file (whose others bits are checked), with no map of
// the whole tree. Directories are handed to a bounded pool of goroutines
// (walk.go); a link directory that ends up mirroring nothing is removed
// once all of its subdirectories are done. What each entry needs is
// decided in plan.go and done in apply.go. Magpie is asked concurrently,
// in advance where the users' directories are known (users.go).
//
// The first fatal error (from Magpie) cancels the run's context, which
// every blocking step checks, and is read back here as its cause.
func (h *Handler) reconcile(ctx context.Context, mp Magpie, scope Scope, opts ReconcileOptions, mode lockMode) (Stats, error) {
	start := time.Now()
	track := mode == shared && !opts.DryRun
	if track {
		h.trackFileEvents()
	}
	h.index.load(ctx, h.opts.IndexStore, h.log)
	defer h.index.save(context.WithoutCancel(ctx), h.opts.IndexStore, h.log)
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	r, err := h.newRun(mp, scope, opts, mode, stop)
	if err != nil {
		if track {
			h.untrackFileEvents()
		}
		return Stats{}, fmt.Errorf("reconcile %s: %w", scope, err)
	}
	if r.wps == nil {
		h.log.WithField("path", h.cfg.WPSOutputsDir).Warn("wps_outputs_dir does not exist: no WPS outputs to link")
	}
	err = r.cover(runCtx, scope)
	r.pool.wait()
	if err == nil && runCtx.Err() != nil {
		err = context.Cause(runCtx)
	}
	if err == nil {
		if r.full {
			h.index.sweep(r.gen)
		}
		for _, u := range r.notebookUsers {
			_ = r.locked(runCtx, func(*section) error {
				r.notebooks(u)
				return nil
			})
		}
	}
	r.finish()
	if track {
		if terr := r.replayFileEvents(ctx); err == nil {
			err = terr
		}
	}
	return r.report(scope, time.Since(start), err)
}

// replayFileEvents stops tracking file and user_created events and
// reconciles again the paths and users of those that ran during the run
// (see lock.go), each as its event does, under h.mu held exclusively (so
// other file events run between them); their figures are added to the
// run's.
func (r *run) replayFileEvents(ctx context.Context) error {
	h := r.handler
	paths, users := h.untrackFileEvents()
	scopes := make([]Scope, 0, len(paths)+len(users))
	for _, p := range paths {
		scopes = append(scopes, Scope{Path: p})
	}
	for _, u := range users {
		scopes = append(scopes, Scope{User: u})
	}
	var errs []error
	for _, scope := range scopes {
		h.mu.Lock()
		st, err := h.reconcile(ctx, r.mp, scope, ReconcileOptions{}, exclusive)
		h.mu.Unlock()
		st.Duration = 0
		r.mu.Lock()
		r.stats.Add(st)
		r.mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("event during the run: %w", err))
		}
	}
	return errors.Join(errs...)
}

// run is the state of one reconcile.
type run struct {
	handler     *Handler
	mp          Magpie
	access      *access // who may read which user file
	ownAccess   bool    // access is the run's own: finish waits for its requests
	dry         bool
	mode        lockMode
	wps         *safefs.Root // nil when wps_outputs_dir does not exist
	ws          *safefs.Root
	log         *logrus.Entry
	full        bool   // the run covers everything
	gen         uint64 // index generation
	indexBefore int64  // ctimes before this (ns) are old enough to be indexed
	pool        *pool  // the goroutines that run the directory jobs

	// Work beside the walk (the users, the service, answers asked in
	// advance): bgStop ends its context when the run does.
	bg     sync.WaitGroup
	bgStop context.CancelFunc

	usersOnce     sync.Once
	usersErr      error // after usersOnce
	userMu        sync.Mutex
	users         map[int]string   // Magpie user id -> name, loaded on demand
	wsOK          map[string]bool  // user -> workspace is a real directory
	warned        map[string]bool  // warnings already logged
	roots         map[string]*node // user -> their link root
	claimed       map[string]bool  // "<user>/<bird>": link directories this run mirrors
	notebookUsers []string         // users whose notebooks symlink to check

	mu       sync.Mutex
	stats    Stats
	firstErr error
}

// newRun prepares a run; stop cancels the run's context ctx with a fatal
// error.
func (h *Handler) newRun(mp Magpie, scope Scope, opts ReconcileOptions, mode lockMode, stop context.CancelCauseFunc) (*run, error) {
	ws, err := h.wsRoot()
	if err != nil {
		return nil, fmt.Errorf("workspace_dir: %w", err)
	}
	wps, err := h.wpsRoot()
	if errors.Is(err, fs.ErrNotExist) {
		wps, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wps_outputs_dir: %w", err)
	}
	full := scope == Scope{}
	a := opts.access
	if a == nil {
		a = h.newAccess(mp)
		if full && h.opts.AnswerMaxAge > 0 {
			a.kept = &h.kept
			if opts.ReuseAnswers {
				a.reuse = h.opts.AnswerMaxAge
			}
		}
	}
	r := &run{
		handler: h, mp: mp, dry: opts.DryRun, mode: mode, wps: wps, ws: ws, log: h.log,
		full: full, gen: h.index.begin(full), indexBefore: h.indexedBefore(),
		access: a, ownAccess: opts.access == nil, pool: newPool(h.opts.Workers, stop),
		wsOK: map[string]bool{}, warned: map[string]bool{}, roots: map[string]*node{}, claimed: map[string]bool{},
	}
	if opts.users != nil {
		r.knowUsers(opts.users)
	}
	r.bgStop = func() {} // until work beside the walk starts
	return r, nil
}

// finish ends the work beside the walk and waits for it.
func (r *run) finish() {
	r.bgStop()
	r.bg.Wait()
	if r.ownAccess {
		r.access.wait()
	}
}

// newAccess returns the access of a run asking Magpie through mp, with
// at most Options.MagpieConcurrency requests in flight.
func (h *Handler) newAccess(mp Magpie) *access {
	a := newAccess(mp, h.log, h.cfg.SecureDataProxyName, h.cfg.WPSOutputsResName)
	a.sem = make(chan struct{}, h.opts.MagpieConcurrency)
	a.serviceID = &h.serviceID
	return a
}

// indexedBefore is the ctime (ns) before which a run may index a
// directory; 0 when the index is disabled.
func (h *Handler) indexedBefore() int64 {
	switch age := h.opts.IndexAge; {
	case age < 0:
		return 0
	case age == 0:
		age = DefaultIndexAge
		fallthrough
	default:
		return time.Now().Add(-age).UnixNano()
	}
}

// report returns the run's figures, its changes sorted, and its error: the
// fatal one, else the first failed change.
func (r *run) report(scope Scope, took time.Duration, err error) (Stats, error) {
	slices.SortFunc(r.stats.Changes, func(a, b Change) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), strings.Compare(string(a.Op), string(b.Op)))
	})
	r.stats.Duration = took
	if err != nil {
		return r.stats, fmt.Errorf("reconcile %s: %w", scope, err)
	}
	if r.firstErr != nil {
		return r.stats, fmt.Errorf("reconcile %s: %d changes failed, first: %w", scope, r.stats.Failed, r.firstErr)
	}
	return r.stats, nil
}

// wsPath is the absolute path of a path relative to workspace_dir, for reports.
func (r *run) wsPath(rel string) string { return filepath.Join(r.handler.cfg.WorkspaceDir, rel) }

// srcPath is the absolute path of a path relative to wps_outputs_dir.
func (r *run) srcPath(rel string) string { return filepath.Join(r.handler.cfg.WPSOutputsDir, rel) }
