package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/cowbird-go/cowbird/app"
	"github.com/cowbird-go/cowbird/config"
)

func newServeCmd() *cobra.Command {
	layers := config.NewLayers(os.LookupEnv)
	var o app.Options
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: REST API, webhooks, file monitor and handlers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := layers.Settings()
			if err != nil {
				return usageError{Err: fmt.Errorf("settings: %w", err)}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := logrus.New()
			log.SetOutput(cmd.OutOrStdout())
			if o.Demo && !cmd.Flags().Changed("data-dir") {
				s.DataDir = "" // the demo keeps its state in its tree
			}
			o.Settings, o.Log, o.Out, o.Version = s, log, cmd.OutOrStdout(), version
			o.Ready = func(addr string) { log.WithField("addr", addr).Info("cowbird listening") }
			return app.Run(ctx, o)
		},
	}
	layers.BindServeFlags(cmd.Flags())
	f := cmd.Flags()
	f.BoolVar(&o.Demo, "demo", false, "run on a demo tree with emulated Magpie and GeoServer, no config needed")
	f.StringVar(&o.DemoDir, "dir", "", "with --demo: where to build the demo tree (default: a temp dir); its state goes in DIR/data unless --data-dir is given")
	return cmd
}
