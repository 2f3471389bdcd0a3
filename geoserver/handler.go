package geoserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/safefs"
)

// HandlerName is the Geoserver handler's configuration key, also the name
// its monitor registrations are stored under.
const HandlerName = "Geoserver"

// datastoreDirName is the shapefile directory in each user workspace.
const datastoreDirName = "shapefile_datastore"

// Shapefile extensions (cowbird.md §3.4.1): the main one, the required ones
// and the whole list, optional ones first.
var (
	requiredExts  = []string{".shp", ".prj", ".dbf", ".shx"}
	shapefileExts = append([]string{".atx", ".sbx", ".qix", ".aih", ".ain", ".shp.xml", ".cpg"}, requiredExts...)
)

// errShapefileIncomplete marks a shapefile missing a required companion;
// validate_shapefile retries it.
var errShapefileIncomplete = errors.New("shapefile incomplete")

// Watcher is the part of the monitor the handler uses; *monitor.Monitor
// implements it. The handler never asks the monitor to ignore the changes
// it makes itself: their events come back and are harmless (the handler
// has already brought Magpie in line with them, so handling them again
// changes nothing), and an ignore window would also swallow a change that
// a user makes to the same path meanwhile.
type Watcher interface {
	// Register watches path for handler (the whole tree when recursive).
	Register(ctx context.Context, path, handler string, recursive bool) error
	// Unregister stops watching path for handler.
	Unregister(ctx context.Context, path, handler string) error
}

// Options are the handler's process-wide settings.
type Options struct {
	// AdminUID and AdminGID (COWBIRD_FILESYSTEM_ADMIN_UID/GID, default 0)
	// own the datastore directories and shapefiles.
	AdminUID, AdminGID int
}

// Handler keeps GeoServer, the users' shapefile datastore directories and
// Magpie's geoserver resources in sync (cowbird.md §3.4). It implements
// handlers.UserHandler, handlers.PermissionHandler, handlers.FileHandler and
// handlers.Starter. Its work on one user's workspace is serialized (see
// wsLocks).
type Handler struct {
	dir   string // workspace_dir, absolute and clean
	gs    *Client
	mp    Magpie
	watch Watcher
	jobs  *Jobs
	log   *logrus.Entry
	opts  Options
	locks wsLocks

	rootMu sync.Mutex
	root   *safefs.Root // workspace_dir, opened on first use

	// hook, when set (tests), is called at the named points of the
	// handler's work, to interleave events deterministically.
	hook func(point, detail string)
}

