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
}

// Reconcile brings the links, modes and notebooks symlinks of scope to the
// desired state, applying only the difference, and reports what it did.
// Individual failed changes do not stop the run; they are counted and the
// first is returned in the error. Magpie errors stop the run and are
// returned wrapped (handlers.IsTransient tells whether to retry). A run
// that is not a dry run is counted in the metrics of Collectors.
func (h *Handler) Reconcile(ctx context.Context, scope Scope, opts ReconcileOptions) (Stats, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, err := h.reconcileLocked(ctx, h.sessions(), scope, opts)
	if !opts.DryRun {
		h.metrics.observe(st, err)
	}
	return st, err
}

// reconcileLocked is Reconcile with the Magpie session mp, for a caller
// holding h.mu.
//
// It walks each source directory and the link directory that mirrors it
// side by side, from their open descriptors, and compares their sorted
// listings by name and inode: the cost is one listing per directory and
// one lstat per user file (whose others bits are checked), with no map of
// the whole tree. Directories are handed to a bounded pool of goroutines
// (walk.go); a link directory that ends up mirroring nothing is removed
// once all of its subdirectories are done. What each entry needs is
// decided in plan.go and done in apply.go.
//
// The first fatal error (from Magpie) cancels the run's context, which
// every blocking step checks, and is read back here as its cause.
func (h *Handler) reconcileLocked(ctx context.Context, mp Magpie, scope Scope, opts ReconcileOptions) (Stats, error) {
	start := time.Now()
	h.index.load(ctx, h.opts.IndexStore, h.log)
	defer h.index.save(context.WithoutCancel(ctx), h.opts.IndexStore, h.log)
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	r, err := h.newRun(mp, opts.DryRun, scope == Scope{}, stop)
	if err != nil {
		return Stats{}, fmt.Errorf("reconcile %s: %w", scope, err)
	}
	if r.wps == nil {
		h.log.WithField("path", h.cfg.WPSOutputsDir).Warn("wps_outputs_dir does not exist: no WPS outputs to link")
	}
	err = r.cover(ctx, scope)
	r.pool.wait()
	if err == nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if err == nil {
		if r.full {
			h.index.sweep(r.gen)
		}
		for _, u := range r.notebookUsers {
			r.notebooks(u)
		}
	}
	return r.report(scope, time.Since(start), err)
}

// run is the state of one reconcile.
type run struct {
	handler     *Handler
	mp          Magpie
	access      *access // who may read which user file
	dry         bool
	wps         *safefs.Root // nil when wps_outputs_dir does not exist
	ws          *safefs.Root
	log         *logrus.Entry
	full        bool   // the run covers everything
	gen         uint64 // index generation
	indexBefore int64  // ctimes before this (ns) are old enough to be indexed
	pool        *pool  // the goroutines that run the directory jobs

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

// newRun prepares a run; stop cancels the run's context with a fatal error.
func (h *Handler) newRun(mp Magpie, dry, full bool, stop context.CancelCauseFunc) (*run, error) {
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
	return &run{
		handler: h, mp: mp, dry: dry, wps: wps, ws: ws, log: h.log,
		full: full, gen: h.index.begin(full), indexBefore: h.indexedBefore(),
		access: newAccess(mp, h.log, h.cfg.SecureDataProxyName, h.cfg.WPSOutputsResName),
		pool:   newPool(h.opts.Workers, stop),
		wsOK:   map[string]bool{}, warned: map[string]bool{}, roots: map[string]*node{}, claimed: map[string]bool{},
	}, nil
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
