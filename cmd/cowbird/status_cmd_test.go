package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/api"
)

// TestStatusCommand: on a running daemon, cowbird status shows it ready,
// its handlers, an empty journal, the start-up reconcile, its watches and
// no action; after a resync, the last reconcile action and its figures;
// --json prints the daemon's document.
func TestStatusCommand(t *testing.T) {
	x := startExplainDaemon(t)
	var out string
	waitFor(t, "the start-up reconcile counted", func() bool {
		var code int
		code, out, _ = x.cli(t, "status")
		return code == exitOK && strings.Contains(out, "reconcile:  1 ok, 0 failed since start")
	})
	for _, re := range []string{
		`^cowbird unknown \(Cowbird API 2\.6\.0\), up \d+s since \S+Z, checked \S+Z\n`,
		`\nready:      yes\n`,
		`\nhandlers:   Magpie      ready\n            FileSystem  active\n`,
		`\njournal:    0 events kept, 0 pending, 0 failed\n`,
		`\nreconcile:  1 ok, 0 failed since start \(start-up, overflow, resync, periodic\)\n              last action: none kept\n`,
		`\nwatches:    [1-9]\d* (of \d+ \(\d+\.\d %\)|limit unknown), 0 degraded, 0 overflows, 0 refused at the limit\n`,
		`\nactions:    none running\n$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status output does not match %q:\n%s", re, out)
		}
	}

	// alice's link goes missing; a resync restores it.
	must(t, os.Remove(x.link))
	if code, out, errOut := x.cli(t, "resync", "FileSystem", "--wait", "--interval", "10ms"); code != exitOK {
		t.Fatalf("resync = %d %s %s", code, out, errOut)
	}
	code, out, _ := x.cli(t, "status")
	if code != exitOK {
		t.Fatalf("status = %d", code)
	}
	for _, re := range []string{
		`\n              last action: handler\.resync FileSystem "resync FileSystem" SUCCEEDED \S+Z, in \d+ms, id [0-9a-f-]{36}\n`,
		`\n                \d+ sources; links 1 created, 0 replaced, 0 removed; 0 modes fixed; dirs \d+ created, 0 removed; 0 skipped, 0 failed\n`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status output after a resync does not match %q:\n%s", re, out)
		}
	}

	code, out, _ = x.cli(t, "status", "--json")
	var st api.DaemonStatus
	if code != exitOK || json.Unmarshal([]byte(out), &st) != nil || !strings.HasPrefix(out, "{\n    \"version\": ") {
		t.Fatalf("status --json = %d %q", code, out)
	}
	if !st.Ready || len(st.Handlers) != 2 || st.Reconcile.Last == nil || st.Reconcile.Last.Figures == nil ||
		st.Reconcile.Last.Figures.LinksCreated != 1 || st.Watches.Watches == 0 {
		t.Errorf("status --json = %+v", st)
	}
}

// troubled is a status with something to look at in every part.
func troubled() api.DaemonStatus {
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	oldest, retry := at(-30), at(10)
	return api.DaemonStatus{
		Version: "1.2.3", APIVersion: "2.6.0", Started: at(-90), CheckedAt: t0,
		NotReady: []string{"Magpie: sign-in refused: 401 Unauthorized"},
		Handlers: []api.HandlerState{
			{Name: "FileSystem", State: api.HandlerActive},
			{Name: "Magpie", State: api.HandlerNotReady, Error: "sign-in refused: 401 Unauthorized"},
			{Name: "Geoserver", State: api.HandlerActive, Detail: "GeoServer jobs: 2 pending, 1 failed (1 since start)"},
			{Name: "Nginx", State: api.HandlerInactive},
		},
		Journal: api.JournalState{Events: 40, Pending: 2, OldestPending: &oldest, NextRetry: &retry, Failed: 3, LastFailed: 38},
		Reconcile: api.ReconcileState{RunsOK: 4, RunsFailed: 1, Last: &api.LastReconcile{
			ActionID: "6a1f0c2e-0000-4000-8000-000000000001", Type: "handler.resync", Handler: "FileSystem",
			Label: "periodic reconcile", Status: actions.Failed, Error: "magpie: 503 Service Unavailable",
			Started: at(-2), Completed: at(-1),
			Figures: &api.ReconcileFigures{Sources: 120, LinksCreated: 5, ModesFixed: 2, Failed: 1}}},
		Watches: api.WatchState{Watches: 7000, MaxWatches: 8192, Overflows: 2, LimitErrors: 1,
			Degraded: []api.DegradedWatch{{Handler: "Geoserver", Path: "/data/user_workspaces/eve/shapefile_datastore",
				Error: "no space left on device", Since: at(-5), Failures: 1}}},
		Actions: []api.RunningAction{{ActionID: "6a1f0c2e-0000-4000-8000-000000000002", Type: "user.resync",
			Label: "rebuild eve", Status: actions.Active, DisplayStatus: "Rebuilding for eve", Creator: "token:ops", Started: at(-1)}},
	}
}

// troubledText is how cowbird status --url http://cowbird:7000 prints
// troubled().
const troubledText = `cowbird 1.2.3 (Cowbird API 2.6.0), up 1h30m0s since 2026-12-02T04:30:00Z, checked 2026-12-02T06:00:00Z
ready:      NO
              Magpie: sign-in refused: 401 Unauthorized
handlers:   FileSystem  active
            Magpie      not ready: sign-in refused: 401 Unauthorized
            Geoserver   active; GeoServer jobs: 2 pending, 1 failed (1 since start)
            Nginx       inactive
journal:    40 events kept, 2 pending, 3 failed
              pending: oldest received 2026-12-02T05:30:00Z, next retry 2026-12-02T06:10:00Z
              see: cowbird events list --pending --url http://cowbird:7000
              newest failed: event 38; see: cowbird events list --failed --url http://cowbird:7000, cowbird events show 38 --url http://cowbird:7000
reconcile:  4 ok, 1 failed since start (start-up, overflow, resync, periodic)
              last action: handler.resync FileSystem "periodic reconcile" FAILED 2026-12-02T05:59:00Z, in 1m0s, id 6a1f0c2e-0000-4000-8000-000000000001
                120 sources; links 5 created, 0 replaced, 0 removed; 2 modes fixed; dirs 0 created, 0 removed; 0 skipped, 1 failed
                magpie: 503 Service Unavailable; see: cowbird actions log 6a1f0c2e-0000-4000-8000-000000000001 --url http://cowbird:7000
watches:    7000 of 8192 (85.4 %, above 80 %: raise fs.inotify.max_user_watches, see docs/operations.md), 1 degraded, 2 overflows, 1 refused at the limit
              Geoserver /data/user_workspaces/eve/shapefile_datastore: no space left on device (since 2026-12-02T05:55:00Z, 1 failure; retried every 30 s)
actions:    1 running or waiting
              6a1f0c2e-0000-4000-8000-000000000002  user.resync "rebuild eve"  ACTIVE  Rebuilding for eve, started 2026-12-02T05:59:00Z by token:ops
`

// TestStatusCommandTroubled: every part's trouble is printed with the
// command that shows more, and a daemon that is not ready exits 1 after
// printing (also with --json, which prints the document as it came).
func TestStatusCommandTroubled(t *testing.T) {
	doc, err := json.Marshal(troubled())
	must(t, err)
	var auth []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.Header.Get("Authorization"))
		if r.URL.Path != api.StatusPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(ts.Close)

	var out strings.Builder
	printDaemonStatus(&out, troubled(), " --url http://cowbird:7000")
	if out.String() != troubledText {
		t.Errorf("status text:\n%s\nwant:\n%s", out.String(), troubledText)
	}

	code, stdout, stderr := runCLI(t, "status", "--url", ts.URL, "--token", "t0ken")
	if code != exitFailure || stderr != "cowbird: the daemon is not ready\n" ||
		!strings.HasPrefix(stdout, "cowbird 1.2.3 (Cowbird API 2.6.0)") ||
		!strings.Contains(stdout, "cowbird events show 38 --url "+ts.URL+"\n") {
		t.Errorf("status = %d %q\n%s", code, stderr, stdout)
	}
	t.Setenv("COWBIRD_TOKEN", "env-t0ken")
	code, stdout, _ = runCLI(t, "status", "--url", ts.URL, "--json")
	var back api.DaemonStatus
	if code != exitFailure || json.Unmarshal([]byte(stdout), &back) != nil || back.Journal.LastFailed != 38 ||
		!strings.Contains(stdout, "\n    \"not_ready\": [\n        \"Magpie: sign-in refused: 401 Unauthorized\"\n    ],\n") {
		t.Errorf("status --json = %d\n%s", code, stdout)
	}
	if len(auth) != 2 || auth[0] != "Bearer t0ken" || auth[1] != "Bearer env-t0ken" {
		t.Errorf("Authorization headers = %q", auth)
	}
}

// TestStatusCommandErrors: no token (401) and a daemon without the route
// (404) exit 1 and say what to do; a bad flag or argument exits 2.
func TestStatusCommandErrors(t *testing.T) {
	x := startExplainDaemon(t)
	t.Setenv("COWBIRD_TOKEN", "")
	code, _, errOut := runCLI(t, "status", "--url", x.base)
	if code != exitFailure || !strings.Contains(errOut, "GET /status: 401: ") || !strings.Contains(errOut, "--token or $COWBIRD_TOKEN") {
		t.Errorf("no token = %d %q", code, errOut)
	}
	ts := httptest.NewServer(api.New(api.Options{Auth: api.Auth{AdminTokens: map[string]string{"cli": cliToken}}}).Handler())
	t.Cleanup(ts.Close)
	code, _, errOut = runCLI(t, "status", "--url", ts.URL, "--token", cliToken)
	if code != exitFailure || !strings.Contains(errOut, "GET /status: 404: this daemon has no status route") {
		t.Errorf("no route = %d %q", code, errOut)
	}
	for _, args := range [][]string{{"status", "extra"}, {"status", "--url", "http://[::1"}, {"status", "--nope"}} {
		if code, _, errOut := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v = %d %q, want %d", args, code, errOut, exitUsage)
		}
	}
}
