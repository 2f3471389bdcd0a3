package geoserver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
	"github.com/cowbird-go/cowbird/monitor"
)

// consistent fails the test unless alice's files and her Magpie
// permissions agree: the datastore is readable by others (r and x) exactly
// when a read permission resolves to allow on her workspace resource, and
// writable exactly when a write permission does; the same for the .shp of
// each layer and its layer resource.
func (e *env) consistent(ctx context.Context, layers ...string) {
	e.t.Helper()
	check := func(what, rel string, id int, readable, writable bool) {
		e.t.Helper()
		eff, err := e.mc.UserPermissions(ctx, "alice", id, magpie.Effective)
		if err != nil {
			e.t.Fatal(err)
		}
		var r, w bool
		for _, p := range eff {
			if p.Access == "allow" {
				r = r || slices.Contains(readableNames, p.Name)
				w = w || slices.Contains(writableNames, p.Name)
			}
		}
		if r != readable || w != writable {
			e.t.Errorf("%s %s (mode %o): others read %v, write %v; magpie read %v, write %v (direct %v)",
				what, rel, e.mode(rel), readable, writable, r, w, e.perms(id))
		}
	}
	wsID, ok := e.mg.Lookup("geoserver", "alice")
	if !ok {
		e.t.Error("no magpie workspace resource")
		return
	}
	m := e.mode(ds)
	check("datastore", ds, wsID, m&0o5 == 0o5, m&0o2 != 0)
	for _, l := range layers {
		id, ok := e.mg.Lookup("geoserver", "alice", l)
		if !ok {
			e.t.Errorf("no magpie layer resource %q", l)
			continue
		}
		rel := ds + "/" + l + ".shp"
		m := e.mode(rel)
		check("layer", rel, id, m&0o4 != 0, m&0o2 != 0)
	}
}

// runMonitor runs the monitor until the test ends, its events going to the
// handler; each handled event is sent on the returned channel.
func (e *env) runMonitor() <-chan handlers.FileEvent {
	e.t.Helper()
	handled := make(chan handlers.FileEvent, 1024)
	sink := func(ctx context.Context, ev handlers.FileEvent) error {
		err := e.h.HandleFile(ctx, ev)
		handled <- ev
		return err
	}
	e.sink.Store(&sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.mon.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Error(err)
		}
	})
	select {
	case <-e.mon.Started():
	case <-time.After(10 * time.Second):
		e.t.Fatal("monitor not started")
	}
	return handled
}

// until waits for cond, re-checking after every handled file event.
func until(t *testing.T, handled <-chan handlers.FileEvent, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-handled:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// writeShapefile writes the four required files of layer with mode m, the
// .shp last.
func (e *env) writeShapefile(layer string, m os.FileMode) {
	e.t.Helper()
	for _, ext := range []string{".shx", ".dbf", ".prj", ".shp"} {
		e.write(ds+"/"+layer+ext, m)
	}
}

// Item 3: a workspace_dir that does not exist yet is created at start-up,
// and one that cannot be used yet is used once it can; neither stops the
// handler from being built or started.
func TestWorkspaceDirNotThereYet(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, magpietest.Options{})
	newHandler := func(dir string) *Handler {
		t.Helper()
		h, err := New(dir, e.client, e.mc, monitor.New(monitor.Options{}), NewJobs(e.db, JobsOptions{}), testLog(), Options{})
		if err != nil {
			t.Fatalf("New(%s) = %v", dir, err)
		}
		t.Cleanup(func() { _ = h.Close() })
		return h
	}
	created := handlers.UserEvent{Action: handlers.Created, UserName: "alice"}

	t.Run("missing", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data", "user_workspaces")
		h := newHandler(dir)
		if err := h.Start(ctx); err != nil {
			t.Fatalf("Start = %v", err)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Fatalf("workspace_dir not created: %v", err)
		}
		if err := os.Mkdir(filepath.Join(dir, "alice"), 0o755); err != nil { // FileSystem's part
			t.Fatal(err)
		}
		if err := h.UserCreated(ctx, created); err != nil {
			t.Fatalf("UserCreated = %v", err)
		}
	})

	t.Run("unusable", func(t *testing.T) {
		parent := filepath.Join(t.TempDir(), "data")
		if err := os.WriteFile(parent, nil, 0o644); err != nil { // a file where a directory should be
			t.Fatal(err)
		}
		dir := filepath.Join(parent, "user_workspaces")
		h := newHandler(dir)
		if err := h.Start(ctx); err != nil {
			t.Fatalf("Start = %v, want nil (logged)", err)
		}
		if err := h.UserCreated(ctx, created); err == nil || !strings.Contains(err.Error(), "workspace_dir") {
			t.Fatalf("UserCreated without workspace_dir = %v, want an error naming workspace_dir", err)
		}
		// The operator fixes it: the next (retried) event goes through.
		if err := os.Remove(parent); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, "alice"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := h.UserCreated(ctx, created); err != nil {
			t.Fatalf("UserCreated once workspace_dir exists = %v", err)
		}
		if fi, err := os.Stat(filepath.Join(dir, ds)); err != nil || !fi.IsDir() {
			t.Errorf("datastore not created: %v", err)
		}
	})
}

