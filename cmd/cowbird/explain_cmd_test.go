package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/app"
	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// explainConfig runs the Magpie and FileSystem handlers against the
// emulator, with the CLI's admin token.
const explainConfig = `cowbird:
  admin_tokens:
    cli: %[3]s
handlers:
  Magpie:
    active: true
    url: %[2]s
    admin_user: admin
    admin_password: qwertyqwerty
  FileSystem:
    active: true
    workspace_dir: %[1]s/user_workspaces
    jupyterhub_user_data_dir: %[1]s/jupyterhub_user_data
    wps_outputs_dir: %[1]s/wpsoutputs
`

// waitFor polls cond until it holds, failing the test after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// explainDaemon is a running daemon over a tree where alice's group users
// may read weaver/users/<id>/job1/out.nc and is denied
// weaver/users/<id>/secret/s.nc.
type explainDaemon struct {
	base, dir      string
	readable, deny string // the two sources
	link           string // the readable one's link
}

func startExplainDaemon(t *testing.T) *explainDaemon {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"user_workspaces/alice", "jupyterhub_user_data", "wpsoutputs"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mg := magpietest.NewServer(t, magpietest.Options{QuietSeeding: true})
	id, err := mg.AddUser("alice", "", "users")
	must(t, err)
	sdp, err := mg.AddService("secure-data-proxy", "api")
	must(t, err)
	route, err := mg.AddResource(sdp, "wps_outputs", "route")
	must(t, err)
	must(t, mg.SetGroupPermission("users", route, "read-allow-recursive"))
	parent := route
	for _, name := range []string{"weaver", "users", fmt.Sprint(id), "secret"} {
		parent, err = mg.AddResource(parent, name, "route")
		must(t, err)
	}
	must(t, mg.SetGroupPermission("users", parent, "read-deny-recursive"))
	x := &explainDaemon{dir: dir,
		readable: filepath.Join(dir, "wpsoutputs/weaver/users", fmt.Sprint(id), "job1/out.nc"),
		deny:     filepath.Join(dir, "wpsoutputs/weaver/users", fmt.Sprint(id), "secret/s.nc"),
		link:     filepath.Join(dir, "user_workspaces/alice/wps_outputs/weaver/job1/out.nc")}
	for _, f := range []string{x.readable, x.deny} {
		must(t, os.MkdirAll(filepath.Dir(f), 0o755))
		must(t, os.WriteFile(f, []byte("data"), 0o664))
	}

	s, err := config.LoadSettings(func(string) (string, bool) { return "", false })
	must(t, err)
	s.ConfigPath = writeConfig(t, fmt.Sprintf(explainConfig, dir, mg.URL(), cliToken))
	s.Addr, s.DataDir = "127.0.0.1:0", filepath.Join(dir, "data")
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{Settings: s, Log: log, Out: io.Discard, Ready: func(a string) { addr <- a }})
	}()
	select {
	case a := <-addr:
		x.base = "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("daemon did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon stopped with %v", err)
		}
	})
	// The start-up reconcile links what was there before the watch.
	waitFor(t, "the start-up link", func() bool { _, err := os.Lstat(x.link); return err == nil })
	return x
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// cli runs the command line against the daemon with the admin token.
func (x *explainDaemon) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, append(args, "--url", x.base, "--token", cliToken)...)
}

