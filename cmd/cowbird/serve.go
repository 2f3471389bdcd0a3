package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/handlers"
)

// serveOptions are the serve command's flags.
type serveOptions struct {
	configPath string
	addr       string
	dataDir    string
	demo       bool
	demoDir    string
	// newHandler, when set (tests), replaces the handler constructor table.
	newHandler func(config.HandlerConfig) (handlers.Handler, error)
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: REST API, webhooks, file monitor and handlers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := logrus.New()
			log.SetOutput(cmd.OutOrStdout())
			return serve(ctx, o, log, cmd.OutOrStdout(), func(addr string) {
				log.WithField("addr", addr).Info("cowbird listening")
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configPath, "config", "", "YAML config file or directory (default $COWBIRD_CONFIG_PATH)")
	f.StringVar(&o.addr, "addr", ":7000", "listen address")
	f.StringVar(&o.dataDir, "data-dir", "./data", "directory of the state database (created if absent)")
	f.BoolVar(&o.demo, "demo", false, "run on a demo tree with emulated Magpie and GeoServer, no config needed")
	f.StringVar(&o.demoDir, "dir", "", "with --demo: where to build the demo tree (default: a temp dir)")
	return cmd
}

// serve runs the daemon until ctx ends, then shuts it down in LIFO order.
// ready is called with the bound address once the daemon accepts requests.
// The demo's description goes to out.
func serve(ctx context.Context, o serveOptions, log *logrus.Logger, out io.Writer, ready func(addr string)) error {
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.addr, err)
	}
	d, err := newDaemon(o, log, out, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return errors.Join(err, ln.Close())
	}
	return d.run(ctx, ln, ready)
}

// shutdownTimeout bounds the drain of HTTP requests and dispatch in flight.
const shutdownTimeout = 10 * time.Second
