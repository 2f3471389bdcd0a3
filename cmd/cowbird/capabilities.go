package main

import (
	"github.com/cowbird-go/cowbird/catalog"
	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/geoserver"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/hooks"
	"github.com/cowbird-go/cowbird/magpie"
)

// handlerKinds holds a value of each handler's type, by name, so that what
// a handler reacts to can be read from its capability interfaces without
// building it (handlers info, the event matrix in docs/handlers.md).
var handlerKinds = map[string]handlers.Handler{
	filesystem.Name:       (*filesystem.Handler)(nil),
	geoserver.HandlerName: (*geoserver.Handler)(nil),
	"Magpie":              (*magpie.Handler)(nil),
	catalog.Name:          (*catalog.Handler)(nil),
	hooks.Name:            (*hooks.Handler)(nil),
	"Thredds":             handlers.Named("Thredds"),
	"Nginx":               handlers.Named("Nginx"),
}

// capabilities lists the events h has code for, in the original's names.
func capabilities(h handlers.Handler) []string {
	var evs []string
	if _, ok := h.(handlers.UserHandler); ok {
		evs = append(evs, "user_created", "user_deleted")
	}
	if _, ok := h.(handlers.PermissionHandler); ok {
		evs = append(evs, "permission_created", "permission_deleted")
	}
	if _, ok := h.(handlers.FileHandler); ok {
		evs = append(evs, "on_created", "on_modified", "on_deleted")
	}
	if _, ok := h.(handlers.Resyncer); ok {
		evs = append(evs, "resync")
	}
	return evs
}
