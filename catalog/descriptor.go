package catalog

import (
	"context"
	"path/filepath"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/handlers"
)

// Descriptor describes the Catalog handler (cowbird.md §3.6): it has no keys
// of its own; url and workspace_dir are required.
var Descriptor = handlers.Descriptor{
	HandlerKind: config.HandlerKind{
		Name: Name,
		Validate: func(hc config.HandlerConfig) config.Errors {
			return hc.Require("url", hc.URL, "workspace_dir", hc.WorkspaceDir)
		},
	},
	Type: (*Handler)(nil),
	New: func(_ context.Context, env handlers.Env) (handlers.Handler, error) {
		return New(env.Entry.WorkspaceDir, env.Watcher, env.Log), nil
	},
	Fields: func(hc config.HandlerConfig) []handlers.Field {
		return append(handlers.CommonFields(hc),
			handlers.Field{Key: "monitors", Value: filepath.Join(hc.WorkspaceDir, "<user>") + " (recursive, from user_created)"})
	},
}

// Thredds describes the Thredds handler, which has no code of its own in
// the original either: its events are logged.
var Thredds = handlers.Descriptor{HandlerKind: config.HandlerKind{Name: "Thredds"}, Type: handlers.Named("Thredds")}

// Nginx describes the Nginx handler, which only logs its events.
var Nginx = handlers.Descriptor{HandlerKind: config.HandlerKind{Name: "Nginx"}, Type: handlers.Named("Nginx")}
