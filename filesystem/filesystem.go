// Package filesystem implements the FileSystem handler (cowbird.md §3.3):
// user workspaces, the notebooks symlink, and the hardlinks that expose WPS
// outputs publicly or to their owner, with access taken from the
// secure-data-proxy service in Magpie and expressed in the others mode bits.
//
// Every change goes through one incremental reconcile: it computes the
// desired links and modes of a scope (all, one user, one subtree), compares
// them with the disk by inode and applies only the difference. All file
// operations go through safefs, so a symlink planted by a user is never
// followed.
//
// The files, in reading order: filesystem.go (the handler), events.go (user,
// permission and file events), resync.go (full, per-path and periodic
// resyncs), lock.go (the handler's locks: runs, sections, file events during
// a run), reconcile.go (one run: its state and outcome), scope.go (what a
// run covers: all, one user, one path), users.go (Magpie users, workspaces,
// user link roots, what a run asks Magpie in advance), walk.go (the
// side-by-side walk of a source directory and its mirror: nodes, jobs,
// pool), plan.go (what each entry needs), apply.go (the changes), access.go
// (who may read what), answers.go (Magpie's answers kept across periodic
// reconciles), index.go (directories known in sync), stats.go and
// metrics.go (what runs report).
package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
	"github.com/cowbird-go/cowbird/safefs"
)

// Name is the handler's configuration key.
const Name = "FileSystem"

// trashDir holds archived workspaces, under workspace_dir.
const trashDir = ".trash"

// Magpie is the part of the Magpie client the handler uses; *magpie.Client
// satisfies it.
type Magpie interface {
	Users(ctx context.Context) ([]magpie.User, error)
	User(ctx context.Context, name string) (magpie.User, error)
	GroupUsers(ctx context.Context, group string) ([]string, error)
	ServicesByType(ctx context.Context, typ string) ([]*magpie.Service, error)
	Service(ctx context.Context, name string) (*magpie.Service, error)
	Resource(ctx context.Context, id int) (*magpie.Resource, error)
	ResourcePath(ctx context.Context, id int) ([]*magpie.Resource, error)
	UserPermissions(ctx context.Context, user string, resID int, v magpie.View) ([]magpie.Permission, error)
}

// Watcher is the part of the monitor the handler uses; *monitor.Monitor
// satisfies it.
type Watcher interface {
	// Register watches path for the named handler.
	Register(ctx context.Context, path, handler string, recursive bool) error
	// Changing announces that the handler is about to set path's others
	// bits (a source's mode) to others in the watched tree: that change's
	// event is not reported.
	Changing(path string, others fs.FileMode)
}

// Options tunes a Handler.
type Options struct {
	// Workers bounds the parallel file and Magpie work of a reconcile;
	// 0 means 4 per CPU.
	Workers int
	// IndexStore, if set, keeps the reconcile's index of unchanged
	// directories across restarts.
	IndexStore IndexStore
	// IndexAge is how much older than a reconcile's start a directory's
	// ctime must be for the reconcile to index the directory (see index);
	// 0 means DefaultIndexAge, a negative value disables the index.
	IndexAge time.Duration
	// AdminUID and AdminGID own the directories the handler creates in the
	// link trees (COWBIRD_FILESYSTEM_ADMIN_UID/GID, default 0/0); a refused
	// chown is only a warning, as in the original.
	AdminUID, AdminGID int
	// MagpieConcurrency bounds the permission requests one reconcile has
	// in flight at once; 0 means DefaultMagpieConcurrency.
	MagpieConcurrency int
	// AnswerMaxAge is how old an answer of Magpie, kept from an earlier
	// full reconcile, may be for a full reconcile with
	// ReconcileOptions.ReuseAnswers to use it instead of asking again; 0
	// means DefaultAnswerMaxAge, a negative value keeps no answer.
	AnswerMaxAge time.Duration
}

// DefaultMagpieConcurrency is the default of Options.MagpieConcurrency
// and of the magpie_concurrency key; MaxMagpieConcurrency is the key's
// largest value.
const (
	DefaultMagpieConcurrency = 16
	MaxMagpieConcurrency     = 256
)

