package config

import (
	"path/filepath"

	"github.com/sirupsen/logrus"
	"gopkg.in/yaml.v3"
)

// HandlerConfig is one entry of the handlers section.
type HandlerConfig struct {
	// Name is the handler's key: Catalog, FileSystem, Geoserver, Hooks,
	// Magpie, Nginx or Thredds.
	Name string
	// Active handlers are instantiated and dispatched to (key active,
	// default false).
	Active bool
	// Priority orders handlers, lower first; nil when unset (runs last).
	Priority *int
	// URL is the key url (optional for every handler).
	URL string
	// WorkspaceDir is the key workspace_dir (optional for every handler).
	WorkspaceDir string
	// File is the base name of the config file the entry came from.
	File string

	// The typed settings of the handler named Name; the others are nil.
	FileSystem *FileSystem
	Geoserver  *Geoserver
	Magpie     *Magpie
	Catalog    *Catalog
}

// UserDeletedPolicy is what the FileSystem handler does with a deleted
// user's workspace.
type UserDeletedPolicy string

// The on_user_deleted values.
const (
	// DeleteWorkspace removes the workspace, as the original does.
	DeleteWorkspace UserDeletedPolicy = "delete"
	// ArchiveWorkspace keeps the workspace aside instead of removing it.
	ArchiveWorkspace UserDeletedPolicy = "archive"
)

// FileSystem configures the FileSystem handler (cowbird.md §3.3.1).
type FileSystem struct {
	// WorkspaceDir (workspace_dir, required) holds one workspace per user.
	WorkspaceDir string
	// JupyterhubUserDataDir (jupyterhub_user_data_dir, required) is the
	// target directory of the notebooks symlinks.
	JupyterhubUserDataDir string
	// WPSOutputsDir (wps_outputs_dir, required) is the WPS outputs root,
	// cleaned lexically (filepath.Clean) as the original normalises it.
	WPSOutputsDir string
	// SecureDataProxyName (secure_data_proxy_name, default
	// "secure-data-proxy") is the Magpie service guarding WPS outputs.
	SecureDataProxyName string
	// WPSOutputsResName (wps_outputs_res_name, default "wps_outputs") is the
	// Magpie route resource of the WPS outputs.
	WPSOutputsResName string
	// NotebooksDirName (notebooks_dir_name, default "notebooks") is the name
	// of the symlink in each workspace.
	NotebooksDirName string
	// PublicWorkspaceWPSOutputsSubpath (public_workspace_wps_outputs_subpath,
	// alias public_workspace_wps_outputs_subdir, default "public/wps_outputs")
	// is where public WPS outputs are linked, relative to WorkspaceDir.
	PublicWorkspaceWPSOutputsSubpath string
	// UserWPSOutputsDirName (user_wps_outputs_dir_name, default
	// "wps_outputs") is the user's WPS outputs directory in the workspace.
	UserWPSOutputsDirName string
	// OnUserDeleted (on_user_deleted, default "delete") is our addition.
	OnUserDeleted UserDeletedPolicy
}

// Geoserver configures the Geoserver handler (cowbird.md §3.4.1).
type Geoserver struct {
	// URL (url, required) is GeoServer's base URL; REST calls go to URL/rest.
	URL string
	// WorkspaceDir (workspace_dir, required) holds the users' workspaces.
	WorkspaceDir string
	// AdminUser (admin_user) is the basic-auth user, optional.
	AdminUser string
	// AdminPassword (admin_password) is the basic-auth password, optional.
	AdminPassword Secret
}

// Magpie configures the Magpie handler (cowbird.md §3.5).
type Magpie struct {
	// URL (url, required) is Magpie's base URL.
	URL string
	// AdminUser (admin_user, required non-empty) is Magpie's admin user.
	AdminUser string
	// AdminPassword (admin_password, required non-empty) is its password.
	AdminPassword Secret
}

