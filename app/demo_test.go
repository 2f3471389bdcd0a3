package app

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/filesystem"
)

// syncBuffer is a bytes.Buffer safe for the daemon and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond (a file-system or HTTP state check) until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDemo starts `serve --demo` on a fresh directory and checks what a
// newcomer sees: a start-up without a warning (users with workspaces, a
// sync_permissions example, the state in the demo tree), the six
// handlers, the Try list naming status, events and explain on bob's
// deliberately denied output, a webhook round trip that builds a
// workspace, and a user created in the Magpie emulator reaching cowbird
// through Magpie's webhook.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	var out syncBuffer
	log := logrus.New()
	log.SetOutput(io.Discard)
	hook := logtest.NewLocal(log)
	o := testOptions(t, "", dir)
	o.Settings.DataDir = "" // serve --demo without --data-dir
	o.Demo, o.DemoDir, o.Out = true, filepath.Join(dir, "demo"), &out
	o.Log = log
	base := runDaemon(t, o)
	waitReady(t, base)

	var st api.DaemonStatus
	eventually(t, "the start-up reconcile", func() bool {
		st = demoStatus(t, base)
		return st.Reconcile.RunsOK+st.Reconcile.RunsFailed > 0
	})
	if !st.Ready || st.Reconcile.RunsOK < 1 || st.Reconcile.RunsFailed != 0 || st.Watches.Watches == 0 ||
		len(st.Watches.Degraded) != 0 || st.Journal.Failed != 0 || st.Journal.Pending != 0 {
		t.Errorf("demo status = %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "demo", "data", "cowbird.db")); err != nil {
		t.Errorf("the demo's state is not in its tree: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("state outside the demo tree: %v", err)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "demo", "config.yml"))
	if err != nil || !strings.Contains(string(cfg), "\nsync_permissions:\n") || !strings.Contains(string(cfg), "\n  user_workspace:\n") {
		t.Errorf("demo config has no sync_permissions example (%v):\n%s", err, cfg)
	}
	// The users have their workspaces: the start-up reconcile linked
	// alice's output and left bob's denied one out.
	ws := filepath.Join(dir, "demo", "user_workspaces")
	eventually(t, "alice's output linked at start-up", func() bool {
		_, err := os.Stat(filepath.Join(ws, "alice", "wps_outputs", "finch", "9c1a", "tasmax.nc"))
		return err == nil
	})
	for _, u := range []string{"alice", "bob"} {
		if target, err := os.Readlink(filepath.Join(ws, u, "notebooks")); err != nil || target != filepath.Join(dir, "demo", "jupyterhub_user_data", u) {
			t.Errorf("%s's notebooks symlink = %q, %v", u, target, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(ws, "bob", "wps_outputs", "finch", "77b0", "pr.nc")); !os.IsNotExist(err) {
		t.Errorf("bob's denied output is linked: %v", err)
	}

	// The Try list: status, events, and explain on bob's denied output,
	// which explains the denial.
	try := out.String()
	denied := regexp.MustCompile(`cowbird explain (\S+/pr\.nc) --url`).FindStringSubmatch(try)
	for _, want := range []string{"cowbird status --url " + base + " --token demo-token",
		"cowbird events list --url " + base + " --token demo-token", "cowbird explain --user alice"} {
		if !strings.Contains(try, want) {
			t.Errorf("the Try list lacks %q:\n%s", want, try)
		}
	}
	if denied == nil {
		t.Fatalf("the Try list explains no denied output:\n%s", try)
	}
	x := demoExplain(t, base, denied[1])
	if x.OK || !strings.HasPrefix(x.Fix, "if bob should read it") {
		t.Errorf("explain %s = ok %v, fix %q", denied[1], x.OK, x.Fix)
	}
	for _, f := range x.Facts {
		if f.OK == (f.Check == "read permission") {
			t.Errorf("explain %s: fact %+v", denied[1], f)
		}
	}

	resp, err := http.Get(base + "/handlers")
	if err != nil {
		t.Fatal(err)
	}
	var hs struct{ Handlers []string }
	_ = json.NewDecoder(resp.Body).Decode(&hs)
	resp.Body.Close()
	if want := []string{"FileSystem", "Magpie", "Geoserver", "Catalog", "Thredds", "Nginx"}; !slices.Equal(hs.Handlers, want) {
		t.Fatalf("handlers = %v, want %v", hs.Handlers, want)
	}

	code, body := post(t, base+"/webhooks/users", `{"event": "created", "user_name": "alice", "callback_url": ""}`)
	if code != 200 {
		t.Fatalf("user webhook = %d %v", code, body)
	}
	if target, err := os.Readlink(filepath.Join(ws, "alice", "notebooks")); err != nil ||
		target != filepath.Join(dir, "demo", "jupyterhub_user_data", "alice") {
		t.Fatalf("notebooks symlink = %q, %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(ws, "alice", "shapefile_datastore")); err != nil {
		t.Fatalf("geoserver datastore dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ws, "public", "wps_outputs", "hummingbird", "2f6e", "report.txt")); err != nil {
		t.Fatalf("public WPS output not linked: %v", err)
	}

	// A user created through Magpie's REST API reaches cowbird by webhook.
	m := regexp.MustCompile(`magpie:\s+(\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("demo output names no magpie URL:\n%s", out.String())
	}
	jar, _ := cookiejar.New(nil)
	mc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	for _, call := range []struct{ path, body string }{
		{"/signin", `{"user_name": "admin", "password": "qwertyqwerty"}`},
		{"/users", `{"user_name": "carol", "email": "carol@example.org", "password": "qwertyqwerty", "group_name": "users"}`},
	} {
		resp, err := mc.Post(m[1]+call.path, "application/json", strings.NewReader(call.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("magpie %s = %d", call.path, resp.StatusCode)
		}
	}
	eventually(t, "carol's workspace", func() bool {
		_, err := os.Lstat(filepath.Join(ws, "carol", "notebooks"))
		return err == nil
	})
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			t.Errorf("the demo logged %s %q %v", e.Level, e.Message, e.Data)
		}
	}
}

// demoStatus reads the demo's GET /status with its admin token.
func demoStatus(t *testing.T, base string) api.DaemonStatus {
	t.Helper()
	var st api.DaemonStatus
	demoGet(t, base+"/status", &st)
	return st
}

// demoExplain reads the demo's GET /explain?path=p with its admin token.
func demoExplain(t *testing.T, base, p string) filesystem.Explanation {
	t.Helper()
	var x filesystem.Explanation
	demoGet(t, base+"/explain?path="+url.QueryEscape(p), &x)
	return x
}

func demoGet(t *testing.T, u string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer demo-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
