package handlers

import (
	"context"
	"errors"
)

// Handler is anything registered under a name. What it reacts to is given by
// the optional capability interfaces below, found by type assertion.
type Handler interface {
	// Name is the handler's configuration key, e.g. "FileSystem".
	Name() string
}

// UserHandler reacts to Magpie user webhooks.
type UserHandler interface {
	Handler
	UserCreated(ctx context.Context, ev UserEvent) error
	UserDeleted(ctx context.Context, ev UserEvent) error
}

// PermissionHandler reacts to Magpie permission webhooks.
type PermissionHandler interface {
	Handler
	PermissionCreated(ctx context.Context, ev PermissionEvent) error
	PermissionDeleted(ctx context.Context, ev PermissionEvent) error
}

// FileHandler reacts to changes under the paths it watches.
type FileHandler interface {
	Handler
	HandleFile(ctx context.Context, ev FileEvent) error
}

// Resyncer brings everything a handler manages back to the desired state.
type Resyncer interface {
	Handler
	Resync(ctx context.Context) error
}

// IsTransient reports whether err (or an error it wraps) declares itself
// worth retrying later with a method Transient() bool returning true, as the
// Magpie and GeoServer clients' errors do for timeouts and 5xx answers.
func IsTransient(err error) bool {
	var t interface{ Transient() bool }
	return errors.As(err, &t) && t.Transient()
}

// HandlerError names the handler an error came from.
type HandlerError struct {
	Handler string
	Err     error
	// Retrying is true when the journal keeps the event pending for this
	// handler: it will be tried again.
	Retrying bool
}

// Retrying reports whether err, from Submit, holds only failures that the
// journal retries: the event is safely kept, nothing failed for good.
func Retrying(err error) bool {
	if err == nil {
		return false
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !Retrying(e) {
				return false
			}
		}
		return true
	}
	var he *HandlerError
	return errors.As(err, &he) && he.Retrying
}

// Error implements error.
func (e *HandlerError) Error() string { return e.Handler + ": " + e.Err.Error() }

// Unwrap returns the handler's error.
func (e *HandlerError) Unwrap() error { return e.Err }

// Named is a handler with no capability, such as Thredds and Nginx: the
// dispatcher logs the original's "not implemented" line for each of its
// events and its resync.
type Named string

// Name implements Handler.
func (n Named) Name() string { return string(n) }