// Catalog configures the Catalog handler (cowbird.md §3.6).
type Catalog struct {
	// URL (url, required) is the catalog's URL.
	URL string
	// WorkspaceDir (workspace_dir, required) holds the users' workspaces.
	WorkspaceDir string
}

// Default values of the FileSystem keys.
const (
	DefaultSecureDataProxyName              = "secure-data-proxy"
	DefaultWPSOutputsResName                = "wps_outputs"
	DefaultNotebooksDirName                 = "notebooks"
	DefaultPublicWorkspaceWPSOutputsSubpath = "public/wps_outputs"
	DefaultUserWPSOutputsDirName            = "wps_outputs"
)

// handlerKeys lists the keys each known handler reads beyond the common
// ones; any other key is warned about and ignored.
var handlerKeys = map[string][]string{
	"FileSystem": {"jupyterhub_user_data_dir", "wps_outputs_dir", "secure_data_proxy_name",
		"wps_outputs_res_name", "notebooks_dir_name", "public_workspace_wps_outputs_subpath",
		"public_workspace_wps_outputs_subdir", "user_wps_outputs_dir_name", "on_user_deleted"},
	"Geoserver": {"admin_user", "admin_password"},
	"Magpie":    {"admin_user", "admin_password"},
	"Catalog":   nil,
	"Thredds":   nil,
	"Nginx":     nil,
	"Hooks":     nil,
}

// nonEmptyKeys are the keys the original's schema requires to be non-empty
// strings on every handler that has them.
var nonEmptyKeys = map[string]bool{
	"jupyterhub_user_data_dir": true, "wps_outputs_dir": true, "secure_data_proxy_name": true,
	"wps_outputs_res_name": true, "notebooks_dir_name": true, "public_workspace_wps_outputs_subpath": true,
	"public_workspace_wps_outputs_subdir": true, "user_wps_outputs_dir_name": true,
}

// handler decodes one handler entry. Type problems are recorded in d;
// unknown keys of known handlers are warned about.
func (d *decoder) handler(name string, n *yaml.Node, log *logrus.Entry) HandlerConfig {
	path := "handlers." + name
	h := HandlerConfig{Name: name, File: d.file}
	pairs, _ := d.mapping(n, path)
	extra, known := handlerKeys[name]
	allowed := map[string]bool{"active": true, "priority": true, "url": true, "workspace_dir": true}
	for _, k := range extra {
		allowed[k] = true
	}
	s := map[string]string{}
	for _, p := range pairs {
		kp := join(path, p.key)
		switch {
		case p.key == "active":
			h.Active, _ = d.boolean(p.val, kp)
		case p.key == "priority":
			if v, ok := d.integer(p.val, kp); ok {
				h.Priority = &v
			}
		case p.key == "url" || p.key == "workspace_dir":
			s[p.key], _ = d.str(p.val, kp)
		case nonEmptyKeys[p.key]:
			s[p.key], _ = d.nonEmpty(p.val, kp)
		case allowed[p.key] && (p.key == "admin_user" || p.key == "admin_password"):
			s[p.key], _ = d.text(p.val, kp)
		case allowed[p.key] && p.key == "on_user_deleted":
			v, _ := d.str(p.val, kp)
			if v != "" && v != string(DeleteWorkspace) && v != string(ArchiveWorkspace) {
				d.fail(kp, "must be %q or %q, got %q", DeleteWorkspace, ArchiveWorkspace, v)
			}
			s[p.key] = v
		}
		if known && !allowed[p.key] {
			log.WithFields(logrus.Fields{"handler": name, "key": p.key, "file": d.file}).
				Warn("unknown handler key ignored")
		}
	}
	h.URL, h.WorkspaceDir = s["url"], s["workspace_dir"]
	switch name {
	case "FileSystem":
		h.FileSystem = fileSystem(s, path, log)
	case "Geoserver":
		h.Geoserver = &Geoserver{URL: s["url"], WorkspaceDir: s["workspace_dir"],
			AdminUser: s["admin_user"], AdminPassword: Secret(s["admin_password"])}
	case "Magpie":
		h.Magpie = &Magpie{URL: s["url"], AdminUser: s["admin_user"], AdminPassword: Secret(s["admin_password"])}
	case "Catalog":
		h.Catalog = &Catalog{URL: s["url"], WorkspaceDir: s["workspace_dir"]}
	}
	return h
}

