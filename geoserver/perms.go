package geoserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
	"github.com/cowbird-go/cowbird/safefs"
)

// Magpie is the part of the Magpie client the handler uses; *magpie.Client
// implements it.
type Magpie interface {
	ServicesByType(ctx context.Context, typ string) ([]*magpie.Service, error)
	Resource(ctx context.Context, id int) (*magpie.Resource, error)
	CreateResource(ctx context.Context, parentID int, name, typ string) (int, error)
	DeleteResource(ctx context.Context, id int) error
	UserPermissions(ctx context.Context, user string, resID int, v magpie.View) ([]magpie.Permission, error)
	SetUserPermission(ctx context.Context, user string, resID int, p magpie.Permission) (bool, error)
	DeleteUserPermission(ctx context.Context, user string, resID int, name string) error
}

// ErrNoGeoserverService reports that Magpie has no service of type
// geoserver, where the handler keeps its resources.
var ErrNoGeoserverService = errors.New("magpie has no service of type geoserver")

// Magpie resource and scope names.
const (
	serviceType    = "geoserver"
	typeWorkspace  = "workspace"
	typeLayer      = "layer"
	scopeMatch     = "match"
	scopeRecursive = "recursive"
	accessAllow    = "allow"
	accessDeny     = "deny"
)

// Permission categories (cowbird.md §3.4.1): WFS+WMS read, WFS write.
var (
	readableNames = []string{"describefeaturetype", "describestoredqueries", "getcapabilities", "getfeature",
		"getgmlobject", "getpropertyvalue", "liststoredqueries", "describelayer", "getfeatureinfo",
		"getlegendgraphic", "getmap"}
	writableNames = []string{"createstoredquery", "dropstoredquery", "getfeaturewithlock", "lockfeature", "transaction"}
)

// services returns Magpie's geoserver services with their resource trees.
func (h *Handler) services(ctx context.Context) ([]*magpie.Resource, error) {
	svcs, err := h.mp.ServicesByType(ctx, serviceType)
	if err != nil {
		return nil, err
	}
	if len(svcs) == 0 {
		return nil, ErrNoGeoserverService
	}
	trees := make([]*magpie.Resource, len(svcs))
	for i, s := range svcs {
		if trees[i], err = h.mp.Resource(ctx, s.ResourceID); err != nil {
			return nil, err
		}
	}
	return trees, nil
}

// workspaceResource finds ws's workspace resource among the geoserver
// services' children (the last match wins), creating it under the first
// service when create is set.
func (h *Handler) workspaceResource(ctx context.Context, ws string, create bool) (id int, found bool, err error) {
	trees, err := h.services(ctx)
	if err != nil {
		return 0, false, err
	}
	for _, t := range trees {
		if c := t.Child(ws); c != nil {
			id, found = c.ID, true
		}
	}
	if found || !create {
		return id, found, nil
	}
	id, err = h.mp.CreateResource(ctx, trees[0].ID, ws, typeWorkspace)
	return id, err == nil, err
}

// layerResource finds layer in ws's workspace resource, creating what is
// missing when create is set (cowbird.md §3.5.3 get_geoserver_layer_res_id).
func (h *Handler) layerResource(ctx context.Context, ws, layer string, create bool) (id int, found bool, err error) {
	trees, err := h.services(ctx)
	if err != nil {
		return 0, false, err
	}
	wsID := 0
	for _, t := range trees {
		w := t.Child(ws)
		if w == nil {
			continue
		}
		wsID = w.ID
		if l := w.Child(layer); l != nil {
			return l.ID, true, nil
		}
	}
	if !create {
		return 0, false, nil
	}
	if wsID == 0 {
		if wsID, err = h.mp.CreateResource(ctx, trees[0].ID, ws, typeWorkspace); err != nil {
			return 0, false, err
		}
	}
	id, err = h.mp.CreateResource(ctx, wsID, layer, typeLayer)
	return id, err == nil, err
}

