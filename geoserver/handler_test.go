package geoserver

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/geoserver/geoservertest"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
	"github.com/cowbird-go/cowbird/monitor"
	"github.com/cowbird-go/cowbird/store"
)

// env is a handler wired to both emulators, a real monitor (not running), a
// real bbolt file and running Jobs.
type env struct {
	t      *testing.T
	dir    string // workspace_dir
	dbDir  string
	gs     *geoservertest.Server
	client *Client
	mg     *magpietest.Server
	mc     *magpie.Client
	svcID  int
	mon    *monitor.Monitor
	watch  Watcher
	db     *store.DB
	jobs   *Jobs
	h      *Handler
	stop   func() // stops Jobs.Run and waits for it
	jopts  JobsOptions
	// sink receives the monitor's events once runMonitor was called.
	sink atomic.Pointer[func(context.Context, handlers.FileEvent) error]
}

func testLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func newEnv(t *testing.T, mopts magpietest.Options) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), dbDir: t.TempDir()}
	e.gs = geoservertest.NewServer(t, geoservertest.Options{PathMap: map[string]string{DefaultContainerWorkspaceDir: e.dir}})
	e.client = NewClient(ClientOptions{URL: e.gs.URL(), User: geoservertest.DefaultUser, Password: geoservertest.DefaultPassword})
	mopts.QuietSeeding = true
	e.mg = magpietest.NewServer(t, mopts)
	var err error
	if e.svcID, err = e.mg.AddService("geoserver", "geoserver"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mg.AddUser("alice", ""); err != nil {
		t.Fatal(err)
	}
	e.mc = magpie.NewClient(magpie.ClientOptions{URL: e.mg.URL(), AdminUser: "admin", AdminPassword: "qwertyqwerty"})
	e.mon = monitor.New(monitor.Options{Sink: func(ctx context.Context, ev handlers.FileEvent) error {
		if f := e.sink.Load(); f != nil {
			return (*f)(ctx, ev)
		}
		return nil
	}})
	e.watch = e.mon
	// Validation retries without bound here: the tests decide when files come.
	e.jopts = JobsOptions{Backoff: handlers.Backoff{Base: time.Millisecond, Max: 5 * time.Millisecond}, MaxValidateRetries: 1 << 30}
	if err := os.Mkdir(filepath.Join(e.dir, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.start()
	t.Cleanup(func() { e.stop(); _ = e.db.Close() })
	return e
}

// start opens the store, builds Jobs and the handler, and runs the jobs.
func (e *env) start() {
	e.t.Helper()
	var err error
	if e.db, err = store.Open(e.dbDir); err != nil {
		e.t.Fatal(err)
	}
	e.jobs = NewJobs(e.db, e.jopts)
	if e.h, err = New(e.dir, e.client, e.mc, e.watch, e.jobs, testLog(), Options{}); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	loaded := e.jobs.changes()
	go func() { done <- e.jobs.Run(ctx) }()
	select { // Run announces the loaded jobs
	case <-loaded:
	case <-time.After(10 * time.Second):
		e.t.Fatal("jobs not loaded")
	}
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Error(err)
		}
		e.stop = func() {}
	}
}

// restart stops the jobs, closes the store and starts everything again.
func (e *env) restart() {
	e.t.Helper()
	e.stop()
	if err := e.db.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.start()
}

