package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/geoserver"
	"github.com/cowbird-go/cowbird/geoserver/geoservertest"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// explainAs reads GET /explain?<q> with the admin token.
func explainAs(t *testing.T, base string, q url.Values) filesystem.Explanation {
	t.Helper()
	code, body := callList(t, base+"/explain?"+q.Encode())
	if code != http.StatusOK {
		t.Fatalf("GET /explain?%s = %d %s", q.Encode(), code, body)
	}
	var x filesystem.Explanation
	must(t, json.Unmarshal([]byte(body), &x))
	for _, f := range x.Facts {
		if f.OK != (f.Fix == "") {
			t.Errorf("fact %+v: a fix exactly when not ok", f)
		}
	}
	return x
}

// facts returns the facts of x with check, in order.
func facts(x filesystem.Explanation, check string) []filesystem.Fact {
	var out []filesystem.Fact
	for _, f := range x.Facts {
		if f.Check == check {
			out = append(out, f)
		}
	}
	return out
}

// fact returns the one fact of x with check whose detail holds all of
// detail, failing the test when there is none.
func fact(t *testing.T, x filesystem.Explanation, check string, detail ...string) filesystem.Fact {
	t.Helper()
	for _, f := range facts(x, check) {
		if !slices.ContainsFunc(detail, func(d string) bool { return !strings.Contains(f.Detail, d) }) {
			return f
		}
	}
	t.Fatalf("no %q fact with %q in:\n%s", check, detail, dump(x))
	return filesystem.Fact{}
}

func dump(x filesystem.Explanation) string {
	var b strings.Builder
	for _, f := range x.Facts {
		fmt.Fprintf(&b, "  %v %s: %s | %s\n", f.OK, f.Check, f.Detail, f.Fix)
	}
	return b.String()
}

