package filesystem_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
)

// gatedMagpie is a Magpie session that calls inPerms each time it is
// asked for a user's permissions, before answering.
type gatedMagpie struct {
	filesystem.Magpie
	inPerms func()
}

func (g gatedMagpie) UserPermissions(ctx context.Context, user string, resID int, v magpie.View) ([]magpie.Permission, error) {
	g.inPerms()
	return g.Magpie.UserPermissions(ctx, user, resID, v)
}

// A file event holds the handler's lock while it runs: a user_deleted that
// arrives while the event waits for Magpie waits for the event, so the
// event cannot recreate part of the deleted workspace. The event is stopped
// in its Magpie call (after it checked the workspace, before it makes the
// link directories) and user_deleted is started there.
func TestFileEventHoldsLockAgainstUserDeleted(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	src := e.file(e.userFile("weaver", "alice", "job/out.nc"), 0o664)
	c := ctx(t)
	deleted := make(chan error, 1)
	var h *filesystem.Handler
	var calls atomic.Int32
	inPerms := func() {
		if calls.Add(1) > 1 {
			return
		}
		userDeleted := func() { deleted <- h.UserDeleted(c, handlers.UserEvent{Action: handlers.Deleted, UserName: "alice"}) }
		if !filesystem.LockHeld(h) {
			t.Error("the file event asks Magpie without holding the handler's lock")
			userDeleted() // nothing stops it from running to completion now
			return
		}
		go userDeleted() // waits for the file event
	}
	var err error
	h, err = filesystem.New(e.cfg, func() filesystem.Magpie { return gatedMagpie{e.client.WithCache(), inPerms} },
		nil, quietLog(), filesystem.Options{Workers: 1})
	must(t, err)
	t.Cleanup(func() { _ = h.Close() })

	must(t, h.HandleFile(c, handlers.FileEvent{Op: handlers.FileCreated, Path: src, Handler: filesystem.Name}))
	select {
	case err := <-deleted:
		must(t, err)
	case <-c.Done():
		t.Fatal("user_deleted did not finish")
	}
	if calls.Load() == 0 {
		t.Fatal("the file event did not ask Magpie for alice's permissions")
	}
	if ws := filepath.Join(e.ws, "alice"); exists(ws) {
		t.Errorf("%s exists after user_deleted: the file event recreated it: %v", ws, snapshot(t, ws))
	}
}