// Item 10: an entry added to or removed from a datastore is, as watchdog's
// modified event on the directory is in the original, what sets the
// user's workspace permissions in Magpie from the directory's mode
// (creating the workspace resource), through the events the monitor
// really reports.
func TestDatastoreEntriesSetWorkspacePermissions(t *testing.T) {
	ctx, e := aliceEnv(t)
	handled := e.runMonitor()
	wsPerms := func() []string {
		id, ok := e.mg.Lookup("geoserver", "alice")
		if !ok {
			return []string{"no workspace resource"}
		}
		return e.perms(id)
	}

	// The datastore is others rwx (user_created): a new file gives alice
	// every permission on her workspace.
	all := append(rows(readableNames, "allow", "recursive"), rows(writableNames, "allow", "recursive")...)
	slices.Sort(all)
	e.write(ds+"/notes.txt", 0o644)
	until(t, handled, "workspace permissions from a new file", func() bool { return slices.Equal(wsPerms(), all) })
	e.consistent(ctx)

	// Others may no longer write: removing a file takes write away.
	e.chmod(ds, 0o755)
	if err := os.Remove(e.path(ds + "/notes.txt")); err != nil {
		t.Fatal(err)
	}
	want := rows(readableNames, "allow", "recursive")
	until(t, handled, "workspace permissions from a removed file", func() bool { return slices.Equal(wsPerms(), want) })
	e.consistent(ctx)

	// A new directory counts too; a file below it does not.
	e.chmod(ds, 0o751)
	if err := os.Mkdir(e.path(ds+"/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	until(t, handled, "workspace permissions from a new directory", func() bool { return len(wsPerms()) == 0 })
	e.consistent(ctx)
}

// Item 11: after a permission event changes a file's mode, Magpie is
// normalized to the whole category at once, without waiting for the
// monitor to report the change.
func TestPermissionNormalizesCategory(t *testing.T) {
	ctx, e := aliceEnv(t)
	e.chmod(ds, 0o751)
	e.writeShapefile("s", 0o660)
	wsID, _ := e.mg.AddResource(e.svcID, "alice", "workspace")
	layerID, _ := e.mg.AddResource(wsID, "s", "layer")
	grant := func(perm string) {
		t.Helper()
		if err := e.mg.SetUserPermission("alice", layerID, perm); err != nil {
			t.Fatal(err)
		}
		p, _ := magpie.ParsePermission(perm)
		e.permEvent(ctx, handlers.Created, layerID, p)
	}
	revoke := func(name string) {
		t.Helper()
		if err := e.mg.DeleteUserPermission("alice", layerID, name); err != nil {
			t.Fatal(err)
		}
		e.permEvent(ctx, handlers.Deleted, layerID, magpie.Permission{Name: name, Access: "allow", Scope: "match"})
	}

	grant("getmap-allow-match")
	if got := e.mode(ds + "/s.shp"); got != 0o664 {
		t.Errorf("s.shp mode = %o, want 664", got)
	}
	if got, want := e.perms(layerID), rows(readableNames, "allow", "match"); !slices.Equal(got, want) {
		t.Errorf("after granting getmap: layer permissions = %v, want every read permission", got)
	}
	e.consistent(ctx, "s")

	// A deletion that leaves the layer readable changes no mode, so it is
	// not undone (the original only normalizes after a mode change).
	revoke("getmap")
	if got, want := len(e.perms(layerID)), len(readableNames)-1; got != want {
		t.Errorf("after revoking getmap: %d layer permissions, want %d", got, want)
	}
	e.consistent(ctx, "s")
	for _, name := range readableNames {
		if name != "getmap" {
			revoke(name)
		}
	}
	if got := e.mode(ds + "/s.shp"); got != 0o660 {
		t.Errorf("after revoking every read permission: s.shp mode = %o, want 660", got)
	}
	if got := e.perms(layerID); len(got) != 0 {
		t.Errorf("after revoking every read permission: layer permissions = %v", got)
	}
	e.consistent(ctx, "s")
}

// Item 11: a change a user makes to a file right after the handler changed
// it is not dropped (the handler asks the monitor to ignore nothing).
func TestUserChangeAfterHandlerChangeKept(t *testing.T) {
	ctx, e := aliceEnv(t)
	e.chmod(ds, 0o751)
	e.writeShapefile("s", 0o660)
	wsID, _ := e.mg.AddResource(e.svcID, "alice", "workspace")
	layerID, _ := e.mg.AddResource(wsID, "s", "layer")
	handled := e.runMonitor()

	if err := e.mg.SetUserPermission("alice", layerID, "getmap-allow-match"); err != nil {
		t.Fatal(err)
	}
	e.permEvent(ctx, handlers.Created, layerID, magpie.Permission{Name: "getmap", Access: "allow", Scope: "match"})
	if got := e.mode(ds + "/s.shp"); got != 0o664 {
		t.Fatalf("s.shp mode = %o, want 664", got)
	}
	// The user takes read away at once, within what used to be the
	// handler's ignore window for its own chmod of that path.
	e.chmod(ds+"/s.shp", 0o660)
	until(t, handled, "the user's chmod to reach magpie", func() bool {
		return len(e.perms(layerID)) == 0 && e.mode(ds+"/s.dbf") == 0o660
	})
	e.consistent(ctx, "s")
}

// Item 12: a shapefile upload and a permission grant on its layer end with
// the files and Magpie in agreement whatever the order the handler sees
// them in, including a grant made, and its event delivered, while the
// upload's event is half done. The interleavings are forced with the
// handler's hook points; no sleep.
func TestUploadAndGrantConverge(t *testing.T) {
	const (
		upload = "upload"  // the user writes the shapefile (others ---)
		grant  = "grant"   // the user grants getmap on the layer in Magpie
		permEv = "perm"    // the grant's webhook reaches the handler
		fileEv = "file"    // the upload's created event reaches the handler
		during = "during " // fileEv, with grant and permEv at a hook point
	)
	orders := [][]string{
		{upload, grant, permEv, fileEv},
		{upload, grant, fileEv, permEv},
		{upload, fileEv, grant, permEv},
		{grant, permEv, upload, fileEv},
		{upload, during + "layer-mode"},
		{upload, during + "layer-files"},
		{upload, during + "effective"},
		{upload, during + "dir-mode"},
	}
	for _, order := range orders {
		t.Run(strings.Join(order, ","), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, magpietest.Options{})
			e.userCreated(ctx)
			e.wait()
			e.chmod(ds, 0o751) // the layer gets nothing from the workspace
			wsID, _ := e.mg.AddResource(e.svcID, "alice", "workspace")
			layerID, err := e.mg.AddResource(wsID, "s", "layer")
			if err != nil {
				t.Fatal(err)
			}
			getmap := handlers.PermissionEvent{Action: handlers.Created, ServiceType: "geoserver", ResourceID: layerID,
				PermName: "getmap", Access: "allow", Scope: "match", User: "alice"}
			doGrant := func() {
				if err := e.mg.SetUserPermission("alice", layerID, "getmap-allow-match"); err != nil {
					t.Error(err)
				}
			}
			for _, step := range order {
				switch {
				case step == upload:
					e.writeShapefile("s", 0o640)
				case step == grant:
					doGrant()
				case step == permEv:
					e.permEvent(ctx, handlers.Created, layerID, magpie.Permission{Name: "getmap", Access: "allow", Scope: "match"})
				case step == fileEv:
					e.file(ctx, handlers.FileCreated, ds+"/s.shp")
				case strings.HasPrefix(step, during):
					point := strings.TrimPrefix(step, during)
					var fired atomic.Bool
					waiting := make(chan struct{}, 1)
					permDone := make(chan error, 1)
					e.h.hook = func(p, _ string) {
						if p == "lock-wait" {
							select {
							case waiting <- struct{}{}:
							default:
							}
							return
						}
						if p != point || !fired.CompareAndSwap(false, true) {
							return
						}
						// The user grants, and Magpie's webhook comes in,
						// while the upload's event is at point.
						doGrant()
						go func() { permDone <- e.h.PermissionCreated(ctx, getmap) }()
						select {
						case <-waiting: // it waits for the workspace
						case err := <-permDone: // it ran in between
							permDone <- err
						}
					}
					e.file(ctx, handlers.FileCreated, ds+"/s.shp")
					if !fired.Load() {
						t.Fatalf("the upload's event never reached %s", point)
					}
					if err := <-permDone; err != nil {
						t.Fatal(err)
					}
				}
			}
			e.wait()
			if got := e.gs.Layers("alice"); !slices.Equal(got, []string{"s"}) {
				t.Errorf("layers = %v, want [s]", got)
			}
			e.consistent(ctx, "s")
			for _, ext := range []string{".shx", ".dbf", ".prj"} {
				if got, shp := e.mode(ds+"/s"+ext), e.mode(ds+"/s.shp"); got&0o7 != shp&0o7 {
					t.Errorf("s%s others bits %o differ from s.shp's %o", ext, got&0o7, shp&0o7)
				}
			}
		})
	}
}

