package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/store"
)

// calls records what the recording handlers received, in order.
type calls struct {
	mu   sync.Mutex
	list []string
	seen chan struct{}
}

func newCalls() *calls { return &calls{seen: make(chan struct{}, 1000)} }

func (c *calls) add(s string) {
	c.mu.Lock()
	c.list = append(c.list, s)
	c.mu.Unlock()
	c.seen <- struct{}{}
}

func (c *calls) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.list)
}

// waitN waits until n calls were recorded.
func (c *calls) waitN(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for len(c.get()) < n {
		select {
		case <-c.seen:
		case <-deadline:
			t.Fatalf("got calls %v, want %d", c.get(), n)
		}
	}
}

// recording is a handler with every capability that records its events.
type recording struct {
	name  string
	calls *calls
	fail  error
}

func (r *recording) Name() string { return r.name }

func (r *recording) rec(ev handlers.Event, detail string) error {
	r.calls.add(r.name + " " + ev.Name() + " " + detail)
	return r.fail
}

func (r *recording) UserCreated(_ context.Context, ev handlers.UserEvent) error {
	return r.rec(ev, ev.UserName)
}

func (r *recording) UserDeleted(_ context.Context, ev handlers.UserEvent) error {
	return r.rec(ev, ev.UserName)
}

func (r *recording) PermissionCreated(_ context.Context, ev handlers.PermissionEvent) error {
	return r.rec(ev, ev.Value())
}

func (r *recording) PermissionDeleted(_ context.Context, ev handlers.PermissionEvent) error {
	return r.rec(ev, ev.Value())
}

const e2eConfig = `handlers:
  Magpie:
    active: true
    url: http://127.0.0.1:1/magpie
    admin_user: admin
    admin_password: secret
  Thredds:
    active: true
    priority: 5
  Nginx:
    active: false
  FileSystem:
    active: true
    priority: 1
    workspace_dir: ${E2E_DIR}/ws
    jupyterhub_user_data_dir: ${E2E_DIR}/jh
    wps_outputs_dir: ${E2E_DIR}/wps
`

type testDaemon struct {
	base  string
	calls *calls
	stop  func()
}

// startDaemon runs the daemon in-process on 127.0.0.1:0 with recording
// handlers in place of the real ones; failing names handlers that fail.
func startDaemon(t *testing.T, dir string, failing map[string]error) *testDaemon {
	t.Helper()
	t.Setenv("E2E_DIR", dir)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(e2eConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCalls()
	kinds := slices.Clone(Kinds)
	for i := range kinds {
		kinds[i].New = func(_ context.Context, env handlers.Env) (handlers.Handler, error) {
			return &recording{name: env.Entry.Name, calls: c, fail: failing[env.Entry.Name]}, nil
		}
	}
	o := testOptions(t, cfgPath, dir)
	o.Kinds = kinds
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	o.Ready = func(a string) { addr <- a }
	go func() { done <- Run(ctx, o) }()
	td := &testDaemon{calls: c}
	select {
	case a := <-addr:
		td.base = "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("daemon did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("daemon did not start in time")
	}
	var once sync.Once
	td.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("daemon stopped with: %v", err)
			}
		})
	}
	t.Cleanup(td.stop)
	return td
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode %s answer: %v", url, err)
	}
	return resp.StatusCode, out
}