// TestExplainCommand: on a running daemon, cowbird explain reports a
// missing link with its fix, which fixes it; a path denied by a group
// with Magpie's reason (--json); a user's outputs; and refuses bad input.
func TestExplainCommand(t *testing.T) {
	x := startExplainDaemon(t)
	must(t, os.Remove(x.link))

	code, out, errOut := x.cli(t, "explain", x.readable)
	if code != exitOK {
		t.Fatalf("explain = %d %s", code, errOut)
	}
	for _, want := range []string{
		x.readable + " (checked ",
		"  ok    read permission   allow for alice on secure-data-proxy/wps_outputs/weaver/users/",
		"(effective): Magpie's reason: a permission of their group users (group:",
		"  FAIL  link              missing: " + x.link + "\n" + strings.Repeat(" ", 26) + "fix: cowbird resync FileSystem --user alice\n",
		"\nFix: cowbird resync FileSystem --user alice\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = x.cli(t, "explain", "--user", "alice")
	if code != exitOK || !strings.Contains(out, "user alice (checked ") ||
		!strings.Contains(out, "  FAIL  outputs ") || !strings.Contains(out, " in 1 bird, 1 readable: 0 linked, 1 missing (e.g. "+x.link+")") ||
		!strings.Contains(out, "  ok    denied outputs  1 denied by Magpie (e.g. "+x.deny+"), none linked") {
		t.Errorf("explain --user = %d:\n%s", code, out)
	}

	if code, out, errOut := x.cli(t, "resync", "FileSystem", "--user", "alice", "--wait", "--interval", "10ms"); code != exitOK {
		t.Fatalf("the fix = %d %s %s", code, out, errOut)
	}
	code, out, _ = x.cli(t, "explain", x.readable)
	if code != exitOK || !strings.HasSuffix(out, "Everything is as it should be.\n") {
		t.Errorf("after the fix = %d:\n%s", code, out)
	}
	// The daemon's own facts: the watch, the events, the reconcile.
	for _, want := range []string{
		"  ok    watch             FileSystem watches " + filepath.Join(x.dir, "wpsoutputs") + " (its tree): file events reach it\n",
		"  ok    events            no pending or failed event touches it among the 0 kept in the journal (user events of alice; " +
			"permission events of alice or their groups (anonymous, users) on /secure-data-proxy/wps_outputs/weaver/users/",
		"  ok    last reconcile    handler.resync FileSystem \"resync FileSystem\" (users alice) SUCCEEDED ",
		"it covered it (1 link created, 0 removed, 0 modes fixed, 0 failed); since start 2 FileSystem reconciles ok, 0 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = x.cli(t, "explain", x.deny, "--json")
	var doc struct {
		Path  string `json:"path"`
		OK    bool   `json:"ok"`
		Fix   string `json:"fix"`
		Facts []fact `json:"facts"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &doc) != nil {
		t.Fatalf("explain --json = %d %q", code, out)
	}
	got := map[string]fact{}
	for _, f := range doc.Facts {
		got[f.Check] = f
	}
	if f := got["read permission"]; doc.Path != x.deny || doc.OK || f.OK ||
		!strings.Contains(f.Detail, "deny for alice on secure-data-proxy/wps_outputs/weaver/users/") ||
		!strings.Contains(f.Detail, "a permission of their group users") || doc.Fix != f.Fix {
		t.Errorf("denied path: %+v", doc)
	}
	if f := got["link"]; !f.OK || !strings.Contains(f.Detail, "as expected: alice may not read it") {
		t.Errorf("denied link fact %+v", f)
	}
	if f := got["others bits"]; !f.OK || !strings.HasPrefix(f.Detail, "---") {
		t.Errorf("denied others bits %+v", f)
	}
}

// TestExplainCommandErrors: usage errors exit 2 (a path the daemon refuses
// too), a missing token and a server without the route exit 1.
func TestExplainCommandErrors(t *testing.T) {
	x := startExplainDaemon(t)
	for _, args := range [][]string{{"explain"}, {"explain", x.readable, "--user", "alice"}, {"explain", "a", "b"}} {
		if code, _, _ := x.cli(t, args...); code != exitUsage {
			t.Errorf("%v = %d, want %d", args, code, exitUsage)
		}
	}
	code, _, errOut := x.cli(t, "explain", "/etc/passwd")
	if code != exitUsage || !strings.Contains(errOut, `path "/etc/passwd": not under wps_outputs_dir`) {
		t.Errorf("outside path = %d %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "explain", x.readable, "--url", x.base)
	if code != exitFailure || !strings.Contains(errOut, "401") {
		t.Errorf("no token = %d %q", code, errOut)
	}

	ts := httptest.NewServer(api.New(api.Options{Auth: api.Auth{AdminTokens: map[string]string{"cli": cliToken}}}).Handler())
	t.Cleanup(ts.Close)
	code, _, errOut = runCLI(t, "explain", "--user", "alice", "--url", ts.URL, "--token", cliToken)
	if code != exitFailure || !strings.Contains(errOut, "404: this daemon has no /explain route") {
		t.Errorf("no FileSystem handler = %d %q", code, errOut)
	}
}