// TestExplainComposed: on a bird-house daemon, GET /explain adds to the
// FileSystem facts the GeoServer facts of a user (a layer missing in
// GeoServer), the watches of the user's directories (a degraded one), the
// pending or failed events of the user or of a path's owner and route (a
// failed one, and its being superseded by a reconcile), and the last
// reconcile that covered them.
func TestExplainComposed(t *testing.T) {
	b := startBirdhouseWith(t, "", "cowbird:\n  admin_tokens:\n    ops: "+adminToken+"\n")
	id, err := b.mp.AddUser("gus", "", "users")
	must(t, err)
	ws := filepath.Join(b.dir, "user_workspaces", "gus")
	ds := filepath.Join(ws, "shapefile_datastore")
	eventually(t, "gus's GeoServer datastore", func() bool { _, ok := b.gs.Datastore("gus", geoserver.DatastoreName("gus")); return ok })
	src := filepath.Join(b.dir, "wpsoutputs", "finch", "users", fmt.Sprint(id), "j1", "x.nc")
	must(t, os.MkdirAll(filepath.Dir(src), 0o755))
	must(t, os.WriteFile(src, []byte("x"), 0o644))
	for _, ext := range []string{".shx", ".dbf", ".prj", ".shp"} {
		must(t, os.WriteFile(filepath.Join(ds, "roads"+ext), []byte("x"), 0o664))
	}
	eventually(t, "roads published", func() bool { return slices.Equal(b.gs.Layers("gus"), []string{"roads"}) })
	eventually(t, "x.nc linked", func() bool {
		_, err := os.Lstat(filepath.Join(ws, "wps_outputs", "finch", "j1", "x.nc"))
		return err == nil
	})
	settle(t, b.base)

	user := url.Values{"user": {"gus"}}
	var x filesystem.Explanation
	eventually(t, "no event of gus in flight", func() bool {
		x = explainAs(t, b.base, user)
		return len(facts(x, "pending event")) == 0
	})
	if !x.OK || x.User != "gus" {
		t.Fatalf("sound user: ok %v, fix %q:\n%s", x.OK, x.Fix, dump(x))
	}
	for _, c := range []string{"magpie user", "outputs", "datastore dir", "geoserver workspace", "geoserver datastore", "layers",
		"datastore mode", "layer modes", "geoserver jobs", "events", "last reconcile"} {
		if len(facts(x, c)) != 1 {
			t.Errorf("sound user: %d %q facts:\n%s", len(facts(x, c)), c, dump(x))
		}
	}
	fact(t, x, "watch", "Catalog watches "+ws+" (its tree)")
	fact(t, x, "watch", "Geoserver watches "+ds+" (its tree)")
	fact(t, x, "events", "no pending or failed event of gus among the ")
	fact(t, x, "last reconcile", "no reconcile action covering gus is kept; since start 1 FileSystem reconcile ok, 0 failed")

	// A permission webhook on x.nc's route for a resource Magpie no longer
	// has fails for good; another one on another route does not concern
	// x.nc.
	for _, route := range []string{"finch", "raven"} {
		if code, _ := post(t, b.base+"/webhooks/permissions", `{"event": "created", "service_name": "secure-data-proxy",
			"service_type": "api", "resource_id": 999, "resource_full_name": "/secure-data-proxy/wps_outputs/`+route+`",
			"name": "read", "access": "allow", "scope": "recursive", "user": "gus"}`); code != http.StatusInternalServerError {
			t.Fatalf("permission webhook for a missing resource = %d", code)
		}
	}
	path := url.Values{"path": {src}}
	x = explainAs(t, b.base, path)
	// The Magpie handler (sync_permissions) fails it too: its part is a
	// replay, the FileSystem's a reconcile.
	replay := "cowbird events replay %d --handler Magpie  # after reading its error: cowbird events show %[1]d"
	f := fact(t, x, "failed event", "permission_created perm:gus//999/read on /secure-data-proxy/wps_outputs/finch: FileSystem failed: ")
	var ev int
	fmt.Sscanf(f.Detail, "event %d ", &ev)
	if f.OK || f.Fix != "cowbird resync FileSystem --user gus && "+fmt.Sprintf(replay, ev) ||
		len(facts(x, "failed event")) != 1 || x.OK || x.Fix != f.Fix {
		t.Errorf("the failed event of x.nc: %+v; fix %q\n%s", f, x.Fix, dump(x))
	}
	fact(t, x, "watch", "FileSystem watches "+filepath.Join(b.dir, "wpsoutputs")+" (its tree): file events reach it")
	x = explainAs(t, b.base, user)
	if got := facts(x, "failed event"); len(got) != 2 || !strings.HasPrefix(x.Fix, "cowbird resync FileSystem --user gus && cowbird events replay ") {
		t.Errorf("gus's failed events: %+v, fix %q", got, x.Fix)
	}

	// The fix: a reconcile covering gus, started after the events, which
	// supersedes their FileSystem part.
	_, a := call(t, http.MethodPost, b.base+"/actions/v1/handler.resync", `{"request_id": "gus", "body": {"handler": "FileSystem", "users": ["gus"]}}`)
	aid := a["action_id"].(string)
	waitAction(t, b.base, "handler.resync", aid)
	x = explainAs(t, b.base, path)
	f = fact(t, x, "failed event", "its FileSystem part is superseded: the FileSystem reconcile "+aid+", which covers it, started after it")
	if f.OK || f.Fix != fmt.Sprintf(replay, ev) || x.Fix != f.Fix {
		t.Errorf("after the reconcile: %+v, fix %q", f, x.Fix)
	}
	fact(t, x, "last reconcile", "handler.resync FileSystem (users gus) SUCCEEDED ", "id "+aid+": it covered it")

	// roads disappears from GeoServer.
	gs := geoserver.NewClient(geoserver.ClientOptions{URL: b.gs.URL(), User: geoservertest.DefaultUser, Password: geoservertest.DefaultPassword})
	must(t, gs.RemoveShapefile(context.Background(), "gus", "roads"))
	x = explainAs(t, b.base, user)
	f = fact(t, x, "layers", "not published: roads (GeoServer has no feature type roads)")
	if f.OK || !strings.HasPrefix(f.Fix, "cd "+ds+" && cp -p roads.shp roads.shp.tmp && mv -f roads.shp.tmp roads.shp") || x.Fix != f.Fix {
		t.Errorf("layer missing in GeoServer: %+v, fix %q", f, x.Fix)
	}

	// The datastore directory goes away: the Geoserver watch is degraded.
	must(t, os.RemoveAll(ds))
	eventually(t, "the Geoserver watch degraded", func() bool {
		x = explainAs(t, b.base, user)
		return slices.ContainsFunc(facts(x, "watch"), func(f filesystem.Fact) bool { return !f.OK && strings.HasPrefix(f.Detail, "Geoserver's") })
	})
	f = fact(t, x, "watch", "Geoserver's watch of "+ds+" is degraded since ", "its file events are lost until a retry succeeds")
	if !strings.HasPrefix(f.Fix, "the directory is gone: run the user.resync action for gus") {
		t.Errorf("degraded watch: %+v", f)
	}
	fact(t, x, "datastore dir", ds+" is missing")
}