// Handler is the FileSystem handler. Its methods are safe for concurrent
// use; changes to the disk are serialized (see lock.go).
type Handler struct {
	cfg      Config
	sessions func() Magpie
	watch    Watcher
	log      *logrus.Entry
	opts     Options
	metrics  *reconcileMetrics

	// after waits between periodic reconciles (time.After; tests replace it).
	after func(time.Duration) <-chan time.Time
	// beforeJobs, if set (by tests), is called between a section and the
	// start of the jobs it spawned, without the disk lock.
	beforeJobs func([]job)

	public   string // public link root, relative to workspace_dir
	reserved map[string]bool

	// runMu serializes reconciles and workspace changes; mu guards the
	// disk: file events hold it exclusively, reconciles shared one section
	// at a time (lock.go).
	runMu sync.Mutex
	mu    sync.RWMutex
	index index   // leaf directories earlier reconciles found in sync
	kept  answers // Magpie's answers of the last full reconciles
	// serviceID is the resource id of the secure-data-proxy service that
	// the last run found (see access.load).
	serviceID atomic.Int64

	// The file events that ran during a shared run, to run again at its end.
	evMu    sync.Mutex
	evTrack bool
	evPaths []string
	evUsers []string

	// fileSess is the Magpie session file events share for fileSessionTTL,
	// so that a burst of new files asks Magpie once, not once per file; a
	// user or permission event drops it.
	fileMu      sync.Mutex
	fileSess    Magpie
	fileSessEnd time.Time

	rootMu sync.Mutex
	wps    *safefs.Root
	ws     *safefs.Root
}

// New checks cfg and returns the handler. sessions returns the Magpie
// client one event or run uses, e.g. a caching copy of a shared client
// (*magpie.Client.WithCache), so that Magpie is asked O(users + routes)
// times per run, not O(files); it is required. watch may be nil (no
// monitoring, e.g. in benchmarks). Relative directories are taken relative
// to the working directory, as the original does.
func New(cfg Config, sessions func() Magpie, watch Watcher, log *logrus.Entry, opts Options) (*Handler, error) {
	if sessions == nil {
		return nil, errors.New("filesystem handler: magpie sessions are required")
	}
	if log == nil {
		return nil, errors.New("filesystem handler: logger is required")
	}
	cfg, public, err := checkConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("filesystem handler config: %w", err)
	}
	first, _, _ := strings.Cut(public, "/")
	return &Handler{
		cfg: cfg, sessions: sessions, watch: watch, log: log, opts: opts.withDefaults(), public: public,
		metrics: newReconcileMetrics(), after: time.After,
		// A user named like these would share their workspace with the
		// public links (cowbird.md §8.4) or the archive.
		reserved: map[string]bool{first: true, trashDir: true},
	}, nil
}

// checkConfig returns cfg with its directories made absolute and its
// defaults filled in, and its public workspace subpath, cleaned; the error
// joins every problem found.
func checkConfig(cfg Config) (Config, string, error) {
	var errs []error
	for _, d := range []struct {
		key string
		val *string
	}{{"workspace_dir", &cfg.WorkspaceDir}, {"jupyterhub_user_data_dir", &cfg.JupyterhubUserDataDir}, {"wps_outputs_dir", &cfg.WPSOutputsDir}} {
		if *d.val == "" {
			errs = append(errs, fmt.Errorf("%s: required", d.key))
			continue
		}
		abs, err := filepath.Abs(*d.val)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", d.key, *d.val, err))
		}
		*d.val = abs
	}
	cfg = cfg.withDefaults()
	for _, n := range []struct{ key, val string }{
		{"notebooks_dir_name", cfg.NotebooksDirName}, {"user_wps_outputs_dir_name", cfg.UserWPSOutputsDirName},
		{"wps_outputs_res_name", cfg.WPSOutputsResName},
	} {
		if err := safefs.ValidName(n.val); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.key, err))
		}
	}
	if cfg.NotebooksDirName == cfg.UserWPSOutputsDirName {
		errs = append(errs, fmt.Errorf("notebooks_dir_name and user_wps_outputs_dir_name: both %q", cfg.NotebooksDirName))
	}
	public := filepath.Clean(cfg.PublicWorkspaceWPSOutputsSubpath)
	if filepath.IsAbs(public) || public == "." || public == ".." || strings.HasPrefix(public, "../") {
		errs = append(errs, fmt.Errorf("public_workspace_wps_outputs_subpath %q: must be a relative path inside workspace_dir", cfg.PublicWorkspaceWPSOutputsSubpath))
	}
	switch cfg.OnUserDeleted {
	case DeleteWorkspace, ArchiveWorkspace:
	default:
		errs = append(errs, fmt.Errorf("on_user_deleted: must be %q or %q, got %q", DeleteWorkspace, ArchiveWorkspace, cfg.OnUserDeleted))
	}
	return cfg, public, errors.Join(errs...)
}

