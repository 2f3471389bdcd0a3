package main

import (
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/cowbird-go/cowbird/app"
	"github.com/cowbird-go/cowbird/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check configuration files"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate FILE",
		Short: "Load FILE (a YAML file or directory) and report every problem with its key path",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := loadConfig(cmd, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: configuration is valid\n", args[0])
			return nil
		},
	})
	return cmd
}

// loadConfig loads and validates the configuration at path (or
// COWBIRD_CONFIG_PATH when path is empty), logging warnings to stderr.
// Problems are usage errors (exit 2).
func loadConfig(cmd *cobra.Command, path string) (*config.Config, error) {
	if path == "" {
		path = os.Getenv("COWBIRD_CONFIG_PATH")
	}
	if path == "" {
		return nil, usageError{Err: fmt.Errorf("no configuration: give --config or set COWBIRD_CONFIG_PATH")}
	}
	l := logrus.New()
	l.SetOutput(cmd.ErrOrStderr())
	cfg, err := config.Load(path, logrus.NewEntry(l).WithField("config", path), app.ConfigKinds(app.Kinds))
	if err != nil {
		return nil, usageError{Err: fmt.Errorf("config %s:\n%w", path, err)}
	}
	return cfg, nil
}
