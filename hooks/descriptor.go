package hooks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/handlers"
)

// Descriptor describes the Hooks handler: its entry has no keys of its own
// (the hooks are in the top-level hooks: section), it observes the file
// events of the handlers that share them, and a rebuild leaves it out.
var Descriptor = handlers.Descriptor{
	HandlerKind:  config.HandlerKind{Name: Name},
	Type:         (*Handler)(nil),
	New:          build,
	RunsCommands: true,
}

// OutputsTree is the settings of the handler that manages the WPS outputs
// (FileSystem's): its entry's workspace_dir and OutputsDir are the hooks'
// {{Handler.WorkspaceDir}} and {{Handler.WpsOutputsDir}}.
type OutputsTree interface {
	OutputsDir() string
}

// build builds the Hooks handler with the Recorder of env.Deps, if any.
func build(_ context.Context, env handlers.Env) (handlers.Handler, error) {
	rec, _ := handlers.Dep[Recorder](env)
	return FromConfig(env.Config, env.DataDir, rec, env.Log)
}

// FromConfig builds the Hooks handler of cfg: sessions live under
// <dataDir>/sessions; rec, if not nil, records the runs.
func FromConfig(cfg *config.Config, dataDir string, rec Recorder, log *logrus.Entry) (*Handler, error) {
	root := filepath.Join(dataDir, "sessions")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("hooks session root: %w", err)
	}
	// Hook users must reach their session directory through the data dir:
	// let them traverse it (not list it; the state file stays 0600).
	if err := os.Chmod(dataDir, 0o711); err != nil {
		return nil, fmt.Errorf("hooks session root: %w", err)
	}
	opts := Options{SessionRoot: root, Log: log, Recorder: rec}
	for _, hc := range cfg.Handlers {
		if t, ok := hc.Settings.(OutputsTree); ok {
			opts.WorkspaceDir, opts.WpsOutputsDir = hc.WorkspaceDir, t.OutputsDir()
			break
		}
	}
	return New(cfg.Hooks, opts)
}
