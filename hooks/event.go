package hooks

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cowbird-go/cowbird/handlers"
)

// shapefileDir is the shapefile directory in each user workspace, as the
// Geoserver handler uses it.
const shapefileDir = "shapefile_datastore"

// fileEventName names the hook event of a file event: wps_output_* for a
// file under the WPS outputs, shapefile_* for {workspace}/{user}/
// shapefile_datastore/{layer}.shp; "" for anything else.
func (h *Handler) fileEventName(ev handlers.FileEvent) string {
	if ev.IsDir || ev.Op == handlers.FileModified {
		return ""
	}
	verb := map[handlers.FileOp]string{handlers.FileCreated: "created", handlers.FileDeleted: "deleted"}[ev.Op]
	if h.opts.WpsOutputsDir != "" && under(h.opts.WpsOutputsDir, ev.Path) {
		return "wps_output_" + verb
	}
	if _, ok := h.shapefileUser(ev.Path); ok {
		if ev.Op == handlers.FileCreated {
			return "shapefile_published"
		}
		return "shapefile_deleted"
	}
	return ""
}

// shapefileUser returns the user of a {workspace}/{user}/shapefile_datastore/
// {layer}.shp path.
func (h *Handler) shapefileUser(path string) (string, bool) {
	if h.opts.WorkspaceDir == "" {
		return "", false
	}
	rel, err := filepath.Rel(h.opts.WorkspaceDir, filepath.Clean(path))
	if err != nil {
		return "", false
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if len(parts) != 3 || parts[0] == ".." || parts[1] != shapefileDir || filepath.Ext(parts[2]) != ".shp" {
		return "", false
	}
	return parts[0], true
}

// under reports whether path is strictly inside dir.
func under(dir, path string) bool {
	rel, err := filepath.Rel(dir, filepath.Clean(path))
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

// eventValues returns the Event.* and Handler.* values of ev for the hook
// of event; ev must be of the event's kind.
func (h *Handler) eventValues(event string, ev handlers.Event) (map[string]string, error) {
	v := map[string]string{
		"Handler.WorkspaceDir":  h.opts.WorkspaceDir,
		"Handler.WpsOutputsDir": h.opts.WpsOutputsDir,
	}
	mismatch := fmt.Errorf("event %s: a %s event cannot trigger it", event, ev.Kind())
	switch ev := ev.(type) {
	case handlers.UserEvent:
		if !strings.HasPrefix(event, "user_") {
			return nil, mismatch
		}
		v["Event.UserName"] = ev.UserName
	case handlers.PermissionEvent:
		if !strings.HasPrefix(event, "permission_") {
			return nil, mismatch
		}
		v["Event.UserName"] = ev.User
		v["Event.GroupName"] = ev.Group
		v["Event.ServiceName"] = ev.ServiceName
		v["Event.ServiceType"] = ev.ServiceType
		v["Event.ResourceID"] = strconv.Itoa(ev.ResourceID)
		v["Event.ResourceFullName"] = ev.ResourceFullName
		v["Event.PermissionName"] = ev.PermName
		v["Event.Access"] = ev.Access
		v["Event.Scope"] = ev.Scope
		v["Event.Permission"] = ev.Value()
	case handlers.FileEvent:
		v["Event.Path"] = ev.Path
		switch {
		case strings.HasPrefix(event, "shapefile_"):
			u, ok := h.shapefileUser(ev.Path)
			if !ok {
				return nil, fmt.Errorf("event %s: %s is not a shapefile in a user workspace", event, ev.Path)
			}
			v["Event.UserName"] = u
		case !strings.HasPrefix(event, "wps_output_"):
			return nil, mismatch
		}
	default:
		return nil, mismatch
	}
	return v, nil
}