// Two mappings keep the files and Magpie in agreement (cowbird.md §3.4.8,
// §3.4.9):
//
//   - files -> Magpie (layerFromFiles, workspaceFromDir): the others bits of
//     a layer's .shp, or of the datastore directory, set the user's Magpie
//     permissions of the whole category: readable -> every read permission
//     allowed, else denied; the same for write.
//   - Magpie -> files (applyResource): a layer's files, or the datastore
//     directory, are readable by others when any read permission resolves
//     to allow for the user, and the same for write.
//
// In the original, a file whose mode the second mapping changed comes back
// from watchdog as a modified event, and the first mapping then normalizes
// Magpie to the whole category (granting getmap ends with every read
// permission allowed). settle does that explicitly, right after the change,
// under the workspace's lock: it does not depend on the monitor reporting
// the handler's own change, and the event that the monitor does report
// later finds Magpie already normalized and changes nothing.

// changes records what applyResource changed: the datastore directory's
// others bits, and the layers whose .shp others bits changed.
type changes struct {
	dir    bool
	layers map[string]bool
}

func (c *changes) layer(name string) {
	if c.layers == nil {
		c.layers = map[string]bool{}
	}
	c.layers[name] = true
}

// maxSettleRounds bounds the directory round trips of settle; two are
// enough (the second finds Magpie normalized), the bound guards the loop.
const maxSettleRounds = 4

// settle runs the files -> Magpie mapping for what changed on disk: the
// workspace permissions from the datastore directory when ch.dir, then the
// layer permissions of every changed layer. A workspace normalization that
// wrote to Magpie changes what the workspace's layers (and the directory)
// resolve to, so their files follow Magpie again before the layers are
// normalized; that is what the original reaches through Magpie's webhooks
// for the permissions it writes.
func (h *Handler) settle(ctx context.Context, ws string, ch *changes) error {
	for round := 0; ch.dir; round++ {
		ch.dir = false
		if round == maxSettleRounds {
			h.log.WithField("user", ws).Warn("datastore mode and workspace permissions still moving; leaving them to the next event")
			break
		}
		wsID, wrote, err := h.workspaceFromDir(ctx, ws)
		if err != nil {
			return err
		}
		if !wrote {
			break
		}
		res, err := h.mp.Resource(ctx, wsID)
		if err != nil {
			return fmt.Errorf("magpie workspace resource %d: %w", wsID, err)
		}
		if err := h.applyResource(ctx, ws, res, true, ch); err != nil {
			return err
		}
	}
	for _, layer := range slices.Sorted(maps.Keys(ch.layers)) {
		if err := h.layerFromFiles(ctx, ws, layer); err != nil {
			return err
		}
	}
	return nil
}