func (e *env) wait() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.jobs.Wait(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// waitFor waits until cond holds, re-checking at every jobs state change.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		ch := e.jobs.changes()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			e.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (e *env) path(rel string) string { return filepath.Join(e.dir, filepath.FromSlash(rel)) }

func (e *env) mode(rel string) os.FileMode {
	e.t.Helper()
	fi, err := os.Lstat(e.path(rel))
	if err != nil {
		e.t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func (e *env) chmod(rel string, m os.FileMode) {
	e.t.Helper()
	if err := os.Chmod(e.path(rel), m); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) write(rel string, m os.FileMode) {
	e.t.Helper()
	if err := os.WriteFile(e.path(rel), []byte("x"), m); err != nil {
		e.t.Fatal(err)
	}
	e.chmod(rel, m)
}

func (e *env) file(ctx context.Context, op handlers.FileOp, rel string) {
	e.t.Helper()
	if err := e.h.HandleFile(ctx, handlers.FileEvent{Op: op, Path: e.path(rel), Handler: HandlerName}); err != nil {
		e.t.Fatalf("HandleFile(%s %s) = %v", op, rel, err)
	}
}

// aliceEnv is an env in which alice's user_created ran to its end.
func aliceEnv(t *testing.T) (context.Context, *env) {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t, magpietest.Options{})
	e.userCreated(ctx)
	e.wait()
	return ctx, e
}

func (e *env) userCreated(ctx context.Context) {
	e.t.Helper()
	if err := e.h.UserCreated(ctx, handlers.UserEvent{Action: handlers.Created, UserName: "alice"}); err != nil {
		e.t.Fatal(err)
	}
}

// perms returns alice's direct rows on resource id.
func (e *env) perms(id int) []string { return e.mg.UserPermissions("alice", id) }

func rows(names []string, access, scope string) []string {
	var out []string
	for _, n := range names {
		out = append(out, n+"-"+access+"-"+scope)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

const ds = "alice/shapefile_datastore"

func TestUserCreatedAndDeleted(t *testing.T) {
	ctx, e := aliceEnv(t)

	if got := e.mode(ds); got != 0o757 {
		t.Errorf("datastore mode = %o, want 757", got)
	}
	want := []monitor.Registration{{Path: e.path(ds), Handler: HandlerName, Recursive: true}}
	if got := e.mon.Registrations(); !slices.Equal(got, want) {
		t.Errorf("registrations = %+v, want %+v", got, want)
	}
	if got := e.gs.Workspaces(); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("geoserver workspaces = %v", got)
	}
	d, ok := e.gs.Datastore("alice", DatastoreName("alice"))
	if url, _ := d.Param("url"); !ok || url != "file:///user_workspaces/alice/shapefile_datastore" {
		t.Errorf("datastore = %+v, %v", d, ok)
	}
	if st := e.h.Status(); len(st.Pending) != 0 || len(st.Failed) != 0 {
		t.Errorf("status = %+v", st)
	}

	// A mode change creates the Magpie workspace resource; deletion removes it.
	e.file(ctx, handlers.FileModified, ds)
	if _, ok := e.mg.Lookup("geoserver", "alice"); !ok {
		t.Fatal("magpie workspace resource not created")
	}
	if err := e.h.UserDeleted(ctx, handlers.UserEvent{Action: handlers.Deleted, UserName: "alice"}); err != nil {
		t.Fatal(err)
	}
	e.wait()
	if got := e.gs.Workspaces(); len(got) != 0 {
		t.Errorf("geoserver workspaces after deletion = %v", got)
	}
	if got := e.mon.Registrations(); len(got) != 0 {
		t.Errorf("registrations after deletion = %+v", got)
	}
	if _, ok := e.mg.Lookup("geoserver", "alice"); ok {
		t.Error("magpie workspace resource still there")
	}
	if e.mode(ds) != 0o757 {
		t.Error("datastore directory touched by the deletion")
	}
}

func TestHandlerBadInput(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, magpietest.Options{})
	err := e.h.UserCreated(ctx, handlers.UserEvent{Action: handlers.Created, UserName: "../x"})
	if err == nil || !strings.Contains(err.Error(), "user_name") {
		t.Errorf("UserCreated(../x) = %v, want an error naming user_name", err)
	}
	err = e.h.UserCreated(ctx, handlers.UserEvent{Action: handlers.Created, UserName: "bob"})
	if err == nil || !strings.Contains(err.Error(), "user workspace") {
		t.Errorf("UserCreated(bob without workspace) = %v", err)
	}
	_, err = New("", nil, e.mc, e.watch, e.jobs, testLog(), Options{})
	if err == nil || !strings.Contains(err.Error(), "workspace_dir") || !strings.Contains(err.Error(), "client") {
		t.Errorf("New(bad) = %v, want errors naming workspace_dir and client", err)
	}
	if err := NewJobs(e.db, JobsOptions{}).Run(ctx); err == nil {
		t.Error("Run without a bound handler succeeded")
	}
}

func TestShapefilePublishAndRemove(t *testing.T) {
	ctx, e := aliceEnv(t)
	// Others may read the datastore but not write it, so that the
	// workspace permissions the new entries set leave the layer's others
	// bits alone.
	e.chmod(ds, 0o755)
	const layer = "a.b.c"
	for _, ext := range []string{".shp", ".prj", ".dbf", ".cpg"} {
		e.write(ds+"/"+layer+ext, 0o640)
	}
	e.chmod(ds+"/"+layer+".shp", 0o664)
	e.file(ctx, handlers.FileCreated, ds+"/"+layer+".shp")

	// The .shx is missing: validation retries until it comes.
	e.waitFor("a validation retry", func() bool {
		p := e.h.Status().Pending
		return len(p) == 1 && p[0].Steps[p[0].Next].Kind == StepValidateShapefile && p[0].Retries > 0
	})
	if got := e.gs.Layers("alice"); len(got) != 0 {
		t.Fatalf("published before validation: %v", got)
	}
	e.write(ds+"/"+layer+".shx", 0o600)
	e.wait()
	if got := e.gs.Layers("alice"); !slices.Equal(got, []string{layer}) {
		t.Errorf("layers = %v, want [%s]", got, layer)
	}

	// Companions took the .shp's others bits; Magpie got read on the layer.
	for _, ext := range []string{".prj", ".dbf", ".cpg"} {
		if got := e.mode(ds + "/" + layer + ext); got != 0o644 {
			t.Errorf("%s mode = %o, want 644", ext, got)
		}
	}
	if got := e.mode(ds + "/" + layer + ".shx"); got != 0o600 {
		t.Errorf(".shx (created after the event) mode = %o, want 600", got)
	}
	layerID, ok := e.mg.Lookup("geoserver", "alice", layer)
	if !ok {
		t.Fatal("magpie layer resource missing")
	}
	if got, want := e.perms(layerID), rows(readableNames, "allow", "match"); !slices.Equal(got, want) {
		t.Errorf("layer permissions = %v, want %v", got, want)
	}
	// The new entry modified the datastore: the workspace got read.
	wsID, _ := e.mg.Lookup("geoserver", "alice")
	if got, want := e.perms(wsID), rows(readableNames, "allow", "recursive"); !slices.Equal(got, want) {
		t.Errorf("workspace permissions = %v, want %v", got, want)
	}
	e.consistent(ctx, layer)

	if err := os.Remove(e.path(ds + "/" + layer + ".shp")); err != nil {
		t.Fatal(err)
	}
	e.file(ctx, handlers.FileDeleted, ds+"/"+layer+".shp")
	e.wait()
	entries, err := os.ReadDir(e.path(ds))
	if err != nil || len(entries) != 0 {
		t.Errorf("datastore after deletion holds %v (%v)", entries, err)
	}
	if got := e.gs.Layers("alice"); len(got) != 0 {
		t.Errorf("layers after deletion = %v", got)
	}
	if _, ok := e.mg.Lookup("geoserver", "alice", layer); ok {
		t.Error("magpie layer resource still there")
	}
	if _, ok := e.mg.Lookup("geoserver", "alice"); !ok {
		t.Error("magpie workspace resource removed with the layer")
	}
}

// TestIgnoredPaths: what happens outside the datastore, below its
// entries, and the modification of an entry that is no .shp, is nothing
// for the handler.
func TestIgnoredPaths(t *testing.T) {
	ctx, e := aliceEnv(t)
	e.write(ds+"/notes.txt", 0o644)
	e.write(ds+"/x.dbf", 0o644)
	if err := os.Mkdir(e.path(ds+"/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.write(ds+"/sub/y.shp", 0o644)
	e.write("alice/other.shp", 0o644)
	e.file(ctx, handlers.FileModified, ds+"/notes.txt")
	e.file(ctx, handlers.FileModified, ds+"/x.dbf")
	for _, rel := range []string{"alice/other.shp", ds + "/sub/y.shp", "alice", "elsewhere/x.shp"} {
		e.file(ctx, handlers.FileModified, rel)
		e.file(ctx, handlers.FileCreated, rel)
		e.file(ctx, handlers.FileDeleted, rel)
	}
	e.wait()
	if got := e.mg.Resources(); len(got) != 1 {
		t.Errorf("magpie resources = %+v, want only the service", got)
	}
	if got := e.gs.Layers("alice"); len(got) != 0 {
		t.Errorf("layers = %v", got)
	}
}

func TestWorkspaceModeToPermissions(t *testing.T) {
	ctx, e := aliceEnv(t)
	steps := []struct {
		mode, final os.FileMode
		want        []string
	}{
		// Default deny already resolves right: nothing is written.
		{0o750, 0o750, nil},
		{0o757, 0o757, append(rows(readableNames, "allow", "recursive"), rows(writableNames, "allow", "recursive")...)},
		// Write removed: the allows go, default deny is enough.
		{0o755, 0o755, rows(readableNames, "allow", "recursive")},
		// Read without execute is not readable: the read allows go, and
		// the directory then follows Magpie (others r cleared, x kept), as
		// the original's directory does once Magpie's webhooks for those
		// deletions come back.
		{0o754, 0o751, nil},
	}
	for _, s := range steps {
		e.chmod(ds, s.mode)
		e.file(ctx, handlers.FileModified, ds)
		id, _ := e.mg.Lookup("geoserver", "alice")
		got := e.perms(id)
		want := slices.Clone(s.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("mode %o: permissions = %v, want %v", s.mode, got, want)
		}
		if e.mode(ds) != s.final {
			t.Errorf("mode %o changed to %o, want %o", s.mode, e.mode(ds), s.final)
		}
		e.consistent(ctx)
	}
}

// TestPermissionsToModes maps Magpie permissions onto the files
// (cowbird.md §3.4.9), with the recursive permission on the workspace, then
// on the service, and the normalization that follows each change of a
// file's mode (§3.4.8, the original's watchdog round trip): a .shp made
// readable gets every read permission, a datastore made writable every
// write permission, and the layers then follow the workspace's new
// permissions. The example sequence of §3.4.9 comes from the original's
// unit tests, which call the handler without the monitor, so without that
// round trip.
func TestPermissionsToModes(t *testing.T) {
	for _, on := range []string{"workspace", "service"} {
		t.Run(on, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, magpietest.Options{})
			e.userCreated(ctx)
			e.wait()
			files := []string{ds + "/s.shp", ds + "/s.shx", ds + "/s.dbf", ds + "/s.prj"}
			for _, f := range files {
				e.write(f, 0o660)
			}
			e.chmod(ds, 0o771)
			wsID, err := e.mg.AddResource(e.svcID, "alice", "workspace")
			if err != nil {
				t.Fatal(err)
			}
			layerID, err := e.mg.AddResource(wsID, "s", "layer")
			if err != nil {
				t.Fatal(err)
			}
			recID := wsID
			if on == "service" {
				recID = e.svcID
			}
			set := func(id int, perm string) {
				t.Helper()
				if err := e.mg.SetUserPermission("alice", id, perm); err != nil {
					t.Fatal(err)
				}
				p, _ := magpie.ParsePermission(perm)
				e.permEvent(ctx, handlers.Created, id, p)
			}
			del := func(id int, name, scope string) {
				t.Helper()
				if err := e.mg.DeleteUserPermission("alice", id, name); err != nil {
					t.Fatal(err)
				}
				e.permEvent(ctx, handlers.Deleted, id, magpie.Permission{Name: name, Access: "allow", Scope: scope})
			}
			check := func(step string, dir, file os.FileMode, wsRows, layerRows []string) {
				t.Helper()
				if got := e.mode(ds); got != dir {
					t.Errorf("%s: datastore mode = %o, want %o", step, got, dir)
				}
				for _, f := range files {
					if got := e.mode(f); got != file {
						t.Errorf("%s: %s mode = %o, want %o", step, f, got, file)
					}
				}
				for _, r := range []struct {
					what string
					id   int
					want []string
				}{{"workspace", wsID, wsRows}, {"layer", layerID, layerRows}} {
					want := slices.Clone(r.want)
					slices.Sort(want)
					if got := e.perms(r.id); !slices.Equal(got, want) {
						t.Errorf("%s: %s permissions = %v, want %v", step, r.what, got, want)
					}
				}
				e.consistent(ctx, "s")
			}
			readMatch := rows(readableNames, "allow", "match")
			otherWrites := rows(writableNames[1:], "allow", "recursive")

			// getmap makes the layer readable; the .shp's mode change
			// normalizes the layer to every read permission.
			set(layerID, "getmap-allow-match")
			check("getmap on the layer", 0o771, 0o664, nil, readMatch)

			// A recursive write reaches the directory and the layer; the
			// directory's mode change normalizes the workspace to every
			// write permission (createstoredquery, already resolved, stays
			// where it is).
			set(recID, "createstoredquery-allow-recursive")
			wsRows := otherWrites
			if on == "workspace" {
				wsRows = append(rows(writableNames[:1], "allow", "recursive"), otherWrites...)
			}
			check("recursive write", 0o773, 0o666, wsRows, readMatch)

			// Denying one write permission changes no mode: the others
			// still allow writing, and nothing is normalized.
			set(recID, "createstoredquery-deny-recursive")
			if on == "workspace" {
				wsRows = append(rows(writableNames[:1], "deny", "recursive"), otherWrites...)
			}
			check("one write denied", 0o773, 0o666, wsRows, readMatch)

			// Once the last write allow is gone, the directory and the
			// layer lose others w.
			for _, name := range writableNames[1:] {
				del(wsID, name, "recursive")
			}
			wsRows = nil
			if on == "workspace" {
				wsRows = rows(writableNames[:1], "deny", "recursive")
			}
			check("writes deleted", 0o771, 0o664, wsRows, readMatch)
		})
	}
}

func (e *env) permEvent(ctx context.Context, action handlers.Action, id int, p magpie.Permission) {
	e.t.Helper()
	ev := handlers.PermissionEvent{Action: action, ServiceType: "geoserver", ResourceID: id,
		PermName: p.Name, Access: p.Access, Scope: p.Scope, User: "alice"}
	var err error
	if action == handlers.Created {
		err = e.h.PermissionCreated(ctx, ev)
	} else {
		err = e.h.PermissionDeleted(ctx, ev)
	}
	if err != nil {
		e.t.Fatalf("%s %s on %d: %v", action, p, id, err)
	}
}

func TestPermissionEventsIgnored(t *testing.T) {
	ctx, e := aliceEnv(t)
	wsID, err := e.mg.AddResource(e.svcID, "alice", "workspace")
	if err != nil {
		t.Fatal(err)
	}
	before := e.mode(ds)
	requests := e.mc.Requests()
	for _, ev := range []handlers.PermissionEvent{
		{Action: handlers.Created, ResourceID: wsID, PermName: "getmap", Access: "deny", Scope: "match", Group: "users"},
		{Action: handlers.Created, ResourceID: wsID, PermName: "read", Access: "deny", Scope: "match", User: "alice"},
	} {
		if err := e.h.PermissionCreated(ctx, ev); err != nil {
			t.Errorf("PermissionCreated(%+v) = %v, want nil", ev, err)
		}
	}
	if e.mode(ds) != before || e.mc.Requests() != requests {
		t.Errorf("ignored events changed something: mode %o, %d magpie requests", e.mode(ds), e.mc.Requests()-requests)
	}
}
