package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/handlers"
)

func newHandlersCmd() *cobra.Command {
	var configPath, format string
	var asJSON bool
	cmd := &cobra.Command{Use: "handlers", Short: "List the configured handlers or show one"}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&configPath, "config", "c", "", "YAML config file or directory (default $COWBIRD_CONFIG_PATH)")
	pf.StringVarP(&format, "format", "f", "json", "output format: json, yaml, flat or table")
	pf.BoolVar(&asJSON, "json", false, "same as --format json")
	outFormat := func() string {
		if asJSON {
			return "json"
		}
		return format
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "Print the active handlers in dispatch order (priority, then config order)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, configPath)
			if err != nil {
				return err
			}
			reg, err := configRegistry(cfg)
			if err != nil {
				return err
			}
			var names []string
			for _, h := range reg.Active() {
				names = append(names, h.Name())
			}
			return printList(cmd.OutOrStdout(), outFormat(), "handlers", names)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "info NAME",
		Short: "Print the settings of the active handler NAME (secrets masked)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd, configPath)
			if err != nil {
				return err
			}
			hc, ok := cfg.Handler(args[0])
			if !ok || !hc.Active {
				return fmt.Errorf("Cannot find handler named: %s", args[0])
			}
			return printMap(cmd.OutOrStdout(), outFormat(), "handler", handlerFields(hc))
		},
	})
	return cmd
}

// configRegistry orders the configured handlers as the daemon does, without
// instantiating them.
func configRegistry(cfg *config.Config) (*handlers.Registry, error) {
	regs := make([]handlers.Registration, len(cfg.Handlers))
	for i, hc := range cfg.Handlers {
		regs[i] = handlers.Registration{Handler: handlers.Named(hc.Name), Active: hc.Active, Priority: hc.Priority}
	}
	return handlers.NewRegistry(regs...)
}

// handlerFields lists a handler's settings by config key, secrets masked.
func handlerFields(hc config.HandlerConfig) []field {
	priority := "unset"
	if hc.Priority != nil {
		priority = strconv.Itoa(*hc.Priority)
	}
	events := "none (every event is logged only)"
	if evs := capabilities(handlerKinds[hc.Name]); len(evs) > 0 {
		events = strings.Join(evs, ", ")
	}
	fs := []field{{"name", hc.Name}, {"active", strconv.FormatBool(hc.Active)}, {"priority", priority}, {"events", events}}
	switch {
	case hc.FileSystem != nil:
		c := hc.FileSystem
		fs = append(fs,
			field{"workspace_dir", c.WorkspaceDir},
			field{"jupyterhub_user_data_dir", c.JupyterhubUserDataDir},
			field{"wps_outputs_dir", c.WPSOutputsDir},
			field{"secure_data_proxy_name", c.SecureDataProxyName},
			field{"wps_outputs_res_name", c.WPSOutputsResName},
			field{"notebooks_dir_name", c.NotebooksDirName},
			field{"public_workspace_wps_outputs_subpath", c.PublicWorkspaceWPSOutputsSubpath},
			field{"user_wps_outputs_dir_name", c.UserWPSOutputsDirName},
			field{"on_user_deleted", string(c.OnUserDeleted)},
			field{"monitors", c.WPSOutputsDir + " (recursive, from start-up)"})
	case hc.Geoserver != nil:
		c := hc.Geoserver
		fs = append(fs, field{"url", c.URL}, field{"workspace_dir", c.WorkspaceDir},
			field{"admin_user", c.AdminUser}, field{"admin_password", c.AdminPassword.String()},
			field{"monitors", filepath.Join(c.WorkspaceDir, "<user>", "shapefile_datastore") + " (recursive, from user_created)"})
	case hc.Magpie != nil:
		c := hc.Magpie
		fs = append(fs, field{"url", c.URL}, field{"admin_user", c.AdminUser},
			field{"admin_password", c.AdminPassword.String()})
	case hc.Catalog != nil:
		fs = append(fs, field{"url", hc.Catalog.URL}, field{"workspace_dir", hc.Catalog.WorkspaceDir},
			field{"monitors", filepath.Join(hc.Catalog.WorkspaceDir, "<user>") + " (recursive, from user_created)"})
	default:
		if hc.URL != "" {
			fs = append(fs, field{"url", hc.URL})
		}
		if hc.WorkspaceDir != "" {
			fs = append(fs, field{"workspace_dir", hc.WorkspaceDir})
		}
	}
	return fs
}
