package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// getStatus reads GET /status as the admin token.
func getStatus(t *testing.T, base string) api.DaemonStatus {
	t.Helper()
	code, body := callList(t, base+"/status")
	if code != http.StatusOK {
		t.Fatalf("GET /status = %d %s", code, body)
	}
	var st api.DaemonStatus
	must(t, json.Unmarshal([]byte(body), &st))
	return st
}

// TestStatusEndToEnd: GET /status of a bird-house daemon reports, from
// the parts that know it, the readiness, the handlers in dispatch order
// with their own state, the journal's failed events, the reconciles since
// start and the last reconcile action (dry runs aside) with its figures,
// the inotify watches and the degraded ones, and the actions running.
func TestStatusEndToEnd(t *testing.T) {
	b := startBirdhouseWith(t, "", "cowbird:\n  admin_tokens:\n    ops: "+adminToken+"\n")
	if code, _ := post(t, b.base+"/status", ""); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
		t.Errorf("POST /status = %d", code)
	}
	resp, err := http.Get(b.base + "/status")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /status without a token = %d, want 401", resp.StatusCode)
	}

	var st api.DaemonStatus
	eventually(t, "the start-up reconcile", func() bool {
		st = getStatus(t, b.base)
		return st.Reconcile.RunsOK >= 1
	})
	if !st.Ready || len(st.NotReady) != 0 || st.Version != "test" || st.APIVersion != api.DefaultVersion ||
		st.Started.IsZero() || st.CheckedAt.Before(st.Started) {
		t.Errorf("status head = ready %v %v, version %q %q, started %v, checked %v",
			st.Ready, st.NotReady, st.Version, st.APIVersion, st.Started, st.CheckedAt)
	}
	var names []string
	for _, h := range st.Handlers {
		names = append(names, h.Name)
		want := api.HandlerActive
		if h.Name == "Magpie" {
			want = api.HandlerReady
		}
		if h.State != want || h.Error != "" {
			t.Errorf("handler %s = %+v, want state %q", h.Name, h, want)
		}
		if (h.Name == "Geoserver") != strings.HasPrefix(h.Detail, "GeoServer jobs: 0 pending, 0 failed (0 since start)") {
			t.Errorf("handler %s detail = %q", h.Name, h.Detail)
		}
	}
	if want := []string{"FileSystem", "Magpie", "Geoserver", "Catalog", "Thredds", "Nginx"}; !slices.Equal(names, want) {
		t.Errorf("handlers = %v, want %v", names, want)
	}
	if st.Reconcile.RunsFailed != 0 || st.Reconcile.Last != nil {
		t.Errorf("reconcile at start = %+v", st.Reconcile)
	}
	if st.Watches.Watches == 0 || st.Watches.MaxWatches == 0 || len(st.Watches.Degraded) != 0 || st.Watches.Overflows != 0 {
		t.Errorf("watches at start = %+v", st.Watches)
	}
	if len(st.Actions) != 0 || st.Journal.Failed != 0 || st.Journal.Pending != 0 {
		t.Errorf("at start: actions %v, journal %+v", st.Actions, st.Journal)
	}

	// A permission webhook for a resource Magpie no longer has fails for
	// good: a failed event.
	if code, _ := post(t, b.base+"/webhooks/permissions", `{"event": "created", "service_name": "secure-data-proxy",
		"service_type": "api", "resource_id": 999, "resource_full_name": "/secure-data-proxy/wps_outputs/gone",
		"name": "read", "access": "allow", "scope": "recursive", "user": "admin"}`); code != http.StatusInternalServerError {
		t.Fatalf("permission webhook for a missing resource = %d", code)
	}
	st = getStatus(t, b.base)
	if st.Journal.Failed != 1 || st.Journal.LastFailed == 0 || st.Journal.Events < 1 || st.Journal.Pending != 0 {
		t.Errorf("journal after a failed event = %+v", st.Journal)
	}

	// A user with an output whose link is missing, as after an outage.
	id, err := b.mp.AddUser("gus", "", "users")
	must(t, err)
	ws := filepath.Join(b.dir, "user_workspaces", "gus")
	eventually(t, "gus's workspace", func() bool { _, err := os.Stat(ws); return err == nil })
	src := filepath.Join(b.dir, "wpsoutputs", "finch", "users", fmt.Sprint(id), "j1", "x.nc")
	must(t, os.MkdirAll(filepath.Dir(src), 0o755))
	must(t, os.WriteFile(src, []byte("x"), 0o644))
	link := filepath.Join(ws, "wps_outputs", "finch", "j1", "x.nc")
	eventually(t, "link", func() bool { _, err := os.Stat(link); return err == nil })
	settle(t, b.base)
	must(t, os.Remove(link))

	// A dry run is no reconcile: it is not the last one.
	_, a := call(t, http.MethodPost, b.base+"/actions/v1/handler.resync", `{"request_id": "dry", "body": {"handler": "FileSystem", "dry_run": true}}`)
	waitAction(t, b.base, "handler.resync", a["action_id"].(string))
	if st = getStatus(t, b.base); st.Reconcile.Last != nil {
		t.Errorf("last reconcile after a dry run = %+v", st.Reconcile.Last)
	}
	_, a = call(t, http.MethodPost, b.base+"/actions/v1/handler.resync", `{"request_id": "real", "label": "after the outage", "body": {"handler": "FileSystem"}}`)
	aid := a["action_id"].(string)
	waitAction(t, b.base, "handler.resync", aid)
	st = getStatus(t, b.base)
	last := st.Reconcile.Last
	if last == nil || last.ActionID != aid || last.Type != "handler.resync" || last.Handler != "FileSystem" ||
		last.Label != "after the outage" || last.Status != actions.Succeeded || last.Completed.Before(last.Started) {
		t.Fatalf("last reconcile = %+v", last)
	}
	if f := last.Figures; f == nil || f.LinksCreated != 1 || f.Failed != 0 || f.Sources == 0 {
		t.Errorf("last reconcile figures = %+v", last.Figures)
	}
	if st.Reconcile.RunsOK < 2 {
		t.Errorf("reconciles since start = %+v", st.Reconcile)
	}

	// A resync held by Magpie is running.
	must(t, os.Remove(link))
	const route = "GET /users/{user}/resources/{id}/permissions"
	before := b.mp.Hits(route)
	b.mp.Inject(route, magpietest.Fault{Delay: time.Minute, Times: 1})
	_, a = call(t, http.MethodPost, b.base+"/actions/v1/handler.resync", `{"request_id": "held", "label": "held", "body": {"handler": "FileSystem"}}`)
	held := a["action_id"].(string)
	eventually(t, "the resync to wait on Magpie", func() bool { return b.mp.Hits(route) > before })
	st = getStatus(t, b.base)
	if len(st.Actions) != 1 || st.Actions[0].ActionID != held || st.Actions[0].Type != "handler.resync" ||
		st.Actions[0].Status != actions.Active || st.Actions[0].Label != "held" || st.Actions[0].Creator != "token:ops" {
		t.Errorf("running actions = %+v", st.Actions)
	}
	call(t, http.MethodPost, b.base+"/actions/v1/handler.resync/"+held+"/cancel", "")
	waitAction(t, b.base, "handler.resync", held)
	st = getStatus(t, b.base)
	if len(st.Actions) != 0 || st.Reconcile.Last == nil || st.Reconcile.Last.ActionID != held ||
		st.Reconcile.Last.Status != actions.Failed || st.Reconcile.Last.Error == "" {
		t.Errorf("after the cancel: actions %+v, last %+v", st.Actions, st.Reconcile.Last)
	}

	// gus's workspace, which the Catalog handler watches (and Geoserver
	// its shapefile_datastore), goes away: degraded watches.
	must(t, os.RemoveAll(ws))
	var dg api.DegradedWatch
	eventually(t, "the Catalog watch degraded", func() bool {
		st = getStatus(t, b.base)
		i := slices.IndexFunc(st.Watches.Degraded, func(d api.DegradedWatch) bool { return d.Handler == "Catalog" })
		if i >= 0 {
			dg = st.Watches.Degraded[i]
		}
		return i >= 0
	})
	if dg.Path != ws || !strings.Contains(dg.Error, ws) || dg.Failures < 1 || dg.Since.IsZero() {
		t.Errorf("degraded watch = %+v", dg)
	}
}