// Item 13: at start-up the handler watches the datastore of every user
// workspace already on disk (the Python Cowbird kept those watches in
// MongoDB), idempotently, so that a shapefile written there afterwards is
// published.
func TestStartWatchesExistingDatastores(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, magpietest.Options{})
	// What the Python Cowbird left: alice's datastore and her GeoServer
	// workspace and datastore; bob without a datastore; an archive, a file
	// and a symlink that are no user workspaces.
	for _, d := range []string{ds, "bob", ".trash/carol/shapefile_datastore"} {
		if err := os.MkdirAll(e.path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(e.path("README"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(e.path("alice"), e.path("eve")); err != nil {
		t.Fatal(err)
	}
	if err := e.client.CreateWorkspace(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := e.client.CreateDatastore(ctx, "alice"); err != nil {
		t.Fatal(err)
	}

	for range 2 {
		if err := e.h.Start(ctx); err != nil {
			t.Fatalf("Start = %v", err)
		}
	}
	want := []monitor.Registration{{Path: e.path(ds), Handler: HandlerName, Recursive: true}}
	if got := e.mon.Registrations(); !slices.Equal(got, want) {
		t.Fatalf("registrations = %+v, want %+v", got, want)
	}

	handled := e.runMonitor()
	e.writeShapefile("roads", 0o644)
	until(t, handled, "the shapefile event", func() bool {
		_, ok := e.mg.Lookup("geoserver", "alice", "roads")
		return ok
	})
	e.wait()
	if got := e.gs.Layers("alice"); !slices.Equal(got, []string{"roads"}) {
		t.Errorf("layers = %v, want [roads]", got)
	}
}

// TestWorkspaceLock: the lock serializes one workspace, leaves others
// free, gives up with ctx and forgets unused entries.
func TestWorkspaceLock(t *testing.T) {
	var l wsLocks
	ctx := context.Background()
	unlockA, err := l.lock(ctx, "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	unlockB, err := l.lock(ctx, "b", func() { t.Error("b contended") })
	if err != nil {
		t.Fatal(err)
	}
	unlockB()
	cctx, cancel := context.WithCancel(ctx)
	contended := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := l.lock(cctx, "a", func() { close(contended) })
		done <- err
	}()
	<-contended
	cancel()
	if err := <-done; err == nil {
		t.Error("lock of a held workspace succeeded after ctx ended")
	}
	got := make(chan struct{})
	go func() {
		u, err := l.lock(ctx, "a", nil)
		if err == nil {
			u()
		}
		close(got)
	}()
	unlockA()
	unlockA() // idempotent
	<-got
	l.mu.Lock()
	n := len(l.m)
	l.mu.Unlock()
	if n != 0 {
		t.Errorf("%d lock entries left", n)
	}
}
