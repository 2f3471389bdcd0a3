package filesystem

import (
	"context"
	"fmt"

	"github.com/cowbird-go/cowbird/magpie"
)

// noMagpie is the Magpie of a FileSystem handler configured without one,
// as the original allows: it knows no user, so workspaces, notebooks
// symlinks and public links work, and user outputs are never linked (they
// stay private). Permission events find no resource and change nothing.
type noMagpie struct{}

func (noMagpie) Users(context.Context) ([]magpie.User, error) { return nil, nil }

func (noMagpie) User(_ context.Context, name string) (magpie.User, error) {
	return magpie.User{}, fmt.Errorf("user %q: no Magpie configured: %w", name, magpie.ErrNotFound)
}

func (noMagpie) GroupUsers(context.Context, string) ([]string, error) { return nil, nil }

func (noMagpie) ServicesByType(context.Context, string) ([]*magpie.Service, error) { return nil, nil }

func (noMagpie) Service(_ context.Context, name string) (*magpie.Service, error) {
	return nil, fmt.Errorf("service %q: no Magpie configured: %w", name, magpie.ErrNotFound)
}

func (noMagpie) Resource(_ context.Context, id int) (*magpie.Resource, error) {
	return nil, fmt.Errorf("resource %d: no Magpie configured: %w", id, magpie.ErrNotFound)
}

func (noMagpie) ResourcePath(context.Context, int) ([]*magpie.Resource, error) { return nil, nil }

func (noMagpie) UserPermissions(context.Context, string, int, magpie.View) ([]magpie.Permission, error) {
	return nil, nil
}
