// Package app is cowbird's composition root: from the loaded configuration
// it builds the state store, the handlers (from their descriptors), the
// dispatcher, the file monitor, the actions service and the HTTP API, and
// runs them until its context ends.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/catalog"
	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/geoserver"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/hooks"
	"github.com/cowbird-go/cowbird/magpie"
)

// Kinds are the handlers this build knows, one descriptor each, in the
// order `handlers info` and the docs list them. Adding a handler is one
// package and one line here.
var Kinds = []handlers.Descriptor{
	filesystem.Descriptor,
	geoserver.Descriptor,
	magpie.Descriptor,
	catalog.Descriptor,
	catalog.Thredds,
	catalog.Nginx,
	hooks.Descriptor,
}

// ConfigKinds are the config parts of kinds, for config.Load.
func ConfigKinds(kinds []handlers.Descriptor) []config.HandlerKind {
	out := make([]config.HandlerKind, len(kinds))
	for i, k := range kinds {
		out[i] = k.HandlerKind
	}
	return out
}

// Lookup returns the descriptor of the handler named name.
func Lookup(kinds []handlers.Descriptor, name string) (handlers.Descriptor, bool) {
	for _, k := range kinds {
		if k.Name == name {
			return k, true
		}
	}
	return handlers.Descriptor{}, false
}

// Options configure Run.
type Options struct {
	// Settings are the daemon's resolved settings (COWBIRD_*, INI, flags):
	// config path, listen address, data directory, logging, timeouts.
	Settings config.Settings
	// Demo runs on a demo tree with the Magpie and GeoServer emulators; no
	// config path is needed. DemoDir is where to build it (a temp dir when
	// empty); an empty Settings.DataDir then puts the state in DemoDir/data.
	Demo    bool
	DemoDir string
	// Listener, when set, is served instead of listening on Settings.Addr.
	Listener net.Listener
	// Log is the daemon's logger; Run sets its level and format.
	Log *logrus.Logger
	// Out receives the demo's description.
	Out io.Writer
	// Ready is called with the bound address once requests are accepted.
	Ready func(addr string)
	// Version is the daemon's build version (GET /version).
	Version string
	// Kinds replaces the handler descriptors (tests); nil means Kinds.
	Kinds []handlers.Descriptor
}

// shutdownTimeout bounds the drain of HTTP requests and actions in flight.
const shutdownTimeout = 10 * time.Second

// UsageError marks a configuration or settings error (exit code 2).
type UsageError struct{ Err error }

// Error implements error.
func (e UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e UsageError) Unwrap() error { return e.Err }

// Run builds the daemon and serves until ctx ends, then shuts it down:
// HTTP first, then the monitor and background work, then the state store.
// Configuration problems are returned as UsageError.
func Run(ctx context.Context, o Options) error {
	if o.Kinds == nil {
		o.Kinds = Kinds
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Ready == nil {
		o.Ready = func(string) {}
	}
	ln := o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", o.Settings.Addr); err != nil {
			return fmt.Errorf("listen %s: %w", o.Settings.Addr, err)
		}
	}
	d, err := build(ctx, o, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return errors.Join(err, ln.Close())
	}
	return d.run(ctx, ln, o.Ready)
}

// DispatchOrder lists the active handlers of cfg in the order the daemon
// dispatches to them: ascending priority (unset last), then config order.
func DispatchOrder(cfg *config.Config) []string {
	regs := make([]handlers.Registration, len(cfg.Handlers))
	for i, hc := range cfg.Handlers {
		regs[i] = handlers.Registration{Handler: handlers.Named(hc.Name), Active: hc.Active, Priority: hc.Priority}
	}
	reg, _ := handlers.NewRegistry(regs...) // config.Load keeps one entry per name
	var names []string
	for _, h := range reg.Active() {
		names = append(names, h.Name())
	}
	return names
}

// Describe lists a handler entry's settings for `handlers info`: name,
// active, priority, the events its code reacts to, then its own keys
// (secrets masked).
func Describe(hc config.HandlerConfig) []handlers.Field {
	priority := "unset"
	if hc.Priority != nil {
		priority = strconv.Itoa(*hc.Priority)
	}
	kind, _ := Lookup(Kinds, hc.Name)
	events := "none (every event is logged only)"
	if evs := handlers.Capabilities(kind.Type); len(evs) > 0 {
		events = strings.Join(evs, ", ")
	}
	fs := []handlers.Field{{Key: "name", Value: hc.Name}, {Key: "active", Value: strconv.FormatBool(hc.Active)},
		{Key: "priority", Value: priority}, {Key: "events", Value: events}}
	if kind.Fields == nil {
		return append(fs, handlers.CommonFields(hc)...)
	}
	return append(fs, kind.Fields(hc)...)
}