func TestEndToEndWebhooks(t *testing.T) {
	d := startDaemon(t, t.TempDir(), nil)

	resp, err := http.Get(d.base + "/handlers")
	if err != nil {
		t.Fatal(err)
	}
	var hs struct{ Handlers []string }
	_ = json.NewDecoder(resp.Body).Decode(&hs)
	resp.Body.Close()
	if want := []string{"FileSystem", "Thredds", "Magpie"}; !slices.Equal(hs.Handlers, want) {
		t.Fatalf("GET /handlers = %v, want %v", hs.Handlers, want)
	}

	bad := []struct {
		name, path, body string
		code             int
		detail           string
		param            string
	}{
		{"user event not a word", "/webhooks/users", `{"event": "", "user_name": "x", "callback_url": ""}`, 422, "Invalid value specified.", "event"},
		{"user event unknown", "/webhooks/users", `{"event": "renamed", "user_name": "x"}`, 400, "Invalid value parameters for user webhook.", "event"},
		{"user name escapes", "/webhooks/users", `{"event": "created", "user_name": "../etc", "callback_url": ""}`, 422, "Invalid value specified.", "user_name"},
		{"callback missing", "/webhooks/users", `{"event": "created", "user_name": "alice"}`, 422, "Invalid value specified.", "callback_url"},
		{"resource id string", "/webhooks/permissions", `{"event": "created", "service_type": "api", "resource_id": "7", "resource_full_name": "a/b", "name": "read", "access": "allow", "scope": "match", "user": "alice"}`, 422, "Invalid value specified.", "resource_id"},
		{"no principal", "/webhooks/permissions", `{"event": "created", "service_type": "api", "resource_id": 7, "resource_full_name": "a/b", "name": "read", "access": "allow", "scope": "match", "user": null, "group": ""}`, 400, "Invalid value parameters for permission webhook.", ""},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, d.base+tc.path, tc.body)
			if code != tc.code || body["code"] != float64(tc.code) || body["detail"] != tc.detail {
				t.Fatalf("got %d %v, want %d %q", code, body, tc.code, tc.detail)
			}
			if body["path"] != tc.path || body["method"] != "POST" || body["type"] != "application/json" {
				t.Errorf("envelope = %v", body)
			}
			if tc.param != "" {
				if p, _ := body["param"].(map[string]any); p["name"] != tc.param {
					t.Errorf("param = %v, want name %q", body["param"], tc.param)
				}
			}
		})
	}
	if got := d.calls.get(); len(got) != 0 {
		t.Fatalf("bad bodies reached handlers: %v", got)
	}

	code, body := post(t, d.base+"/webhooks/users", `{"event": "created", "user_name": "alice", "callback_url": ""}`)
	if code != 200 || body["detail"] != "User event successfully handled." {
		t.Fatalf("user webhook = %d %v", code, body)
	}
	code, body = post(t, d.base+"/cowbird/webhooks/permissions", `{"event": "deleted", "service_name": null, "service_type": "thredds",
		"resource_id": 12, "resource_full_name": "thredds/birdhouse/file.nc", "resource_display_name": "file.nc",
		"name": "read", "access": "allow", "scope": "recursive", "user": "alice", "group": null}`)
	if code != 200 || body["detail"] != "Permission event successfully handled." {
		t.Fatalf("permission webhook = %d %v", code, body)
	}
	want := []string{
		"FileSystem user_created alice", "Thredds user_created alice", "Magpie user_created alice",
		"FileSystem permission_deleted read-allow-recursive", "Thredds permission_deleted read-allow-recursive",
		"Magpie permission_deleted read-allow-recursive",
	}
	if got := d.calls.get(); !slices.Equal(got, want) {
		t.Fatalf("handler calls =\n%v\nwant\n%v", got, want)
	}

	resp, err = http.Get(d.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{
		`cowbird_events_received_total{event="user_created"} 1`,
		`cowbird_handler_calls_total{event="permission_deleted",handler="Magpie",outcome="ok"} 1`,
		`cowbird_dispatch_duration_seconds_count{handler="FileSystem"} 2`,
		`cowbird_events_rejected_total{code="422",route="/webhooks/users"} 3`,
		"cowbird_http_requests_total", "cowbird_inotify_watches", "cowbird_inotify_overflows_total",
		"cowbird_journal_pending_events 0", "process_resident_memory_bytes",
	} {
		if !strings.Contains(string(metrics), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestEndToEndFailureCallsBack(t *testing.T) {
	callback := make(chan string, 1)
	cb := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		callback <- r.Method + " " + r.URL.Path
	})}
	ln := listen(t)
	go func() { _ = cb.Serve(ln) }()
	t.Cleanup(func() { _ = cb.Close() })

	d := startDaemon(t, t.TempDir(), map[string]error{"Thredds": fmt.Errorf("no space left")})
	code, body := post(t, d.base+"/webhooks/users",
		fmt.Sprintf(`{"event": "created", "user_name": "bob", "callback_url": "http://%s/tmp/abc"}`, ln.Addr()))
	if code != 500 || body["detail"] != "Failed to handle user webhook event." ||
		!strings.Contains(fmt.Sprint(body["exception"]), "Thredds: no space left") {
		t.Fatalf("failing user webhook = %d %v", code, body)
	}
	select {
	case got := <-callback:
		if got != "HEAD /tmp/abc" {
			t.Fatalf("callback = %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("callback_url not called")
	}
	// Every handler ran despite the failure, in order.
	want := []string{"FileSystem user_created bob", "Thredds user_created bob", "Magpie user_created bob"}
	if got := d.calls.get(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
}

// TestCrashReplay writes the journal as a crash mid-dispatch leaves it (the
// event appended, FileSystem done, the others not), then starts the daemon:
// each unfinished handler gets the event exactly once.
func TestCrashReplay(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rec, err := db.Append(ctx, handlers.UserEvent{Action: handlers.Deleted, UserName: "carol"}, []string{"FileSystem", "Thredds", "Magpie"})
	if err == nil {
		err = db.Done(ctx, rec.ID, "FileSystem")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	d := startDaemon(t, dir, nil)
	d.calls.waitN(t, 2)
	d.stop()
	want := []string{"Thredds user_deleted carol", "Magpie user_deleted carol"}
	if got := d.calls.get(); !slices.Equal(got, want) {
		t.Fatalf("replayed calls = %v, want %v", got, want)
	}

	// A second start replays nothing: the journal records both as done.
	d2 := startDaemon(t, dir, nil)
	if code, _ := post(t, d2.base+"/webhooks/users", `{"event": "deleted", "user_name": "dan"}`); code != 200 {
		t.Fatalf("webhook after restart = %d", code)
	}
	d2.stop()
	want2 := []string{"FileSystem user_deleted dan", "Thredds user_deleted dan", "Magpie user_deleted dan"}
	if got := d2.calls.get(); !slices.Equal(got, want2) {
		t.Fatalf("calls after second start = %v, want %v (no replay)", got, want2)
	}
}
