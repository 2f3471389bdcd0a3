package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cowbird-go/cowbird/app"
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
			return printList(cmd.OutOrStdout(), outFormat(), "handlers", app.DispatchOrder(cfg))
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
			return printMap(cmd.OutOrStdout(), outFormat(), "handler", app.Describe(hc))
		},
	})
	return cmd
}
