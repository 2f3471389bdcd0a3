// Command cowbird is the bird-house synchronization daemon: it receives
// Magpie webhooks and file events and keeps user workspaces, WPS-output
// hardlinks, file modes, GeoServer and Magpie permissions consistent.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/app"
)

// Exit codes (DESIGN.md): 0 ok, 1 runtime failure, 2 usage or config error.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// version is the daemon's own version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// usageError marks errors that exit with code 2.
type usageError = app.UsageError

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run executes the command line and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "cowbird:", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return exitUsage
	}
	return exitFailure
}

// isCobraUsage recognizes cobra's own command-line errors (unknown command,
// wrong number of arguments), which are usage errors too.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, prefix := range []string{"unknown command", "accepts ", "requires at least", "requires at most"} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "cowbird",
		Short:         "Event-driven synchronization daemon for bird-house",
		Version:       fmt.Sprintf("%s (Cowbird API %s)", version, api.DefaultVersion),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{Err: err} })
	root.AddCommand(
		newServeCmd(),
		newConfigCmd(),
		newHandlersCmd(),
		newVersionCmd(),
		newHealthcheckCmd(),
		newHooksCmd(),
		newActionsCmd(), newResyncCmd(), newBackupCmd(), newRestoreCmd(),
		newEventsCmd(),
		newExplainCmd(),
		newStatusCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the daemon version and the Cowbird API version it implements",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "cowbird %s (Cowbird API %s)\n", version, api.DefaultVersion)
			return nil
		},
	}
}