func fileSystem(s map[string]string, path string, log *logrus.Entry) *FileSystem {
	subpath := s["public_workspace_wps_outputs_subpath"]
	if subdir := s["public_workspace_wps_outputs_subdir"]; subdir != "" {
		if subpath != "" && subpath != subdir {
			log.WithFields(logrus.Fields{
				"handler":                              "FileSystem",
				"public_workspace_wps_outputs_subpath": subpath,
				"public_workspace_wps_outputs_subdir":  subdir,
			}).Warn(path + ": public_workspace_wps_outputs_subpath and public_workspace_wps_outputs_subdir differ; using public_workspace_wps_outputs_subpath")
		} else {
			subpath = subdir
		}
	}
	wps := s["wps_outputs_dir"]
	if wps != "" {
		wps = filepath.Clean(wps)
	}
	return &FileSystem{
		WorkspaceDir:                     s["workspace_dir"],
		JupyterhubUserDataDir:            s["jupyterhub_user_data_dir"],
		WPSOutputsDir:                    wps,
		SecureDataProxyName:              or(s["secure_data_proxy_name"], DefaultSecureDataProxyName),
		WPSOutputsResName:                or(s["wps_outputs_res_name"], DefaultWPSOutputsResName),
		NotebooksDirName:                 or(s["notebooks_dir_name"], DefaultNotebooksDirName),
		PublicWorkspaceWPSOutputsSubpath: or(subpath, DefaultPublicWorkspaceWPSOutputsSubpath),
		UserWPSOutputsDirName:            or(s["user_wps_outputs_dir_name"], DefaultUserWPSOutputsDirName),
		OnUserDeleted:                    UserDeletedPolicy(or(s["on_user_deleted"], string(DeleteWorkspace))),
	}
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// validateHandlers checks the required parameters of the active handlers
// (cowbird.md §2.4). An empty string counts as missing.
func validateHandlers(hs []HandlerConfig) Errors {
	var errs Errors
	for _, h := range hs {
		if !h.Active {
			continue
		}
		type param struct{ key, val string }
		var required []param
		switch h.Name {
		case "FileSystem":
			fs := deref(h.FileSystem)
			required = []param{{"workspace_dir", fs.WorkspaceDir},
				{"jupyterhub_user_data_dir", fs.JupyterhubUserDataDir}, {"wps_outputs_dir", fs.WPSOutputsDir}}
		case "Geoserver":
			gs := deref(h.Geoserver)
			required = []param{{"url", gs.URL}, {"workspace_dir", gs.WorkspaceDir}}
		case "Magpie":
			mg := deref(h.Magpie)
			required = []param{{"url", mg.URL}}
			if mg.AdminUser == "" || mg.AdminPassword == "" {
				errs = append(errs, &FieldError{File: h.File, Path: "handlers.Magpie",
					Msg: "Missing Magpie credentials in config. Admin Magpie username and password are required."})
			}
		case "Catalog":
			ct := deref(h.Catalog)
			required = []param{{"url", ct.URL}, {"workspace_dir", ct.WorkspaceDir}}
		}
		for _, p := range required {
			if p.val == "" {
				errs = append(errs, &FieldError{File: h.File, Path: "handlers." + h.Name + "." + p.key,
					Msg: h.Name + " handler requires the following missing configuration parameter : [" + p.key + "]"})
			}
		}
	}
	return errs
}

// deref returns *p, or the zero value for nil.
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
