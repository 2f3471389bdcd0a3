package handlers

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/config"
)

// Descriptor is all the daemon knows of one kind of handler: its name and
// config keys (config.HandlerKind), the capabilities of its type, how to
// build it and how to describe its settings. Each handler package exports
// one; the composition root lists them, and config loading, `handlers
// list|info`, capability reports and construction all read that list.
type Descriptor struct {
	config.HandlerKind
	// Type is a value of the handler's type (a nil pointer will do), whose
	// capability interfaces say what it reacts to without building it.
	Type Handler
	// New builds the active handler; nil for a handler that only logs its
	// events (Named).
	New func(ctx context.Context, env Env) (Handler, error)
	// Fields lists the handler's own settings for `handlers info`, secrets
	// masked; nil lists url and workspace_dir when set.
	Fields func(hc config.HandlerConfig) []Field
	// ShareFiles offers the file events of the handler's watches to the
	// active FileObservers too.
	ShareFiles bool
	// RunsCommands marks a handler whose events run operator commands
	// rather than keep state: rebuilds (user.resync) leave it out.
	RunsCommands bool
}

// Field is one setting of a handler, by config key, as `handlers info`
// prints it.
type Field struct {
	Key, Value string
}

// CommonFields are the url and workspace_dir of an entry, when set.
func CommonFields(hc config.HandlerConfig) []Field {
	var fs []Field
	if hc.URL != "" {
		fs = append(fs, Field{"url", hc.URL})
	}
	if hc.WorkspaceDir != "" {
		fs = append(fs, Field{"workspace_dir", hc.WorkspaceDir})
	}
	return fs
}

// WithCredentials is fields followed by the entry's admin_user and
// admin_password (masked).
func WithCredentials(hc config.HandlerConfig, fields ...Field) []Field {
	for _, kv := range config.SettingsOf[config.Credentials](hc).Fields() {
		fields = append(fields, Field{kv[0], kv[1]})
	}
	return fields
}

// Env is what the composition root gives a handler's constructor.
type Env struct {
	// Log is the handler's logger.
	Log *logrus.Entry
	// Entry is the handler's configuration entry.
	Entry config.HandlerConfig
	// Config is the whole configuration (sync_permissions, hooks and the
	// other handlers' entries).
	Config *config.Config
	// Settings are the daemon's COWBIRD_* settings.
	Settings config.Settings
	// DataDir is the daemon's state directory.
	DataDir string
	// Watcher registers the handler's watches with the file monitor.
	Watcher Watcher
	// HTTPClient returns the client of outbound calls to a service
	// ("magpie", "geoserver"): timeout, TLS settings and metrics applied.
	HTTPClient func(service string) *http.Client
	// Deps are the shared values a handler may need (the state store, the
	// Magpie client, the hook-run recorder), found by type with Dep.
	Deps []any
}

// Dep returns the first of env.Deps that is a T (a concrete type or an
// interface the value implements).
func Dep[T any](env Env) (T, error) {
	for _, d := range env.Deps {
		if v, ok := d.(T); ok {
			return v, nil
		}
	}
	var zero T
	return zero, fmt.Errorf("%s handler: no %T available", env.Entry.Name, &zero)
}

// Watcher is the file monitor as handlers see it.
type Watcher interface {
	// Register watches path for the named handler.
	Register(ctx context.Context, path, handler string, recursive bool) error
	// Unregister removes the watch of path for the named handler.
	Unregister(ctx context.Context, path, handler string) error
	// Changing announces that the handler is about to set path's others
	// bits to others in a watched tree: that change's event is not reported.
	Changing(path string, others fs.FileMode)
}

// Starter is a handler with work to do once before events flow (create a
// root directory, register its watches, check its accounts).
type Starter interface {
	Handler
	Start(ctx context.Context) error
}

// Runner is a handler with background work that runs until ctx ends
// (e.g. a retry queue).
type Runner interface {
	Handler
	Run(ctx context.Context) error
}

// Closer is a handler that holds resources until the daemon stops.
type Closer interface {
	Handler
	Close() error
}

// Readier is a handler that can be up but not ready (Magpie refusing its
// sign-in, say): Ready says why not, for /readyz and the metrics.
type Readier interface {
	Handler
	Ready() error
}

// Collector is a handler that exports metrics.
type Collector interface {
	Handler
	Collectors() []prometheus.Collector
}

// FileObserver receives the file events of the watches of handlers whose
// descriptor shares them (the Hooks handler's wps_output_* and shapefile_*
// hooks); it has no watches of its own.
type FileObserver interface {
	Handler
	ObserveFile(ctx context.Context, ev FileEvent) error
}

// Capabilities lists the events a handler of h's type has code for, in
// the original's names.
func Capabilities(h Handler) []string {
	var evs []string
	if _, ok := h.(UserHandler); ok {
		evs = append(evs, "user_created", "user_deleted")
	}
	if _, ok := h.(PermissionHandler); ok {
		evs = append(evs, "permission_created", "permission_deleted")
	}
	_, files := h.(FileHandler)
	if _, observes := h.(FileObserver); files || observes {
		evs = append(evs, "on_created", "on_modified", "on_deleted")
	}
	if _, ok := h.(Resyncer); ok {
		evs = append(evs, "resync")
	}
	return evs
}