// withDefaults returns o with the defaults New gives Workers,
// MagpieConcurrency and AnswerMaxAge where they are unset.
func (o Options) withDefaults() Options {
	if o.Workers <= 0 {
		o.Workers = 4 * runtime.NumCPU()
	}
	if o.MagpieConcurrency <= 0 {
		o.MagpieConcurrency = DefaultMagpieConcurrency
	}
	if o.AnswerMaxAge == 0 {
		o.AnswerMaxAge = DefaultAnswerMaxAge
	}
	return o
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// Start ensures wps_outputs_dir exists (creating it with its parents, as
// the original does at start-up) and registers a recursive watch on it
// (cowbird.md §3.3.9).
func (h *Handler) Start(ctx context.Context) error {
	dir := h.cfg.WPSOutputsDir
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		h.log.WithField("path", dir).Warn("wps_outputs_dir does not exist: creating it")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("start: create wps_outputs_dir: %w", err)
		}
	}
	if h.watch == nil {
		return nil
	}
	if err := h.watch.Register(ctx, dir, Name, true); err != nil {
		return fmt.Errorf("start: watch %s: %w", dir, err)
	}
	return nil
}

// Close releases the directory descriptors the handler holds.
func (h *Handler) Close() error {
	h.rootMu.Lock()
	defer h.rootMu.Unlock()
	var errs []error
	for _, r := range []**safefs.Root{&h.wps, &h.ws} {
		if *r != nil {
			errs = append(errs, (*r).Close())
			*r = nil
		}
	}
	return errors.Join(errs...)
}

// wpsRoot returns the wps_outputs_dir root, opened on first use.
func (h *Handler) wpsRoot() (*safefs.Root, error) { return h.root(&h.wps, h.cfg.WPSOutputsDir) }

// wsRoot returns the workspace_dir root, opened on first use.
func (h *Handler) wsRoot() (*safefs.Root, error) { return h.root(&h.ws, h.cfg.WorkspaceDir) }

func (h *Handler) root(r **safefs.Root, path string) (*safefs.Root, error) {
	h.rootMu.Lock()
	defer h.rootMu.Unlock()
	if *r == nil {
		root, err := safefs.Open(path)
		if err != nil {
			return nil, err
		}
		*r = root
	}
	return *r, nil
}

// fileSessionTTL bounds how long file events reuse Magpie's answers. A
// permission changed in Magpie without a webhook reaches new files after at
// most this long (and existing files at the next reconcile).
const fileSessionTTL = 2 * time.Second

// fileSession returns the Magpie session shared by file events.
func (h *Handler) fileSession() Magpie {
	h.fileMu.Lock()
	defer h.fileMu.Unlock()
	if h.fileSess == nil || time.Now().After(h.fileSessEnd) {
		h.fileSess, h.fileSessEnd = h.sessions(), time.Now().Add(fileSessionTTL)
	}
	return h.fileSess
}

// dropFileSession makes the next file event ask Magpie afresh.
func (h *Handler) dropFileSession() {
	h.fileMu.Lock()
	h.fileSess = nil
	h.fileMu.Unlock()
}

// checkUser validates a user name taken from an event or from Magpie before
// it becomes a path component.
func (h *Handler) checkUser(name string) error {
	if err := safefs.ValidName(name); err != nil {
		return fmt.Errorf("user name: %w", err)
	}
	if h.reserved[name] {
		return fmt.Errorf("user name %q: %w: reserved in workspace_dir", name, safefs.ErrInvalidName)
	}
	return nil
}

var (
	_ handlers.UserHandler       = (*Handler)(nil)
	_ handlers.PermissionHandler = (*Handler)(nil)
	_ handlers.FileHandler       = (*Handler)(nil)
	_ handlers.Resyncer          = (*Handler)(nil)
	_ handlers.PathResyncer      = (*Handler)(nil)
	_ handlers.Collector         = (*Handler)(nil)
)
