package geoserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

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
// implements it.
type Watcher interface {
	// Register watches path for handler (the whole tree when recursive).
	Register(ctx context.Context, path, handler string, recursive bool) error
	// Unregister stops watching path for handler.
	Unregister(ctx context.Context, path, handler string) error
	// Ignore drops the events with op on path for a short while: the
	// handler calls it before changing a watched file itself.
	Ignore(path string, op handlers.FileOp)
}

// Options are the handler's process-wide settings.
type Options struct {
	// AdminUID and AdminGID (COWBIRD_FILESYSTEM_ADMIN_UID/GID, default 0)
	// own the datastore directories and shapefiles.
	AdminUID, AdminGID int
}

// Handler keeps GeoServer, the users' shapefile datastore directories and
// Magpie's geoserver resources in sync (cowbird.md §3.4). It implements
// handlers.UserHandler, handlers.PermissionHandler and handlers.FileHandler.
type Handler struct {
	dir   string // workspace_dir, absolute and clean
	root  *safefs.Root
	gs    *Client
	mp    Magpie
	watch Watcher
	jobs  *Jobs
	log   *logrus.Entry
	opts  Options
}

// New returns the Geoserver handler for the user workspaces under
// workspaceDir, which must exist, and binds jobs to run its GeoServer steps
// through gs.
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
	root, err := safefs.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("new geoserver handler: workspace_dir: %w", err)
	}
	h := &Handler{dir: dir, root: root, gs: gs, mp: mp, watch: watch, jobs: jobs, log: log, opts: opts}
	jobs.bind(h.runStep)
	return h, nil
}

// Close releases the workspace directory.
func (h *Handler) Close() error { return h.root.Close() }

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
	if _, err := h.root.Lstat(ws); err != nil {
		return fmt.Errorf("user created %q: user workspace (FileSystem must run first): %w", ws, err)
	}
	rel := datastoreRel(ws)
	if err := h.root.MkdirAll(rel, 0o755); err != nil {
		return fmt.Errorf("user created %q: %w", ws, err)
	}
	if err := h.normalize(rel, true, true, true); err != nil {
		return fmt.Errorf("user created %q: %w", ws, err)
	}
	err := h.jobs.Enqueue(ctx, Step{Kind: StepCreateWorkspace, Workspace: ws}, Step{Kind: StepCreateDatastore, Workspace: ws})
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
func (h *Handler) HandleFile(ctx context.Context, ev handlers.FileEvent) error {
	ws, layer, isDatastore, ok := h.classify(ev.Path)
	if !ok {
		return nil
	}
	log := h.log.WithFields(logrus.Fields{"path": ev.Path, "event": ev.Name()})
	var err error
	switch {
	case isDatastore && ev.Op == handlers.FileModified:
		if h.isDir(datastoreRel(ws)) {
			err = h.updateWorkspacePermissions(ctx, ws)
		}
	case isDatastore && ev.Op == handlers.FileDeleted:
		if h.isDir(datastoreRel(ws)) {
			log.Warn("deleting a shapefile datastore directory is not supported; " +
				"the GeoServer workspace and Magpie resources remain until the user is deleted")
		}
	case isDatastore:
	case ev.Op == handlers.FileCreated:
		err = h.jobs.Enqueue(ctx, Step{Kind: StepValidateShapefile, Workspace: ws, Shapefile: layer},
			Step{Kind: StepPublishShapefile, Workspace: ws, Shapefile: layer})
		if err == nil {
			err = h.updateLayerPermissions(ctx, ws, layer)
		}
	case ev.Op == handlers.FileModified:
		err = h.updateLayerPermissions(ctx, ws, layer)
	case ev.Op == handlers.FileDeleted:
		err = h.shapefileDeleted(ctx, ws, layer)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", ev.Name(), ev.Path, err)
	}
	return nil
}

// classify parses path as {workspace_dir}/{ws}/shapefile_datastore
// (isDatastore) or {workspace_dir}/{ws}/shapefile_datastore/{layer}.shp;
// ok is false for anything else, which the handler ignores. A layer name
// may hold dots (a.b.c.shp is layer a.b.c).
func (h *Handler) classify(path string) (ws, layer string, isDatastore, ok bool) {
	rel, err := filepath.Rel(h.dir, filepath.Clean(path))
	if err != nil {
		return "", "", false, false
	}
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) < 2 || parts[1] != datastoreDirName || safefs.ValidName(parts[0]) != nil {
		return "", "", false, false
	}
	switch {
	case len(parts) == 2:
		return parts[0], "", true, true
	case len(parts) == 3 && strings.HasSuffix(parts[2], ".shp") && len(parts[2]) > len(".shp"):
		return parts[0], strings.TrimSuffix(parts[2], ".shp"), false, true
	}
	return "", "", false, false
}

func (h *Handler) isDir(rel string) bool {
	st, err := h.root.Lstat(rel)
	return err == nil && st.IsDir()
}

// shapefileDeleted queues the layer's removal from GeoServer, deletes the
// remaining companion files and the Magpie layer resource.
func (h *Handler) shapefileDeleted(ctx context.Context, ws, layer string) error {
	if err := h.jobs.Enqueue(ctx, Step{Kind: StepRemoveShapefile, Workspace: ws, Shapefile: layer}); err != nil {
		return err
	}
	for _, rel := range shapefileFiles(ws, layer) {
		if err := h.root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
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
	var missing []string
	for _, ext := range requiredExts {
		if _, err := h.root.Lstat(datastoreRel(ws) + "/" + layer + ext); err != nil {
			missing = append(missing, layer+ext)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("validate shapefile %q of %q: missing %s: %w", layer, ws, strings.Join(missing, ", "), errShapefileIncomplete)
	}
	return nil
}

// normalize gives rel the others bits r, w, x and the admin ownership,
// changing only what differs and telling the watcher first (cowbird.md
// §3.2). A permission error is a warning, as in the original.
func (h *Handler) normalize(rel string, r, w, x bool) error {
	st, err := h.root.Lstat(rel)
	if err != nil {
		return err
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
		h.watch.Ignore(path, handlers.FileModified)
		if _, err := h.root.SetOthers(rel, r, w, x); err != nil {
			if !errors.Is(err, fs.ErrPermission) {
				return err
			}
			h.log.WithError(err).WithField("path", path).Warn("cannot set others permissions")
		}
	}
	if int(st.Uid) != h.opts.AdminUID || int(st.Gid) != h.opts.AdminGID {
		h.watch.Ignore(path, handlers.FileModified)
		if _, err := h.root.Chown(rel, h.opts.AdminUID, h.opts.AdminGID); err != nil {
			if !errors.Is(err, fs.ErrPermission) {
				return err
			}
			h.log.WithError(err).WithField("path", path).Warn("cannot set default ownership")
		}
	}
	return nil
}

// Interface guards.
var (
	_ handlers.UserHandler       = (*Handler)(nil)
	_ handlers.PermissionHandler = (*Handler)(nil)
	_ handlers.FileHandler       = (*Handler)(nil)
)
