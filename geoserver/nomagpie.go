package geoserver

import (
	"context"
	"errors"

	"github.com/cowbird-go/cowbird/magpie"
)

// errNoMagpie is the failure of every Magpie step of a handler configured
// without Magpie.
var errNoMagpie = errors.New("no Magpie configured: Magpie workspace and layer permissions are not synced")

// noMagpie is the Magpie of a Geoserver handler configured without one, as
// the original allows: workspaces, datastores and layers are kept in
// GeoServer; each step that needs Magpie fails with errNoMagpie (the
// original failed the same steps when it found no Magpie handler).
type noMagpie struct{}

func (noMagpie) ServicesByType(context.Context, string) ([]*magpie.Service, error) {
	return nil, errNoMagpie
}

func (noMagpie) Resource(context.Context, int) (*magpie.Resource, error) { return nil, errNoMagpie }

func (noMagpie) CreateResource(context.Context, int, string, string) (int, error) {
	return 0, errNoMagpie
}

func (noMagpie) DeleteResource(context.Context, int) error { return errNoMagpie }

func (noMagpie) UserPermissions(context.Context, string, int, magpie.View) ([]magpie.Permission, error) {
	return nil, errNoMagpie
}

func (noMagpie) SetUserPermission(context.Context, string, int, magpie.Permission) (bool, error) {
	return false, errNoMagpie
}

func (noMagpie) DeleteUserPermission(context.Context, string, int, string) error { return errNoMagpie }