// New returns the Geoserver handler for the user workspaces under
// workspaceDir and binds jobs to run its GeoServer steps through gs.
// workspaceDir need not exist yet: Start creates it, and the handler opens
// it when it first needs it.
func New(workspaceDir string, gs *Client, mp Magpie, watch Watcher, jobs *Jobs, log *logrus.Entry, opts Options) (*Handler, error) {
	var errs []error
	if workspaceDir == "" {
		errs = append(errs, errors.New("workspace_dir is empty"))
	}
	for _, arg := range []struct {
		name    string
		missing bool
	}{{"client", gs == nil}, {"magpie", mp == nil}, {"watcher", watch == nil}, {"jobs", jobs == nil}, {"log", log == nil}} {
		if arg.missing {
			errs = append(errs, fmt.Errorf("%s is nil", arg.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new geoserver handler: %w", err)
	}
	dir, err := filepath.Abs(workspaceDir)
	if err != nil {
		return nil, fmt.Errorf("new geoserver handler: workspace_dir: %w", err)
	}
	h := &Handler{dir: dir, gs: gs, mp: mp, watch: watch, jobs: jobs, log: log, opts: opts}
	jobs.bind(h.runStep)
	return h, nil
}

// Close releases the workspace directory.
func (h *Handler) Close() error {
	h.rootMu.Lock()
	defer h.rootMu.Unlock()
	if h.root == nil {
		return nil
	}
	err := h.root.Close()
	h.root = nil
	return err
}

// wsRoot returns workspace_dir, opened on first use: it may appear after
// start-up (created by the FileSystem handler or the operator).
func (h *Handler) wsRoot() (*safefs.Root, error) {
	h.rootMu.Lock()
	defer h.rootMu.Unlock()
	if h.root == nil {
		r, err := safefs.Open(h.dir)
		if err != nil {
			return nil, fmt.Errorf("workspace_dir: %w", err)
		}
		h.root = r
	}
	return h.root, nil
}

// at calls the test hook, if any.
func (h *Handler) at(point, detail string) {
	if h.hook != nil {
		h.hook(point, detail)
	}
}

// lock takes ws's lock (see wsLocks).
func (h *Handler) lock(ctx context.Context, ws string) (func(), error) {
	unlock, err := h.locks.lock(ctx, ws, func() { h.at("lock-wait", ws) })
	if err != nil {
		return nil, fmt.Errorf("wait for the work on workspace %q: %w", ws, err)
	}
	return unlock, nil
}

// Start implements handlers.Starter. It creates workspace_dir when it does
// not exist yet (the tree the FileSystem handler fills), and watches the
// shapefile datastore of every user workspace found there, so that users
// who existed before (their registrations kept by the Python Cowbird in
// MongoDB, or lost) get their new shapefiles published. It is idempotent,
// and never fails start-up for the state of the disk: what it cannot do is
// logged, and done when the user is next created or at the next start.
func (h *Handler) Start(ctx context.Context) error {
	log := h.log.WithField("workspace_dir", h.dir)
	if _, err := os.Stat(h.dir); errors.Is(err, fs.ErrNotExist) {
		log.Warn("workspace_dir does not exist: creating it")
		if err := os.MkdirAll(h.dir, 0o755); err != nil {
			log.WithError(err).Error("cannot create workspace_dir; the handler will use it once it exists")
			return nil
		}
	}
	root, err := h.wsRoot()
	if err != nil {
		log.WithError(err).Error("cannot open workspace_dir; the handler will use it once it exists")
		return nil
	}
	entries, err := root.ReadDir("")
	if err != nil {
		log.WithError(err).Error("cannot list workspace_dir: no datastore watched at start-up")
		return nil
	}
	watched := 0
	for _, e := range entries {
		if !e.IsDir() || safefs.ValidName(e.Name) != nil || strings.HasPrefix(e.Name, ".") {
			continue // files, symlinks, .trash and the like are no user workspaces
		}
		rel := datastoreRel(e.Name)
		if st, err := root.Lstat(rel); err != nil || !st.IsDir() {
			continue // a user without a datastore: user_created makes it
		}
		if err := h.watch.Register(ctx, filepath.Join(h.dir, rel), HandlerName, true); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.WithError(err).WithField("user", e.Name).Error("cannot watch the shapefile datastore")
			continue
		}
		watched++
	}
	log.WithField("datastores", watched).Info("watching the users' shapefile datastores")
	return nil
}

// HandlerStatus reports the GeoServer jobs queued and failed, for
// GET /handlers/Geoserver.
func (h *Handler) HandlerStatus() any { return h.Status() }

// Name implements handlers.Handler.
func (h *Handler) Name() string { return HandlerName }

// Status returns the state of the handler's GeoServer jobs, failed ones
// included.
func (h *Handler) Status() JobsStatus { return h.jobs.Status() }

// datastoreRel is ws's datastore directory relative to workspace_dir.
func datastoreRel(ws string) string { return ws + "/" + datastoreDirName }

// UserCreated implements handlers.UserHandler: it creates
// {workspace_dir}/{user}/shapefile_datastore with others rwx, queues the
// GeoServer workspace and datastore creation, and watches the directory.
func (h *Handler) UserCreated(ctx context.Context, ev handlers.UserEvent) error {
	ws := ev.UserName
	if err := safefs.ValidName(ws); err != nil {
		return fmt.Errorf("user created: user_name: %w", err)
	}
	unlock, err := h.lock(ctx, ws)
	if err != nil {
		return fmt.Errorf("user created %q: %w", ws, err)
	}
	defer unlock()
	root, err := h.wsRoot()
	if err != nil {
		return fmt.Errorf("user created %q: %w", ws, err)
	}
	if _, err := root.Lstat(ws); err != nil {
		return fmt.Errorf("user created %q: user workspace (FileSystem must run first): %w", ws, err)
	}
	rel := datastoreRel(ws)
	if err := root.MkdirAll(rel, 0o755); err != nil {
		return fmt.Errorf("user created %q: %w", ws, err)
	}
	// The directory is not watched yet: as in the original, this mode
	// change is not an event, and Magpie gets no workspace permission
	// until something happens in the directory.
	if _, err := h.normalize(root, rel, true, true, true); err != nil {
		return fmt.Errorf("user created %q: %w", ws, err)
	}
	err = h.jobs.Enqueue(ctx, Step{Kind: StepCreateWorkspace, Workspace: ws}, Step{Kind: StepCreateDatastore, Workspace: ws})
	if err != nil {
		return fmt.Errorf("user created %q: %w", ws, err)
	}
	if err := h.watch.Register(ctx, filepath.Join(h.dir, rel), HandlerName, true); err != nil {
		return fmt.Errorf("user created %q: %w", ws, err)
	}
	return nil
}

// UserDeleted implements handlers.UserHandler: it queues the GeoServer
// workspace removal, stops watching the datastore directory and deletes the
// user's Magpie workspace resource. Files are left to the FileSystem handler.
func (h *Handler) UserDeleted(ctx context.Context, ev handlers.UserEvent) error {
	ws := ev.UserName
	if err := safefs.ValidName(ws); err != nil {
		return fmt.Errorf("user deleted: user_name: %w", err)
	}
	unlock, err := h.lock(ctx, ws)
	if err != nil {
		return fmt.Errorf("user deleted %q: %w", ws, err)
	}
	defer unlock()
	if err := h.jobs.Enqueue(ctx, Step{Kind: StepRemoveWorkspace, Workspace: ws}); err != nil {
		return fmt.Errorf("user deleted %q: %w", ws, err)
	}
	if err := h.watch.Unregister(ctx, filepath.Join(h.dir, datastoreRel(ws)), HandlerName); err != nil {
		return fmt.Errorf("user deleted %q: %w", ws, err)
	}
	id, found, err := h.workspaceResource(ctx, ws, false)
	if err == nil && found {
		err = h.mp.DeleteResource(ctx, id)
	}
	if err != nil {
		return fmt.Errorf("user deleted %q: magpie workspace resource: %w", ws, err)
	}
	if !found {
		h.log.WithField("user", ws).Debug("no magpie workspace resource to delete")
	}
	return nil
}

// HandleFile implements handlers.FileHandler (cowbird.md §3.4.5-§3.4.7).
//
// The original relies on watchdog, which reports a *modified* event on a
// directory whenever an entry is added to it or removed from it; its
// on_modified(datastore) then sets the Magpie workspace permissions from
// the directory's mode. The monitor reports the entry's own created or
// deleted event instead, so those events, for any entry directly in a
// datastore, do here what the directory's modified event does there, after
// what the entry's event itself does (watchdog queues the directory's
// event second). A modified event on the datastore directory itself (its
// mode changed) is handled too, when the monitor reports one.
func (h *Handler) HandleFile(ctx context.Context, ev handlers.FileEvent) error {
	t, ok := h.classify(ev.Path)
	if !ok {
		return nil
	}
	unlock, err := h.lock(ctx, t.ws)
	if err != nil {
		return fmt.Errorf("%s %s: %w", ev.Name(), ev.Path, err)
	}
	defer unlock()
	if err := h.handleFile(ctx, ev, t); err != nil {
		return fmt.Errorf("%s %s: %w", ev.Name(), ev.Path, err)
	}
	return nil
}

func (h *Handler) handleFile(ctx context.Context, ev handlers.FileEvent, t target) error {
	ws := t.ws
	root, err := h.wsRoot()
	if err != nil {
		return err
	}
	if t.entry == "" { // the datastore directory itself
		switch ev.Op {
		case handlers.FileModified:
			if isDir(root, datastoreRel(ws)) {
				return h.settle(ctx, ws, &changes{dir: true})
			}
		case handlers.FileDeleted:
			if isDir(root, datastoreRel(ws)) {
				h.log.WithFields(logrus.Fields{"path": ev.Path, "event": ev.Name()}).
					Warn("deleting a shapefile datastore directory is not supported; " +
						"the GeoServer workspace and Magpie resources remain until the user is deleted")
			}
		}
		return nil
	}
	if layer, ok := layerOf(t.entry); ok {
		switch ev.Op {
		case handlers.FileCreated:
			err = h.shapefileCreated(ctx, root, ws, layer)
		case handlers.FileModified:
			if !h.irregular(root, ws, layer) {
				err = h.layerFromFiles(ctx, ws, layer)
			}
		case handlers.FileDeleted:
			err = h.shapefileDeleted(ctx, root, ws, layer)
		}
		if err != nil {
			return err
		}
	}
	if ev.Op != handlers.FileModified && isDir(root, datastoreRel(ws)) {
		// The datastore directory's own modified event, in watchdog's terms.
		return h.settle(ctx, ws, &changes{dir: true})
	}
	return nil
}

// target is a path the handler cares about: the datastore directory of
// workspace ws (entry empty) or an entry directly in it.
type target struct {
	ws, entry string
}

// classify parses path as {workspace_dir}/{ws}/shapefile_datastore or
// {workspace_dir}/{ws}/shapefile_datastore/{entry}; ok is false for
// anything else (deeper paths included), which the handler ignores.
func (h *Handler) classify(path string) (t target, ok bool) {
	rel, err := filepath.Rel(h.dir, filepath.Clean(path))
	if err != nil {
		return target{}, false
	}
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[1] != datastoreDirName || safefs.ValidName(parts[0]) != nil {
		return target{}, false
	}
	if len(parts) == 3 {
		if safefs.ValidName(parts[2]) != nil {
			return target{}, false
		}
		return target{ws: parts[0], entry: parts[2]}, true
	}
	return target{ws: parts[0]}, true
}

// layerOf returns the layer of a datastore entry named {layer}.shp. A
// layer name may hold dots (a.b.c.shp is layer a.b.c).
func layerOf(entry string) (string, bool) {
	if strings.HasSuffix(entry, ".shp") && len(entry) > len(".shp") {
		return strings.TrimSuffix(entry, ".shp"), true
	}
	return "", false
}

func isDir(root *safefs.Root, rel string) bool {
	st, err := root.Lstat(rel)
	return err == nil && st.IsDir()
}

// shapefileCreated queues the validation and publication of layer and sets
// its Magpie layer permissions from its files. A .shp that is not a regular
// file (a symlink, a directory) is skipped with a warning: GeoServer would
// follow a symlink out of the datastore.
func (h *Handler) shapefileCreated(ctx context.Context, root *safefs.Root, ws, layer string) error {
	if h.irregular(root, ws, layer) {
		return nil
	}
	err := h.jobs.Enqueue(ctx, Step{Kind: StepValidateShapefile, Workspace: ws, Shapefile: layer},
		Step{Kind: StepPublishShapefile, Workspace: ws, Shapefile: layer})
	if err != nil {
		return err
	}
	return h.layerFromFiles(ctx, ws, layer)
}

// irregular reports, with a warning, a .shp of layer that is there but is
// not a regular file (a symlink, a directory): it is neither published nor
// given Magpie permissions.
func (h *Handler) irregular(root *safefs.Root, ws, layer string) bool {
	st, err := root.Lstat(mainFile(ws, layer))
	if err != nil || st.Mode.IsRegular() {
		return false
	}
	h.log.WithFields(logrus.Fields{"path": filepath.Join(h.dir, mainFile(ws, layer)), "mode": st.Mode.String()}).
		Warn("shapefile is not a regular file: not published")
	return true
}

// shapefileDeleted queues the layer's removal from GeoServer, deletes the
// remaining companion files and the Magpie layer resource.
func (h *Handler) shapefileDeleted(ctx context.Context, root *safefs.Root, ws, layer string) error {
	if err := h.jobs.Enqueue(ctx, Step{Kind: StepRemoveShapefile, Workspace: ws, Shapefile: layer}); err != nil {
		return err
	}
	for _, rel := range shapefileFiles(ws, layer) {
		if err := root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove companion: %w", err)
		}
	}
	id, found, err := h.layerResource(ctx, ws, layer, false)
	if err == nil && found {
		err = h.mp.DeleteResource(ctx, id)
	}
	if err != nil {
		return fmt.Errorf("magpie layer resource: %w", err)
	}
	return nil
}

// shapefileFiles lists the files of shapefile layer of ws, relative to
// workspace_dir, optional extensions first.
func shapefileFiles(ws, layer string) []string {
	out := make([]string, len(shapefileExts))
	for i, ext := range shapefileExts {
		out[i] = datastoreRel(ws) + "/" + layer + ext
	}
	return out
}

// mainFile is the .shp file of layer, relative to workspace_dir.
func mainFile(ws, layer string) string { return datastoreRel(ws) + "/" + layer + ".shp" }

// runStep executes one job step; Jobs calls it.
func (h *Handler) runStep(ctx context.Context, s Step) error {
	switch s.Kind {
	case StepCreateWorkspace:
		return h.gs.CreateWorkspace(ctx, s.Workspace)
	case StepCreateDatastore:
		return h.gs.CreateDatastore(ctx, s.Workspace)
	case StepRemoveWorkspace:
		return h.tolerate(h.gs.RemoveWorkspace(ctx, s.Workspace), ErrNotFound, s)
	case StepValidateShapefile:
		return h.validateShapefile(s.Workspace, s.Shapefile)
	case StepPublishShapefile:
		return h.tolerate(h.gs.PublishShapefile(ctx, s.Workspace, s.Shapefile), ErrExists, s)
	case StepRemoveShapefile:
		return h.tolerate(h.gs.RemoveShapefile(ctx, s.Workspace, s.Shapefile), ErrNotFound, s)
	}
	return fmt.Errorf("run step: unknown kind %q", s.Kind)
}

// tolerate turns err into success when it matches target, the state the
// step wanted already being there (a replayed step converges).
func (h *Handler) tolerate(err, target error, s Step) error {
	if err != nil && errors.Is(err, target) {
		h.log.WithError(err).WithFields(logrus.Fields{"step": s.Kind, "user": s.Workspace}).Warn("already done")
		return nil
	}
	return err
}

// validateShapefile requires the .shp, .prj, .dbf and .shx files of layer.
func (h *Handler) validateShapefile(ws, layer string) error {
	root, err := h.wsRoot()
	if err != nil {
		return fmt.Errorf("validate shapefile %q of %q: %w", layer, ws, err)
	}
	var missing []string
	for _, ext := range requiredExts {
		// A symlink is refused too: GeoServer would read what it points at.
		if st, err := root.Lstat(datastoreRel(ws) + "/" + layer + ext); err != nil || !st.Mode.IsRegular() {
			missing = append(missing, layer+ext)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("validate shapefile %q of %q: missing or not a regular file: %s: %w",
			layer, ws, strings.Join(missing, ", "), errShapefileIncomplete)
	}
	return nil
}

// normalize gives rel the others bits r, w, x and the admin ownership,
// changing only what differs, and reports whether the others bits changed.
// A permission error is a warning, as in the original.
func (h *Handler) normalize(root *safefs.Root, rel string, r, w, x bool) (changed bool, err error) {
	st, err := root.Lstat(rel)
	if err != nil {
		return false, err
	}
	var want fs.FileMode
	if r {
		want |= 0o4
	}
	if w {
		want |= 0o2
	}
	if x {
		want |= 0o1
	}
	path := filepath.Join(h.dir, rel)
	if st.Mode.Perm()&0o7 != want {
		h.at("chmod", rel)
		changed, err = root.SetOthers(rel, r, w, x)
		if err != nil {
			if !errors.Is(err, fs.ErrPermission) {
				return false, err
			}
			h.log.WithError(err).WithField("path", path).Warn("cannot set others permissions")
		}
	}
	if int(st.Uid) != h.opts.AdminUID || int(st.Gid) != h.opts.AdminGID {
		if _, err := root.Chown(rel, h.opts.AdminUID, h.opts.AdminGID); err != nil {
			if !errors.Is(err, fs.ErrPermission) {
				return changed, err
			}
			h.log.WithError(err).WithField("path", path).Warn("cannot set default ownership")
		}
	}
	return changed, nil
}

// Interface guards.
var (
	_ handlers.UserHandler       = (*Handler)(nil)
	_ handlers.PermissionHandler = (*Handler)(nil)
	_ handlers.FileHandler       = (*Handler)(nil)
	_ handlers.Starter           = (*Handler)(nil)
)
