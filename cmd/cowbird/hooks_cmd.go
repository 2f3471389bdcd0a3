package main

import (
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/hooks"
)

func newHooksCmd() *cobra.Command {
	var configPath, dataDir, user string
	cmd := &cobra.Command{Use: "hooks", Short: "Run the hooks of the configuration"}
	test := &cobra.Command{
		Use:   "test EVENT",
		Short: "Run the hook of EVENT once for --user, as the daemon would, and print its outcome",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd, configPath)
			if err != nil {
				return err
			}
			l := logrus.New()
			l.SetOutput(cmd.ErrOrStderr())
			h, err := hooks.FromConfig(cfg, dataDir, nil, logrus.NewEntry(l).WithField("handler", hooks.Name))
			if err != nil {
				return usageError{Err: err}
			}
			if err := h.Start(cmd.Context()); err != nil {
				return err
			}
			ev, err := hookTestEvent(args[0], user)
			if err != nil {
				return usageError{Err: err}
			}
			res, err := h.RunOnce(cmd.Context(), args[0], ev)
			for _, a := range res.Actions {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", a.Action, a.State)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "session %s\n", res.State)
			return err
		},
	}
	f := test.Flags()
	f.StringVarP(&configPath, "config", "c", "", "YAML config file or directory (default $COWBIRD_CONFIG_PATH)")
	f.StringVar(&dataDir, "data-dir", os.TempDir(), "where the session working directories are created")
	f.StringVar(&user, "user", "", "user name of the event")
	cmd.AddCommand(test)
	return cmd
}

// hookTestEvent is the event a `hooks test` run pretends to have received.
func hookTestEvent(event, user string) (handlers.Event, error) {
	switch event {
	case "user_created", "user_deleted":
		if user == "" {
			return nil, fmt.Errorf("%s needs --user", event)
		}
		action := handlers.Created
		if event == "user_deleted" {
			action = handlers.Deleted
		}
		return handlers.UserEvent{Action: action, UserName: user}, nil
	}
	return nil, fmt.Errorf("hooks test supports user_created and user_deleted, not %q", event)
}
