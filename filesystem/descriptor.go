package filesystem

import (
	"context"
	"path/filepath"
	"strconv"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
)

// Descriptor describes the FileSystem handler (cowbird.md §3.3.1).
var Descriptor = handlers.Descriptor{
	HandlerKind: config.HandlerKind{
		Name:   Name,
		Decode: decode,
		Validate: func(hc config.HandlerConfig) config.Errors {
			c := config.SettingsOf[Config](hc)
			return hc.Require("workspace_dir", hc.WorkspaceDir,
				"jupyterhub_user_data_dir", c.JupyterhubUserDataDir, "wps_outputs_dir", c.WPSOutputsDir)
		},
	},
	Type:       (*Handler)(nil),
	New:        build,
	ShareFiles: true,
	Fields: func(hc config.HandlerConfig) []handlers.Field {
		c := config.SettingsOf[Config](hc)
		return []handlers.Field{
			{Key: "workspace_dir", Value: c.WorkspaceDir},
			{Key: "jupyterhub_user_data_dir", Value: c.JupyterhubUserDataDir},
			{Key: "wps_outputs_dir", Value: c.WPSOutputsDir},
			{Key: "secure_data_proxy_name", Value: c.SecureDataProxyName},
			{Key: "wps_outputs_res_name", Value: c.WPSOutputsResName},
			{Key: "notebooks_dir_name", Value: c.NotebooksDirName},
			{Key: "public_workspace_wps_outputs_subpath", Value: c.PublicWorkspaceWPSOutputsSubpath},
			{Key: "user_wps_outputs_dir_name", Value: c.UserWPSOutputsDirName},
			{Key: "on_user_deleted", Value: string(c.OnUserDeleted)},
			{Key: "magpie_concurrency", Value: strconv.Itoa(c.MagpieConcurrency)},
			{Key: "monitors", Value: c.WPSOutputsDir + " (recursive, from start-up)"},
		}
	},
}

// decode reads the FileSystem keys, with the original's defaults;
// public_workspace_wps_outputs_subdir is an alias of
// public_workspace_wps_outputs_subpath, which wins when both differ.
func decode(s *config.Section) any {
	subpath := s.NonEmpty("public_workspace_wps_outputs_subpath")
	if subdir := s.NonEmpty("public_workspace_wps_outputs_subdir"); subdir != "" {
		if subpath != "" && subpath != subdir {
			s.Log().WithFields(logrus.Fields{
				"public_workspace_wps_outputs_subpath": subpath,
				"public_workspace_wps_outputs_subdir":  subdir,
			}).Warn("handlers." + Name + ": public_workspace_wps_outputs_subpath and public_workspace_wps_outputs_subdir differ; using public_workspace_wps_outputs_subpath")
		} else {
			subpath = subdir
		}
	}
	wps := s.NonEmpty("wps_outputs_dir")
	if wps != "" {
		wps = filepath.Clean(wps)
	}
	policy := s.String("on_user_deleted")
	if policy != "" && policy != string(DeleteWorkspace) && policy != string(ArchiveWorkspace) {
		s.Fail("on_user_deleted", "must be %q or %q, got %q", DeleteWorkspace, ArchiveWorkspace, policy)
	}
	c := Config{
		MagpieConcurrency:                magpieConcurrency(s),
		WorkspaceDir:                     s.String("workspace_dir"),
		JupyterhubUserDataDir:            s.NonEmpty("jupyterhub_user_data_dir"),
		WPSOutputsDir:                    wps,
		SecureDataProxyName:              s.NonEmpty("secure_data_proxy_name"),
		WPSOutputsResName:                s.NonEmpty("wps_outputs_res_name"),
		NotebooksDirName:                 s.NonEmpty("notebooks_dir_name"),
		PublicWorkspaceWPSOutputsSubpath: subpath,
		UserWPSOutputsDirName:            s.NonEmpty("user_wps_outputs_dir_name"),
		OnUserDeleted:                    UserDeletedPolicy(policy),
	}.withDefaults()
	return &c
}

// magpieConcurrency reads magpie_concurrency: unset is 0 (the default).
func magpieConcurrency(s *config.Section) int {
	v := s.Text("magpie_concurrency") // an integer, or a string of one (a template)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxMagpieConcurrency {
		s.Fail("magpie_concurrency", "must be an integer from 1 to %d, got %q", MaxMagpieConcurrency, v)
		return 0
	}
	return n
}

// OutputsDir is wps_outputs_dir (hooks.OutputsTree).
func (c *Config) OutputsDir() string { return c.WPSOutputsDir }

// build builds the handler on the shared Magpie client, each event or run
// on a caching copy (without one, no user is known: see noMagpie); the link
// index is kept in the state store.
func build(_ context.Context, env handlers.Env) (handlers.Handler, error) {
	sessions := func() Magpie { return noMagpie{} }
	if mc, err := magpie.Shared(env); err == nil {
		sessions = func() Magpie { return mc.WithCache() }
	} else {
		env.Log.Warn("no Magpie url and credentials: workspaces, notebooks and public WPS outputs are kept, " +
			"user WPS outputs stay private (not linked)")
	}
	db, err := handlers.Dep[IndexStore](env)
	if err != nil {
		return nil, err
	}
	c := config.SettingsOf[Config](env.Entry)
	return New(c, sessions, env.Watcher, env.Log, Options{AdminUID: env.Settings.AdminUID,
		AdminGID: env.Settings.AdminGID, IndexStore: db, MagpieConcurrency: c.MagpieConcurrency})
}
