package app

// End-to-end security tests of the whole daemon (docs/security.md, threat
// model): secrets never leave, and a refused or failed hook stays the
// Hooks handler's failure.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/geoserver/geoservertest"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// leakBuffer is an io.Writer safe for concurrent use.
type leakBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *leakBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *leakBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// addHeader adds a header to every request it sends: Magpie's webhooks
// through a proxy that adds the webhook secret.
type addHeader struct{ name, value string }

func (a addHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(a.name, a.value)
	return http.DefaultTransport.RoundTrip(r)
}

// secureDaemon is a daemon with every handler and hooks against the
// emulators, whose log and HTTP answers are all kept.
type secureDaemon struct {
	dir, base, cfgPath string
	mp                 *magpietest.Server
	log                *leakBuffer // everything the daemon logged, as JSON
	answers            *leakBuffer // every answer the tests received
}

// startSecureDaemon runs the daemon at debug level with the config cfg
// (%[1]s the state dir, %[2]s Magpie's URL, %[3]s GeoServer's) and Magpie's
// webhooks wired to it, sending header (if not empty) with them.
func startSecureDaemon(t *testing.T, mpOpts magpietest.Options, gsOpts geoservertest.Options, cfg string, header addHeader) *secureDaemon {
	t.Helper()
	dir := t.TempDir()
	// Hook users must reach the session directories under the data dir.
	for _, d := range []string{filepath.Dir(dir), dir} {
		must(t, os.Chmod(d, 0o755))
	}
	for _, sub := range []string{"user_workspaces", "jupyterhub_user_data", "wpsoutputs"} {
		must(t, os.MkdirAll(filepath.Join(dir, sub), 0o755))
	}
	s := &secureDaemon{dir: dir, log: &leakBuffer{}, answers: &leakBuffer{}}
	if header.name != "" {
		mpOpts.WebhookClient = &http.Client{Transport: header}
	}
	s.mp = magpietest.NewServer(t, mpOpts)
	gsOpts.PathMap = map[string]string{"/user_workspaces": filepath.Join(dir, "user_workspaces")}
	gs := geoservertest.NewServer(t, gsOpts)
	s.cfgPath = filepath.Join(dir, "config.yml")
	must(t, os.WriteFile(s.cfgPath, []byte(fmt.Sprintf(cfg, dir, s.mp.URL(), gs.URL())), 0o600))

	log := logrus.New()
	log.SetOutput(s.log)
	o := testOptions(t, s.cfgPath, dir)
	o.Settings.LogLevel, o.Settings.LogFormat = logrus.TraceLevel, "json"
	o.Log = log
	s.base = runDaemon(t, o)
	waitReady(t, s.base)
	must(t, s.mp.SetWebhooks(append(magpietest.CowbirdWebhooks(s.base), magpietest.CowbirdGroupWebhooks(s.base)...)))
	return s
}