// TestExplainWithoutFileSystem: without a FileSystem handler, GET /explain
// still answers: a path with the reason nothing links it, a user with
// what the Geoserver handler, the monitor and the journal know.
func TestExplainWithoutFileSystem(t *testing.T) {
	dir := t.TempDir()
	mp := magpietest.NewServer(t, magpietest.Options{})
	gs := geoservertest.NewServer(t, geoservertest.Options{})
	_, err := mp.AddService("geoserver", "geoserver")
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(dir, "user_workspaces", "alice"), 0o755))
	cfg := filepath.Join(dir, "config.yml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`cowbird:
  admin_tokens:
    ops: %[4]s
handlers:
  Magpie:
    active: true
    url: %[2]s
    admin_user: admin
    admin_password: qwertyqwerty
  Geoserver:
    active: true
    url: %[3]s
    workspace_dir: %[1]s/user_workspaces
    admin_user: admin
    admin_password: geoserver
`, dir, mp.URL(), gs.URL(), adminToken)), 0o600))
	base := runDaemon(t, testOptions(t, cfg, dir))

	x := explainAs(t, base, url.Values{"path": {"/data/wpsoutputs/finch/users/3/a.nc"}})
	f := fact(t, x, "handlers", "the FileSystem handler is not active")
	if x.OK || f.OK || x.Fix != f.Fix || x.Path != "/data/wpsoutputs/finch/users/3/a.nc" {
		t.Errorf("path without FileSystem: %+v\n%s", x, dump(x))
	}
	if code, _ := callList(t, base+"/explain?path=relative"); code != http.StatusBadRequest {
		t.Errorf("a relative path = %d, want 400", code)
	}

	x = explainAs(t, base, url.Values{"user": {"alice"}})
	fact(t, x, "handlers", "the FileSystem handler is not active")
	// alice's workspace exists, but no user_created ever reached cowbird.
	f = fact(t, x, "datastore dir", filepath.Join(dir, "user_workspaces", "alice", "shapefile_datastore")+" is missing")
	if x.OK || x.Fix != f.Fix || !strings.Contains(f.Fix, "user.resync") {
		t.Errorf("user without FileSystem: fix %q\n%s", x.Fix, dump(x))
	}
	fact(t, x, "geoserver workspace", "GeoServer has no workspace alice")
	fact(t, x, "events", "no pending or failed event of alice")
	if len(facts(x, "last reconcile")) != 0 {
		t.Errorf("a reconcile fact without FileSystem:\n%s", dump(x))
	}
}

// TestExplainJournalRules: which events touch a path or a user, which
// reconcile action covers them (a running one, a dry run and another
// handler's resync aside), and the fix of a failed event by the handlers
// that failed it.
func TestExplainJournalRules(t *testing.T) {
	out := subject{path: "/wps/finch/users/3/j1/x.nc", user: "alice", groups: []string{"users"}, groupsKnown: true,
		route: "/secure-data-proxy/wps_outputs/finch/users/3/j1/x.nc"}
	perm := func(user, group, full string) handlers.PermissionEvent {
		return handlers.PermissionEvent{Action: handlers.Created, User: user, Group: group, ResourceFullName: full, PermName: "read"}
	}
	for _, c := range []struct {
		ev   handlers.Event
		path bool // touches out
		user bool // touches the user alice
	}{
		{handlers.UserEvent{Action: handlers.Created, UserName: "alice"}, true, true},
		{handlers.UserEvent{Action: handlers.Created, UserName: "bob"}, false, false},
		{perm("alice", "", "/secure-data-proxy/wps_outputs/finch"), true, true},
		{perm("alice", "", "/secure-data-proxy/wps_outputs"), true, true},
		{perm("alice", "", "/secure-data-proxy/wps_outputs/fin"), false, true},
		{perm("alice", "", "/secure-data-proxy/wps_outputs/raven"), false, true},
		{perm("alice", "", "/geoserver/alice"), false, true},
		{perm("bob", "", "/secure-data-proxy/wps_outputs/finch"), false, false},
		{perm("", "users", "/secure-data-proxy/wps_outputs/finch"), true, false},
		{perm("", "admins", "/secure-data-proxy/wps_outputs/finch"), false, false},
		{handlers.FileEvent{Op: handlers.FileCreated, Path: out.path}, true, false},
		{handlers.FileEvent{Op: handlers.FileCreated, Path: "/wps/finch/users/3/j1", IsDir: true}, true, false},
		{handlers.FileEvent{Op: handlers.FileCreated, Path: "/wps/finch/users/3/j1/x.nc.tmp"}, false, false},
		{handlers.FileEvent{Op: handlers.FileCreated, Path: "/wps/finch/users/3/j"}, false, false},
	} {
		if got := out.touches(c.ev); got != c.path {
			t.Errorf("%+v touches the path = %v", c.ev, got)
		}
		if got := (subject{user: "alice"}).touches(c.ev); got != c.user {
			t.Errorf("%+v touches the user = %v", c.ev, got)
		}
	}
	if (subject{path: "/wps/finch/x.nc", public: true}).touches(handlers.UserEvent{UserName: "alice"}) {
		t.Error("a user event touches a public output")
	}
	if !(subject{path: "/wps/finch/x.nc", public: true}).touches(handlers.FileEvent{Op: handlers.FileCreated, Path: "/wps/finch/x.nc"}) {
		t.Error("its own file event does not touch a public output")
	}

	t0 := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	rec := func(id, typ, input string, state actions.State, start time.Duration, done *time.Duration) actions.Record {
		st := actions.Status{ActionID: id, Status: state, StartTime: t0.Add(start)}
		if done != nil {
			end := t0.Add(*done)
			st.CompletionTime = &end
		}
		if state == actions.Failed {
			st.Details = map[string]any{"description": "magpie down"}
		}
		return actions.Record{Status: st, Type: typ, Input: json.RawMessage(input)}
	}
	d := func(m time.Duration) *time.Duration { return &m }
	jc := journalContext{recs: []actions.Record{
		rec("all", "handler.resync", `{"handler": "FileSystem"}`, actions.Succeeded, time.Minute, d(2*time.Minute)),
		rec("bob", "handler.resync", `{"handler": "FileSystem", "users": ["bob"]}`, actions.Succeeded, 3*time.Minute, d(4*time.Minute)),
		rec("alice", "handler.resync", `{"handler": "FileSystem", "users": ["alice"]}`, actions.Failed, 5*time.Minute, d(6*time.Minute)),
		rec("dry", "permissions.reconcile", `{"dry_run": true}`, actions.Succeeded, 7*time.Minute, d(8*time.Minute)),
		rec("gs", "handler.resync", `{"handler": "Geoserver"}`, actions.Succeeded, 9*time.Minute, d(10*time.Minute)),
		rec("run", "permissions.reconcile", `{}`, actions.Active, 11*time.Minute, nil),
		rec("other", "user.resync", `{"user_name": "alice"}`, actions.Succeeded, 12*time.Minute, d(13*time.Minute)),
	}}
	if last := jc.lastReconcile(out); last == nil || last.id != "alice" || last.errText != "magpie down" {
		t.Errorf("last reconcile of alice's output = %+v", last)
	}
	if last := jc.lastReconcile(subject{path: "/wps/finch/x.nc", public: true}); last == nil || last.id != "all" {
		t.Errorf("last reconcile of a public output = %+v", last)
	}
	f := jc.reconcileFact(out, jc.lastReconcile(out))
	if f.OK || f.Fix != "cowbird resync FileSystem --user alice  # after reading why it failed: cowbird actions log alice" ||
		!strings.Contains(f.Detail, "handler.resync FileSystem (users alice) FAILED 2026-12-02T07:06:00Z, in 1m0s, id alice: magpie down") ||
		!strings.Contains(f.Detail, "running now, covering it: permissions.reconcile run") {
		t.Errorf("failed reconcile fact = %+v", f)
	}

	// A failed event: FileSystem's part is a reconcile until one started
	// after it; the others' a replay.
	ev := actions.JournalEvent{ID: 9, Received: t0.Add(4 * time.Minute), Source: "permission", Event: "permission_created",
		Key: "perm:alice//5/read", User: "alice", Status: actions.EventFailed,
		Handlers: []actions.HandlerOutcome{{Handler: "Magpie", Outcome: actions.EventFailed, Error: "500"},
			{Handler: "FileSystem", Outcome: actions.EventFailed, Error: "404"}}}
	before := &reconcileAction{id: "r1", status: actions.Succeeded, started: t0.Add(3 * time.Minute)}
	after := &reconcileAction{id: "r2", status: actions.Succeeded, started: t0.Add(5 * time.Minute)}
	if f := failedEventFact(ev, out, before); f.OK ||
		f.Fix != "cowbird resync FileSystem --user alice && cowbird events replay 9 --handler Magpie  # after reading its error: cowbird events show 9" {
		t.Errorf("failed event before a reconcile = %+v", f)
	}
	if f := failedEventFact(ev, out, after); f.OK || f.Fix != "cowbird events replay 9 --handler Magpie  # after reading its error: cowbird events show 9" ||
		!strings.Contains(f.Detail, "its FileSystem part is superseded: the FileSystem reconcile r2") {
		t.Errorf("failed event after a reconcile = %+v", f)
	}
	ev.Handlers = ev.Handlers[1:]
	if f := failedEventFact(ev, out, after); !f.OK {
		t.Errorf("FileSystem-only failed event after a reconcile = %+v", f)
	}
	ev.User, ev.Key = "", "perm:/users/5/read"
	if f := failedEventFact(ev, out, before); f.Fix != "cowbird resync FileSystem" {
		t.Errorf("failed group event = %+v", f)
	}
}
