package filesystem

import "github.com/cowbird-go/cowbird/config"

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

// Config is the FileSystem handler's entry (cowbird.md §3.3.1).
type Config struct {
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
	// MagpieConcurrency (magpie_concurrency, default
	// DefaultMagpieConcurrency, 1 to MaxMagpieConcurrency) is our addition:
	// how many permission requests a reconcile or a group's permission event
	// has in flight at Magpie at once.
	MagpieConcurrency int
}

// Default values of the FileSystem keys.
const (
	DefaultSecureDataProxyName              = "secure-data-proxy"
	DefaultWPSOutputsResName                = "wps_outputs"
	DefaultNotebooksDirName                 = "notebooks"
	DefaultPublicWorkspaceWPSOutputsSubpath = "public/wps_outputs"
	DefaultUserWPSOutputsDirName            = "wps_outputs"
)

// withDefaults fills the keys left empty with their defaults.
func (c Config) withDefaults() Config {
	c.SecureDataProxyName = config.Or(c.SecureDataProxyName, DefaultSecureDataProxyName)
	c.WPSOutputsResName = config.Or(c.WPSOutputsResName, DefaultWPSOutputsResName)
	c.NotebooksDirName = config.Or(c.NotebooksDirName, DefaultNotebooksDirName)
	c.UserWPSOutputsDirName = config.Or(c.UserWPSOutputsDirName, DefaultUserWPSOutputsDirName)
	c.PublicWorkspaceWPSOutputsSubpath = config.Or(c.PublicWorkspaceWPSOutputsSubpath, DefaultPublicWorkspaceWPSOutputsSubpath)
	c.OnUserDeleted = UserDeletedPolicy(config.Or(string(c.OnUserDeleted), string(DeleteWorkspace)))
	if c.MagpieConcurrency == 0 {
		c.MagpieConcurrency = DefaultMagpieConcurrency
	}
	return c
}