// do sends a request to the daemon (path relative to it, or a full URL)
// and keeps the whole answer.
func (s *secureDaemon) do(t *testing.T, method, path, body string, headers ...string) (int, string) {
	t.Helper()
	url := path
	if !strings.HasPrefix(url, "http") {
		url = s.base + path
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	must(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var h bytes.Buffer
	_ = resp.Header.Write(&h)
	fmt.Fprintf(s.answers, "%s %s -> %d\n%s%s\n\n", method, path, resp.StatusCode, h.String(), raw)
	return resp.StatusCode, string(raw)
}

// Distinctive secrets: each must never be written anywhere.
const (
	leakMagpiePw   = "MagpieAdminPw-leak-3a9f"
	leakGeoPw      = "GeoAdminPw-leak-77c1"
	leakToken      = "AdminToken-leak-51d0"
	leakWebhook    = "WebhookSecret-leak-e4b2"
	leakHookEnv    = "HookEnvSecret-leak-90fe"
	leakHookVar    = "-HookVarSecret-leak-2c8d"
	leakAlicePw    = "AliceMagpiePw-leak-61aa"
	leakWrongToken = "WrongToken-leak-0b3e"
)

const secretsConfig = `handlers:
  Magpie:
    active: true
    url: %[2]s
    admin_user: admin
    admin_password: ${COWBIRD_TEST_MAGPIE_PASSWORD}
  Geoserver:
    active: true
    url: %[3]s
    workspace_dir: %[1]s/user_workspaces
    admin_user: admin
    admin_password: ` + leakGeoPw + `
  Catalog:
    active: true
    url: http://localhost/twitcher/ows/proxy/catalog
    workspace_dir: %[1]s/user_workspaces
  Thredds:
    active: true
  Nginx:
    active: true
  FileSystem:
    active: true
    priority: 1
    workspace_dir: %[1]s/user_workspaces
    jupyterhub_user_data_dir: %[1]s/jupyterhub_user_data
    wps_outputs_dir: %[1]s/wpsoutputs
  Hooks:
    active: true
    priority: 100
cowbird:
  admin_tokens:
    ops: ` + leakToken + `
  webhook_secret: ` + leakWebhook + `
  magpie_auth: true
hooks:
  allow_run_as_daemon_user: true
  env: {QUOTA_PASSWORD: ` + leakHookEnv + `, QUOTA_SERVER: quota.example.org}
  accounts:
    runner: {uid: %[4]d, gid: %[5]d}
  permission_created:
    run_as: runner
    environments:
      - name: creds
        variables: {API_TOKEN: "{{Event.UserName}}` + leakHookVar + `"}
        onEnter: {command: /bin/sh, args: [-c, 'echo "entering $API_TOKEN"']}
    tasks:
      - command: /bin/sh
        args: [-c, 'echo "pw $QUOTA_PASSWORD tok $API_TOKEN arg $0"; echo "cowbird_status: using $API_TOKEN"; echo "cowbird_fail: quota refused $QUOTA_PASSWORD"; exit 4', "{{Env.QUOTA_PASSWORD}}"]
`

// TestSecretsNeverLeave runs the daemon at trace level with distinctive
// secrets (Magpie and GeoServer admin passwords, an admin token, the
// webhook secret, a secret hook env value and a secret hook variable, a
// Magpie user's session cookie, Magpie's callback tokens), drives webhooks,
// handler routes, actions and a hook that prints its secrets and fails,
// and looks for every secret in everything written: the log, every HTTP
// answer (headers and bodies) and `handlers info`.
func TestSecretsNeverLeave(t *testing.T) {
	t.Setenv("COWBIRD_TEST_MAGPIE_PASSWORD", leakMagpiePw)
	cfg := strings.ReplaceAll(strings.ReplaceAll(secretsConfig, "%[4]d", fmt.Sprint(os.Getuid())), "%[5]d", fmt.Sprint(os.Getgid()))
	s := startSecureDaemon(t, magpietest.Options{AdminPassword: leakMagpiePw},
		geoservertest.Options{User: "admin", Password: leakGeoPw}, cfg, addHeader{api.WebhookSecretHeader, leakWebhook})
	bearer := []string{"Authorization", "Bearer " + leakToken}

	// Magpie's own webhooks, through a proxy that adds the secret.
	_, err := s.mp.AddUser("alice", leakAlicePw, "users")
	must(t, err)
	eventually(t, "alice's workspace", func() bool {
		_, err := os.Stat(filepath.Join(s.dir, "user_workspaces", "alice"))
		return err == nil
	})
	sdp, err := s.mp.AddService("secure-data-proxy", "api")
	must(t, err)
	route, err := s.mp.AddResource(sdp, "wps_outputs", "route")
	must(t, err)
	must(t, s.mp.SetUserPermission("alice", route, "read"))
	ctx, cancel := context.WithTimeout(context.Background(), 15e9)
	defer cancel()
	must(t, s.mp.WaitWebhooks(ctx))
	for _, d := range s.mp.Deliveries() {
		if d.Status != http.StatusOK && d.Status != http.StatusAccepted {
			t.Errorf("Magpie's %s webhook got %d %s", d.Action, d.Status, d.Err)
		}
	}
	eventually(t, "the failed permission hook", func() bool {
		_, list := s.do(t, http.MethodGet, "/actions/v1/hook.run?status=failed&roles=monitor_by", "", bearer...)
		return strings.Contains(list, "permission_created hook")
	})

	// Webhooks sent directly: without, with a wrong and with the secret.
	user := `{"event": "created", "user_name": "bob", "callback_url": "http://127.0.0.1:1/tmp/cb-token-leak"}`
	for _, h := range [][]string{nil, {api.WebhookSecretHeader, leakWebhook + "x"}} {
		if code, _ := s.do(t, http.MethodPost, "/webhooks/users", user, h...); code != http.StatusUnauthorized {
			t.Errorf("webhook with secret header %q = %d, want 401", h, code)
		}
	}
	s.do(t, http.MethodPost, "/webhooks/users", user, api.WebhookSecretHeader, leakWebhook)
	s.do(t, http.MethodPost, "/webhooks/users", `{"event": "created", "user_name": "../x"}`, api.WebhookSecretHeader, leakWebhook)
	s.do(t, http.MethodPost, "/webhooks/permissions", `{"event": "created"}`, api.WebhookSecretHeader, leakWebhook)

	// The read-only and admin routes.
	for _, p := range []string{"/", "/version", "/api", "/json", "/livez", "/healthz", "/readyz", "/metrics", "/handlers"} {
		s.do(t, http.MethodGet, p, "")
	}
	for _, h := range []string{"FileSystem", "Magpie", "Geoserver", "Catalog", "Thredds", "Nginx", "Hooks"} {
		s.do(t, http.MethodGet, "/handlers/"+h, "")
	}
	s.do(t, http.MethodPut, "/handlers/FileSystem/resync", "")

	// The actions API: bearer token, a wrong one, a Magpie session cookie.
	s.do(t, http.MethodGet, "/actions/v1/", "", "Authorization", "Bearer "+leakWrongToken)
	resp, err := http.Post(s.mp.URL()+"/signin", "application/json",
		strings.NewReader(`{"user_name": "alice", "password": "`+leakAlicePw+`"}`))
	must(t, err)
	resp.Body.Close()
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == magpietest.CookieName {
			cookie = c.Value
		}
	}
	if cookie == "" {
		t.Fatal("no Magpie session cookie for alice")
	}
	s.do(t, http.MethodGet, "/actions/v1/", "", "Cookie", magpietest.CookieName+"="+cookie)
	s.do(t, http.MethodPost, "/actions/v1/user.resync", `{"request_id": "r1", "body": {"user_name": "alice"}}`,
		"Cookie", magpietest.CookieName+"="+cookie)
	s.do(t, http.MethodGet, "/actions/v1/", "", bearer...)
	_, st := s.do(t, http.MethodPost, "/actions/v1/user.resync", `{"request_id": "r2", "body": {"user_name": "alice"}}`, bearer...)
	var run struct {
		ID string `json:"action_id"`
	}
	_ = json.Unmarshal([]byte(st), &run)
	if run.ID != "" {
		eventually(t, "user.resync to end", func() bool {
			_, st := s.do(t, http.MethodGet, "/actions/v1/user.resync/"+run.ID, "", bearer...)
			return strings.Contains(st, `"SUCCEEDED"`) || strings.Contains(st, `"FAILED"`)
		})
		s.do(t, http.MethodGet, "/actions/v1/user.resync/"+run.ID+"/log", "", bearer...)
	}
	_, list := s.do(t, http.MethodGet, "/actions/v1/hook.run?status=active,succeeded,failed&roles=monitor_by", "", bearer...)
	var hooks []struct {
		ID string `json:"action_id"`
	}
	_ = json.Unmarshal([]byte(list), &hooks)
	if len(hooks) == 0 {
		t.Fatal("no hook.run action")
	}
	for _, h := range hooks {
		s.do(t, http.MethodGet, "/actions/v1/hook.run/"+h.ID, "", bearer...)
		s.do(t, http.MethodGet, "/actions/v1/hook.run/"+h.ID+"/log?limit=100", "", bearer...)
	}

	// Magpie failing: errors of the Magpie handler reach the log and the
	// webhook answer.
	s.mp.Inject("*", magpietest.Fault{Status: http.StatusInternalServerError, Times: 5})
	s.do(t, http.MethodPost, "/webhooks/permissions", fmt.Sprintf(`{"event": "created", "service_name": "secure-data-proxy",
		"service_type": "api", "resource_id": %d, "resource_full_name": "/secure-data-proxy/wps_outputs", "name": "read",
		"access": "allow", "scope": "recursive", "user": "alice"}`, route), api.WebhookSecretHeader, leakWebhook)

	// `handlers info` of every handler.
	l := logrus.New()
	l.SetOutput(io.Discard)
	loaded, err := config.Load(s.cfgPath, logrus.NewEntry(l), ConfigKinds(Kinds))
	must(t, err)
	var info strings.Builder
	for _, hc := range loaded.Handlers {
		fmt.Fprintln(&info, Describe(hc))
	}

	// The hook did run and see its secrets, so the masking was tested.
	logText := s.log.String()
	for _, want := range []string{"pw ******** tok ******** arg ********", "quota refused ********"} {
		if !strings.Contains(logText+s.answers.String(), want) {
			t.Errorf("nothing written holds %q: the hook did not run as expected", want)
		}
	}
	secrets := []string{leakMagpiePw, leakGeoPw, leakToken, leakWebhook, leakHookEnv, leakHookVar, leakAlicePw,
		leakWrongToken, cookie, "cb-token-leak"}
	for _, d := range s.mp.Deliveries() { // Magpie's callback URLs hold a token
		var p struct {
			CallbackURL string `json:"callback_url"`
		}
		if json.Unmarshal(d.Body, &p) == nil && p.CallbackURL != "" {
			secrets = append(secrets, p.CallbackURL[strings.LastIndex(p.CallbackURL, "/")+1:])
		}
	}
	for where, text := range map[string]string{"the log": logText, "the HTTP answers": s.answers.String(), "handlers info": info.String()} {
		for _, secret := range secrets {
			if i := strings.Index(text, secret); i >= 0 {
				t.Errorf("%s holds the secret %q: ...%s...", where, secret, text[max(0, i-300):min(len(text), i+100)])
			}
		}
	}
}

// TestRefusedHookKeepsWebhookSuccessful: Magpie users named root and
// daemon get their workspace, and Magpie gets 200 for their creation
// (no failure callback, status OK), while the user_created hook, whose
// templated run_as would run as those accounts, is refused and recorded as
// a failed hook.run action, in the metrics and in the log.
func TestRefusedHookKeepsWebhookSuccessful(t *testing.T) {
	var callbacks atomic.Int32
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { callbacks.Add(1) }))
	t.Cleanup(cb.Close)
	marker := t.TempDir()
	s := startSecureDaemon(t, magpietest.Options{}, geoservertest.Options{}, `handlers:
  FileSystem:
    active: true
    priority: 1
    workspace_dir: %[1]s/user_workspaces
    jupyterhub_user_data_dir: %[1]s/jupyterhub_user_data
    wps_outputs_dir: %[1]s/wpsoutputs
  Hooks:
    active: true
    priority: 100
cowbird:
  admin_tokens:
    ops: `+leakToken+`
hooks:
  accounts:
    "*": {uid: 1000, gid: 100}
  user_created:
    run_as: "{{Event.UserName}}"
    tasks:
      - {command: /bin/sh, args: [-c, 'touch "$0"', "`+marker+`/{{Event.UserName}}"]}
# %[2]s %[3]s
`, addHeader{})
	bearer := []string{"Authorization", "Bearer " + leakToken}

	names := []string{"root", "daemon"}
	for _, name := range names {
		_, err := s.mp.AddUser(name, "", "users")
		must(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15e9)
	defer cancel()
	must(t, s.mp.WaitWebhooks(ctx))
	for _, d := range s.mp.Deliveries() {
		if d.Action == "create_user" && d.Status != http.StatusOK {
			t.Errorf("Magpie's create_user webhook got %d %s, want 200", d.Status, d.Err)
		}
	}
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(s.dir, "user_workspaces", name)); err != nil {
			t.Errorf("%s's workspace: %v", name, err)
		}
		if st, ok := s.mp.UserStatus(name); !ok || st != 1 {
			t.Errorf("Magpie status of %s = %d, want 1 (OK): the failure callback was called", name, st)
		}
		if _, err := os.Stat(filepath.Join(marker, name)); err == nil {
			t.Errorf("the hook ran for %s", name)
		}
	}
	// A direct webhook with a callback URL: 200, and no callback.
	code, body := s.do(t, http.MethodPost, "/webhooks/users",
		`{"event": "created", "user_name": "bin", "callback_url": "`+cb.URL+`/tmp/token"}`)
	if code != http.StatusOK || callbacks.Load() != 0 {
		t.Errorf("user webhook for bin = %d %s with %d callbacks; want 200 and none", code, body, callbacks.Load())
	}

	var refused []string
	eventually(t, "three failed hook.run actions", func() bool {
		_, list := s.do(t, http.MethodGet, "/actions/v1/hook.run?status=failed&roles=monitor_by", "", bearer...)
		var sts []map[string]any
		_ = json.Unmarshal([]byte(list), &sts)
		refused = refused[:0]
		for _, st := range sts {
			if d, ok := st["details"].(map[string]any); ok && d["code"] == "HOOK_FAILED" {
				refused = append(refused, fmt.Sprint(d["description"]))
			}
		}
		return len(refused) == 3
	})
	slices.Sort(refused)
	for i, want := range []string{`run_as "bin" has uid`, `run_as "daemon" has uid`, `run_as "root" is root`} {
		if !strings.Contains(refused[i], want) {
			t.Errorf("hook.run failure %q lacks %q", refused[i], want)
		}
	}
	_, metrics := s.do(t, http.MethodGet, "/metrics", "")
	if !strings.Contains(metrics, `cowbird_handler_calls_total{event="user_created",handler="Hooks",outcome="error"} 3`) {
		t.Errorf("the metrics do not count the 3 refused hooks:\n%s", grepLines(metrics, "cowbird_handler_calls_total"))
	}
	if n := strings.Count(s.log.String(), "the webhook answer does not report it"); n != 3 {
		t.Errorf("%d log records of a hook failure the webhook answer leaves out, want 3", n)
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestSecretsNotInConfigErrors: a configuration refused because of a
// malformed secret names the key, never the secret.
func TestSecretsNotInConfigErrors(t *testing.T) {
	const tok = "AdminToken-leak-51d0"
	for _, tc := range []struct {
		env, file string
	}{
		{env: tok}, // the name= forgotten
		{env: "ops=" + tok + ",ops=" + tok + "2"},    // defined twice
		{env: "abc+def/" + tok + "=="},               // base64 token, name= forgotten
		{env: "ops=sha256:" + tok},                   // not a hex digest
		{file: "admin_tokens: {ops: [" + tok + "]}"}, // not a string
		{file: "webhook_secret: [" + tok + "]"},
		{file: "admin_tokens: " + tok},
	} {
		if tc.env != "" {
			t.Setenv("COWBIRD_ADMIN_TOKENS", tc.env)
		} else {
			t.Setenv("COWBIRD_ADMIN_TOKENS", "")
		}
		cfg := "handlers:\n  Thredds:\n    active: true\n"
		if tc.file != "" {
			cfg += "cowbird:\n  " + tc.file + "\n"
		}
		path := filepath.Join(t.TempDir(), "config.yml")
		must(t, os.WriteFile(path, []byte(cfg), 0o600))
		l := logrus.New()
		var logs leakBuffer
		l.SetOutput(&logs)
		_, err := config.Load(path, logrus.NewEntry(l), ConfigKinds(Kinds))
		if err == nil {
			t.Errorf("%q %q: loaded, want an error", tc.env, tc.file)
			continue
		}
		if text := err.Error() + logs.String(); strings.Contains(text, tok) {
			t.Errorf("%q %q: the error holds the token: %s", tc.env, tc.file, text)
		}
	}
}
