package geoserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"

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

// updateLayerPermissions makes the Magpie layer permissions of ws follow
// the others bits of its .shp file, after giving every companion file the
// .shp's others bits (cowbird.md §3.4.8).
func (h *Handler) updateLayerPermissions(ctx context.Context, ws, layer string) error {
	id, _, err := h.layerResource(ctx, ws, layer, true)
	if err != nil {
		return fmt.Errorf("magpie layer resource: %w", err)
	}
	var readable, writable bool
	if st, err := h.root.Lstat(datastoreRel(ws) + "/" + layer + ".shp"); err == nil {
		readable, writable = st.Mode&0o004 != 0, st.Mode&0o002 != 0
	}
	for _, rel := range shapefileFiles(ws, layer) {
		err := h.normalize(rel, readable, writable, false)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return h.updatePermissions(ctx, ws, id, scopeMatch, readable, writable)
}

// updateWorkspacePermissions makes the Magpie workspace permissions of ws
// follow the others bits of its datastore directory.
func (h *Handler) updateWorkspacePermissions(ctx context.Context, ws string) error {
	id, _, err := h.workspaceResource(ctx, ws, true)
	if err != nil {
		return fmt.Errorf("magpie workspace resource: %w", err)
	}
	rel := datastoreRel(ws)
	st, err := h.root.Lstat(rel)
	if err != nil {
		return err
	}
	mode := st.Mode.Perm()
	readable, writable, exec := mode&0o004 != 0, mode&0o002 != 0, mode&0o001 != 0
	if err := h.normalize(rel, readable, writable, exec); err != nil {
		return err
	}
	return h.updatePermissions(ctx, ws, id, scopeRecursive, readable && exec, writable)
}

// updatePermissions sets user's permissions on resource id so that every
// readable-category name resolves to allow iff readable, every
// writable-category one iff writable, adding a permission only where the
// resolution is not already right ("only add what is needed", §3.4.8).
func (h *Handler) updatePermissions(ctx context.Context, user string, id int, scope string, readable, writable bool) error {
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
		return fmt.Errorf("effective permissions of %q on %d: %w", user, id, err)
	}
	var direct []magpie.Permission
	if scope == scopeRecursive {
		if direct, err = h.mp.UserPermissions(ctx, user, id, magpie.Direct); err != nil {
			return fmt.Errorf("permissions of %q on %d: %w", user, id, err)
		}
	}
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
		if err := h.mp.DeleteUserPermission(ctx, user, id, w.name); err != nil {
			return fmt.Errorf("delete permission %q of %q on %d: %w", w.name, user, id, err)
		}
	}
	if len(required) == 0 {
		return nil
	}
	if eff, err = h.mp.UserPermissions(ctx, user, id, magpie.Effective); err != nil {
		return fmt.Errorf("effective permissions of %q on %d: %w", user, id, err)
	}
	for _, w := range required {
		if e, ok := magpie.Find(eff, w.name); ok && e.Access == w.access {
			continue
		}
		p := magpie.Permission{Name: w.name, Access: w.access, Scope: scope}
		if _, err := h.mp.SetUserPermission(ctx, user, id, p); err != nil {
			return fmt.Errorf("set permission %s of %q on %d: %w", p, user, id, err)
		}
	}
	return nil
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
// resource (and, for a recursive permission, on every resource below it).
// A group permission is logged and ignored: workspaces belong to users.
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
	res, err := h.mp.Resource(ctx, ev.ResourceID)
	if err != nil {
		return fmt.Errorf("%s: resource %d: %w", ev.Name(), ev.ResourceID, err)
	}
	if err := h.applyResource(ctx, ws, res, ev.Scope == scopeRecursive); err != nil {
		return fmt.Errorf("%s on resource %d for %q: %w", ev.Name(), ev.ResourceID, ws, err)
	}
	return nil
}

// applyResource maps res (a workspace or layer) onto ws's files, then its
// children when recursive.
func (h *Handler) applyResource(ctx context.Context, ws string, res *magpie.Resource, recursive bool) error {
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
		eff, err := h.mp.UserPermissions(ctx, ws, res.ID, magpie.Effective)
		if err != nil {
			return fmt.Errorf("effective permissions on %d: %w", res.ID, err)
		}
		var readable, writable bool
		for _, p := range eff {
			if p.Access == accessAllow {
				readable = readable || slices.Contains(readableNames, p.Name)
				writable = writable || slices.Contains(writableNames, p.Name)
			}
		}
		for _, rel := range paths {
			err := h.normalize(rel, readable, writable, res.Type == typeWorkspace)
			if errors.Is(err, fs.ErrNotExist) {
				if res.Type == typeWorkspace || slices.Contains(requiredExts, filepath.Ext(rel)) {
					h.log.WithField("path", filepath.Join(h.dir, rel)).Warn("file to update is missing")
				}
				continue
			}
			if err != nil {
				return err
			}
		}
	}
	if recursive {
		for _, c := range res.Children {
			if err := h.applyResource(ctx, ws, c, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// The Magpie client implements Magpie.
var _ Magpie = (*magpie.Client)(nil)