// layerFromFiles makes the Magpie layer permissions of ws follow the others
// bits of its .shp file, after giving every companion file the .shp's
// others bits (the original's _update_magpie_layer_permissions).
func (h *Handler) layerFromFiles(ctx context.Context, ws, layer string) error {
	root, err := h.wsRoot()
	if err != nil {
		return err
	}
	id, _, err := h.layerResource(ctx, ws, layer, true)
	if err != nil {
		return fmt.Errorf("magpie layer resource: %w", err)
	}
	var readable, writable bool
	if st, err := root.Lstat(mainFile(ws, layer)); err == nil {
		readable, writable = st.Mode&0o004 != 0, st.Mode&0o002 != 0
	}
	h.at("layer-mode", mainFile(ws, layer))
	for _, rel := range shapefileFiles(ws, layer) {
		_, err := h.normalize(root, rel, readable, writable, false)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	h.at("layer-files", mainFile(ws, layer))
	_, err = h.updatePermissions(ctx, ws, id, scopeMatch, readable, writable)
	return err
}

// workspaceFromDir makes the Magpie workspace permissions of ws follow the
// others bits of its datastore directory (readable needs r and x), and
// reports the workspace resource and whether Magpie was written to.
func (h *Handler) workspaceFromDir(ctx context.Context, ws string) (id int, wrote bool, err error) {
	root, err := h.wsRoot()
	if err != nil {
		return 0, false, err
	}
	id, _, err = h.workspaceResource(ctx, ws, true)
	if err != nil {
		return 0, false, fmt.Errorf("magpie workspace resource: %w", err)
	}
	rel := datastoreRel(ws)
	st, err := root.Lstat(rel)
	if err != nil {
		return 0, false, err
	}
	h.at("dir-mode", rel)
	mode := st.Mode.Perm()
	readable, writable, exec := mode&0o004 != 0, mode&0o002 != 0, mode&0o001 != 0
	if _, err := h.normalize(root, rel, readable, writable, exec); err != nil { // ownership only
		return 0, false, err
	}
	wrote, err = h.updatePermissions(ctx, ws, id, scopeRecursive, readable && exec, writable)
	return id, wrote, err
}

// updatePermissions sets user's permissions on resource id so that every
// readable-category name resolves to allow iff readable, every
// writable-category one iff writable, adding a permission only where the
// resolution is not already right ("only add what is needed", §3.4.8). It
// reports whether it wrote to Magpie.
func (h *Handler) updatePermissions(ctx context.Context, user string, id int, scope string, readable, writable bool) (wrote bool, err error) {
	type want struct{ name, access string }
	var wants []want
	for _, n := range readableNames {
		wants = append(wants, want{n, accessOf(readable)})
	}
	for _, n := range writableNames {
		wants = append(wants, want{n, accessOf(writable)})
	}
	eff, err := h.mp.UserPermissions(ctx, user, id, magpie.Effective)
	if err != nil {
		return false, fmt.Errorf("effective permissions of %q on %d: %w", user, id, err)
	}
	var direct []magpie.Permission
	if scope == scopeRecursive {
		if direct, err = h.mp.UserPermissions(ctx, user, id, magpie.Direct); err != nil {
			return false, fmt.Errorf("permissions of %q on %d: %w", user, id, err)
		}
	}
	h.at("effective", strconv.Itoa(id))
	var required []want
	for _, w := range wants {
		e, ok := magpie.Find(eff, w.name)
		if !ok {
			required = append(required, w)
			continue
		}
		if e.Access == w.access {
			d, isDirect := magpie.Find(direct, w.name)
			if scope == scopeRecursive && (!isDirect || d.Scope == scopeRecursive) {
				continue // inherited, or direct with the right scope
			}
			if scope != scopeRecursive && e.Scope == scope {
				continue // already resolves to the wanted access
			}
		}
		required = append(required, w)
		wrote = true
		if err := h.mp.DeleteUserPermission(ctx, user, id, w.name); err != nil {
			return wrote, fmt.Errorf("delete permission %q of %q on %d: %w", w.name, user, id, err)
		}
	}
	if len(required) == 0 {
		return wrote, nil
	}
	if eff, err = h.mp.UserPermissions(ctx, user, id, magpie.Effective); err != nil {
		return wrote, fmt.Errorf("effective permissions of %q on %d: %w", user, id, err)
	}
	for _, w := range required {
		if e, ok := magpie.Find(eff, w.name); ok && e.Access == w.access {
			continue
		}
		p := magpie.Permission{Name: w.name, Access: w.access, Scope: scope}
		wrote = true
		if _, err := h.mp.SetUserPermission(ctx, user, id, p); err != nil {
			return wrote, fmt.Errorf("set permission %s of %q on %d: %w", p, user, id, err)
		}
	}
	return wrote, nil
}

func accessOf(allowed bool) string {
	if allowed {
		return accessAllow
	}
	return accessDeny
}

// PermissionCreated implements handlers.PermissionHandler (cowbird.md §3.4.9).
func (h *Handler) PermissionCreated(ctx context.Context, ev handlers.PermissionEvent) error {
	return h.permissionChanged(ctx, ev)
}

// PermissionDeleted implements handlers.PermissionHandler; it does what
// PermissionCreated does, the file modes following Magpie's current state.
func (h *Handler) PermissionDeleted(ctx context.Context, ev handlers.PermissionEvent) error {
	return h.permissionChanged(ctx, ev)
}

// permissionChanged sets the others bits of the permission user's datastore
// directory and shapefiles from the user's effective permissions on the
// resource (and, for a recursive permission, on every resource below it),
// then normalizes Magpie from what changed (settle). A group permission is
// logged and ignored: workspaces belong to users.
func (h *Handler) permissionChanged(ctx context.Context, ev handlers.PermissionEvent) error {
	log := h.log.WithFields(logrus.Fields{"event": ev.Name(), "permission": ev.Value(), "resource_id": ev.ResourceID})
	if !slices.Contains(readableNames, ev.PermName) && !slices.Contains(writableNames, ev.PermName) {
		log.Info("permission is not a geoserver read or write permission; nothing to do")
		return nil
	}
	if ev.User == "" {
		log.WithField("group", ev.Group).Info("a permission change on a group is not supported on Geoserver, " +
			"since workspaces are based on users only; ignored")
		return nil
	}
	ws := ev.User
	if err := safefs.ValidName(ws); err != nil {
		return fmt.Errorf("%s: user: %w", ev.Name(), err)
	}
	unlock, err := h.lock(ctx, ws)
	if err != nil {
		return fmt.Errorf("%s: %w", ev.Name(), err)
	}
	defer unlock()
	res, err := h.mp.Resource(ctx, ev.ResourceID)
	if err != nil {
		return fmt.Errorf("%s: resource %d: %w", ev.Name(), ev.ResourceID, err)
	}
	var ch changes
	if err := h.applyResource(ctx, ws, res, ev.Scope == scopeRecursive, &ch); err != nil {
		return fmt.Errorf("%s on resource %d for %q: %w", ev.Name(), ev.ResourceID, ws, err)
	}
	if err := h.settle(ctx, ws, &ch); err != nil {
		return fmt.Errorf("%s on resource %d for %q: normalize magpie: %w", ev.Name(), ev.ResourceID, ws, err)
	}
	return nil
}

// applyResource maps res (a workspace or layer) onto ws's files, then its
// children when recursive, recording in ch what changed.
func (h *Handler) applyResource(ctx context.Context, ws string, res *magpie.Resource, recursive bool, ch *changes) error {
	var paths []string
	switch res.Type {
	case typeWorkspace:
		paths = []string{datastoreRel(ws)}
	case typeLayer:
		if err := safefs.ValidName(res.Name + ".shp.xml"); err != nil {
			return fmt.Errorf("layer name: %w", err)
		}
		paths = shapefileFiles(ws, res.Name)
	}
	if len(paths) > 0 {
		root, err := h.wsRoot()
		if err != nil {
			return err
		}
		eff, err := h.mp.UserPermissions(ctx, ws, res.ID, magpie.Effective)
		if err != nil {
			return fmt.Errorf("effective permissions on %d: %w", res.ID, err)
		}
		h.at("apply", strconv.Itoa(res.ID))
		var readable, writable bool
		for _, p := range eff {
			if p.Access == accessAllow {
				readable = readable || slices.Contains(readableNames, p.Name)
				writable = writable || slices.Contains(writableNames, p.Name)
			}
		}
		for _, rel := range paths {
			changed, err := h.normalize(root, rel, readable, writable, res.Type == typeWorkspace)
			if errors.Is(err, fs.ErrNotExist) {
				if res.Type == typeWorkspace || slices.Contains(requiredExts, filepath.Ext(rel)) {
					h.log.WithField("path", filepath.Join(h.dir, rel)).Warn("file to update is missing")
				}
				continue
			}
			if err != nil {
				return err
			}
			switch {
			case !changed:
			case res.Type == typeWorkspace:
				ch.dir = true
			case rel == mainFile(ws, res.Name):
				ch.layer(res.Name)
			}
		}
	}
	if recursive {
		for _, c := range res.Children {
			if err := h.applyResource(ctx, ws, c, true, ch); err != nil {
				return err
			}
		}
	}
	return nil
}

// The Magpie client implements Magpie.
var _ Magpie = (*magpie.Client)(nil)