// statusConfig runs Magpie against url, Thredds active and Nginx
// inactive, with the admin token.
const statusConfig = `cowbird:
  admin_tokens:
    ops: %[2]s
handlers:
  Magpie:
    active: true
    url: %[1]s
    admin_user: admin
    admin_password: qwertyqwerty
  Thredds:
    active: true
  Nginx:
    active: false
`

// TestStatusNotReady: with Magpie refusing every request, the daemon
// serves but is not ready; GET /status says why, the Magpie handler is
// not ready with the same reason, the inactive handler is listed last, and
// without a FileSystem handler no reconcile is counted.
func TestStatusNotReady(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	must(t, os.WriteFile(cfg, fmt.Appendf(nil, statusConfig, down.URL, adminToken), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	ln := listen(t)
	o := testOptions(t, cfg, dir)
	o.Listener = ln
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("daemon: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	var st api.DaemonStatus
	eventually(t, "a status naming Magpie", func() bool {
		code, body := callList(t, base+"/status")
		if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
			return false
		}
		return len(st.NotReady) > 0 && strings.HasPrefix(st.NotReady[0], "Magpie: ")
	})
	if st.Ready || len(st.NotReady) != 1 {
		t.Errorf("ready = %v, not_ready = %q", st.Ready, st.NotReady)
	}
	want := []api.HandlerState{
		{Name: "Magpie", State: api.HandlerNotReady, Error: strings.TrimPrefix(st.NotReady[0], "Magpie: ")},
		{Name: "Thredds", State: api.HandlerActive},
		{Name: "Nginx", State: api.HandlerInactive},
	}
	if !slices.Equal(st.Handlers, want) {
		t.Errorf("handlers = %+v, want %+v", st.Handlers, want)
	}
	if st.Reconcile.RunsOK != -1 || st.Reconcile.RunsFailed != -1 || st.Reconcile.Last != nil {
		t.Errorf("reconcile without FileSystem = %+v", st.Reconcile)
	}
}

// TestReadinessReasons: a joined readiness error gives one reason each.
func TestReadinessReasons(t *testing.T) {
	err := errors.Join(errors.New("Magpie: sign-in refused"), errors.Join(errors.New("a"), errors.New("b")))
	if got := reasons(err); !slices.Equal(got, []string{"Magpie: sign-in refused", "a", "b"}) {
		t.Errorf("reasons = %q", got)
	}
	if got := reasons(errors.New("starting: watches not established yet")); !slices.Equal(got, []string{"starting: watches not established yet"}) {
		t.Errorf("reasons = %q", got)
	}
}

// TestStatusActionsPicked: the last reconcile is the latest finished
// handler.resync or permissions.reconcile that is not a dry run, with the
// figures of a FileSystem reconcile only; the running actions are those
// not ended, oldest first.
func TestStatusActionsPicked(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	rec := func(id, typ, input string, state actions.State, start, end int, details map[string]any) actions.Record {
		r := actions.Record{Type: typ, Input: json.RawMessage(input), Status: actions.Status{ActionID: id, Status: state,
			StartTime: t0.Add(time.Duration(start) * time.Minute), Details: details, CreatorID: "token:ops"}}
		if end > 0 {
			e := t0.Add(time.Duration(end) * time.Minute)
			r.Status.CompletionTime = &e
		}
		return r
	}
	fs := map[string]any{"handler": "FileSystem", "dry_run": false, "sources": 3.0, "links_created": 2.0, "modes_fixed": 1.0, "seconds": 0.5}
	recs := []actions.Record{
		rec("old", "handler.resync", `{"handler": "FileSystem"}`, actions.Succeeded, 1, 2, fs),
		rec("dry", "handler.resync", `{"handler": "FileSystem", "dry_run": true}`, actions.Succeeded, 3, 9, fs),
		rec("perm", "permissions.reconcile", `{}`, actions.Failed, 4, 5, map[string]any{"code": "HANDLER_ERROR", "description": "magpie: 503"}),
		rec("hook", "hook.run", `{}`, actions.Succeeded, 5, 8, nil),
		rec("run2", "user.resync", `{"user_name": "a"}`, actions.Inactive, 7, 0, nil),
		rec("run1", "handler.resync", `{"handler": "Geoserver"}`, actions.Active, 6, 0, nil),
	}
	last := lastReconcile(recs)
	if last == nil || last.ActionID != "perm" || last.Handler != "FileSystem" || last.Status != actions.Failed ||
		last.Error != "magpie: 503" || last.Figures != nil {
		t.Errorf("last = %+v", last)
	}
	recs = append(recs, rec("geo", "handler.resync", `{"handler": "Geoserver"}`, actions.Succeeded, 6, 7, map[string]any{"handler": "Geoserver"}),
		rec("new", "handler.resync", `{"handler": "FileSystem"}`, actions.Succeeded, 7, 8, fs))
	last = lastReconcile(recs)
	want := api.ReconcileFigures{Sources: 3, LinksCreated: 2, ModesFixed: 1, Seconds: 0.5}
	if last == nil || last.ActionID != "new" || last.Figures == nil || *last.Figures != want || last.Error != "" {
		t.Errorf("last = %+v", last)
	}
	if last := lastReconcile(recs[5:7]); last == nil || last.ActionID != "geo" || last.Handler != "Geoserver" || last.Figures != nil {
		t.Errorf("last Geoserver resync = %+v", last)
	}
	var ids []string
	for _, a := range runningActions(recs) {
		ids = append(ids, a.ActionID)
	}
	if !slices.Equal(ids, []string{"run1", "run2"}) {
		t.Errorf("running = %v", ids)
	}
}
