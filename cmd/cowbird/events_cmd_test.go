package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/store"
)

// eventsCallback is a Magpie callback URL whose path and query are a token.
const eventsCallback = "https://magpie.example.org/tmp/9a8b7c6d5e4f3a2b?t=c4llb4ckt0k3n"

// eventsFixture is a daemon's HTTP API over a real store holding four
// journaled events, with an events.replay action type that records its
// inputs and fails when asked to replay handler "Broken".
type eventsFixture struct {
	url                      string
	failed, retry, done, brk uint64
	retryAt                  time.Time

	mu      sync.Mutex
	replays []string
}

func newEventsFixture(t *testing.T) *eventsFixture {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	f := &eventsFixture{retryAt: time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)}
	appendEv := func(ev handlers.Event, hs ...string) uint64 {
		t.Helper()
		rec, err := db.Append(ctx, ev, hs)
		if err != nil {
			t.Fatal(err)
		}
		return rec.ID
	}
	errs := []error{}
	f.failed = appendEv(handlers.UserEvent{Action: handlers.Created, UserName: "alice", CallbackURL: eventsCallback}, "FileSystem", "Magpie")
	errs = append(errs, db.Done(ctx, f.failed, "FileSystem"),
		db.Fail(ctx, f.failed, "Magpie", "HEAD "+eventsCallback+": 500 Internal Server Error", time.Time{}))
	f.retry = appendEv(handlers.PermissionEvent{Action: handlers.Created, ServiceType: "api", ResourceID: 42,
		ResourceFullName: "/secure-data-proxy/wpsoutputs", PermName: "read", Access: "allow", Scope: "match", User: "alice"}, "FileSystem")
	errs = append(errs, db.Fail(ctx, f.retry, "FileSystem", "magpie: 503 Service Unavailable", f.retryAt))
	f.done = appendEv(handlers.UserEvent{Action: handlers.Created, UserName: "bob"}, "FileSystem")
	errs = append(errs, db.Done(ctx, f.done, "FileSystem"))
	f.brk = appendEv(handlers.UserEvent{Action: handlers.Deleted, UserName: "carol"}, "Broken")
	errs = append(errs, db.Fail(ctx, f.brk, "Broken", "broken for good", time.Time{}))
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	_, f.url = serveAPI(t, db, []actions.Type{{
		Name: actions.ReplayType, InputSchema: json.RawMessage(`{"type": "object", "required": ["event_id"]}`),
		Run: func(_ context.Context, in json.RawMessage, _ actions.Progress) (map[string]any, error) {
			f.mu.Lock()
			f.replays = append(f.replays, string(in))
			f.mu.Unlock()
			var body actions.ReplayBody
			if err := json.Unmarshal(in, &body); err != nil {
				return nil, err
			}
			if slices.Contains(body.Handlers, "Broken") {
				return nil, errors.New("Broken: still broken")
			}
			return map[string]any{"event_id": body.EventID}, nil
		}}}, api.Options{Journal: db})
	return f
}

// cli runs the cowbird command line against the fixture with the token.
func (f *eventsFixture) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append(args, "--url", f.url, "--token", cliToken)
	code := run(args, &stdout, &stderr)
	out := stdout.String() + stderr.String()
	for _, secret := range []string{"9a8b7c6d5e4f3a2b", "c4llb4ckt0k3n", cliToken} {
		if strings.Contains(out, secret) {
			t.Errorf("cowbird %s printed the secret %q:\n%s", strings.Join(args, " "), secret, out)
		}
	}
	return code, stdout.String(), stderr.String()
}

func (f *eventsFixture) recorded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.replays)
}

// listedIDs are the IDs in the first column of a list's rows.
func listedIDs(out string) []string {
	var ids []string
	for _, line := range strings.Split(out, "\n")[1:] {
		if fields := strings.Fields(line); len(fields) > 0 && fields[0] != "Older" {
			ids = append(ids, fields[0])
		}
	}
	return ids
}

func id(n uint64) string { return strconv.FormatUint(n, 10) }

// TestEventsListCommand: events list prints a table, newest first, filtered
// by --failed, --pending, --user and paged by --limit and --before; --json
// prints the page; bad flags exit 2, a refused token 1.
func TestEventsListCommand(t *testing.T) {
	f := newEventsFixture(t)
	code, out, errOut := f.cli(t, "events", "list")
	if code != exitOK {
		t.Fatalf("list: exit %d, stderr %s", code, errOut)
	}
	lines := strings.Split(out, "\n")
	if !regexp.MustCompile(`^ID +RECEIVED +SOURCE +EVENT +KEY +STATUS +ATTEMPTS +NEXT RETRY +HANDLERS$`).MatchString(lines[0]) {
		t.Errorf("header = %q", lines[0])
	}
	rows := map[uint64]string{
		f.brk:    `^` + id(f.brk) + ` +\S+Z +user +user_deleted +user:carol +failed +1 +- +Broken failed$`,
		f.done:   `^` + id(f.done) + ` +\S+Z +user +user_created +user:bob +done +0 +- +-$`,
		f.retry:  `^` + id(f.retry) + ` +\S+Z +permission +permission_created +perm:alice//42/read +pending +1 +2031-03-04T05:06:07Z +FileSystem pending$`,
		f.failed: `^` + id(f.failed) + ` +\S+Z +user +user_created +user:alice +failed +1 +- +Magpie failed$`,
	}
	for i, n := range []uint64{f.brk, f.done, f.retry, f.failed} {
		if !regexp.MustCompile(rows[n]).MatchString(lines[i+1]) {
			t.Errorf("row %d = %q, want %s", i+1, lines[i+1], rows[n])
		}
	}

	for _, tc := range []struct {
		args []string
		want []uint64
	}{
		{[]string{"--failed"}, []uint64{f.brk, f.failed}},
		{[]string{"--pending"}, []uint64{f.retry}},
		{[]string{"--user", "alice"}, []uint64{f.retry, f.failed}},
		{[]string{"--user", "alice", "--failed"}, []uint64{f.failed}},
		{[]string{"--limit", "3", "--before", id(f.brk)}, []uint64{f.done, f.retry, f.failed}},
	} {
		code, out, errOut := f.cli(t, append([]string{"events", "list"}, tc.args...)...)
		var want []string
		for _, n := range tc.want {
			want = append(want, id(n))
		}
		if got := listedIDs(out); code != exitOK || !slices.Equal(got, want) {
			t.Errorf("list %v: exit %d, IDs %v, want %v; stdout %q stderr %q", tc.args, code, got, want, out, errOut)
		}
	}

	code, out, _ = f.cli(t, "events", "list", "--limit", "2")
	if want := "Older events match too: add --before " + id(f.done) + ".\n"; code != exitOK || !strings.HasSuffix(out, want) ||
		!slices.Equal(listedIDs(out), []string{id(f.brk), id(f.done)}) {
		t.Errorf("list --limit 2: exit %d, stdout %q", code, out)
	}
	if code, out, _ := f.cli(t, "events", "list", "--user", "nobody"); code != exitOK || out != "No matching events.\n" {
		t.Errorf("list --user nobody: exit %d, stdout %q", code, out)
	}

	code, out, errOut = f.cli(t, "events", "list", "--failed", "--json")
	var page actions.EventPage
	if err := json.Unmarshal([]byte(out), &page); code != exitOK || err != nil {
		t.Fatalf("list --json: exit %d, %v; stdout %q stderr %q", code, err, out, errOut)
	}
	if len(page.Events) != 2 || page.Events[1].Payload["callback_url"] != "https://magpie.example.org/********" ||
		page.Events[1].Replay == nil || page.Events[1].Replay.Body.Handlers[0] != "Magpie" {
		t.Errorf("list --json = %+v", page)
	}

	for _, args := range [][]string{{"--failed", "--pending"}, {"--limit", "0"}, {"--limit", "1001"}, {"--before", "x"}, {"extra"}} {
		if code, _, errOut := f.cli(t, append([]string{"events", "list"}, args...)...); code != exitUsage {
			t.Errorf("list %v: exit %d, want %d; stderr %q", args, code, exitUsage, errOut)
		}
	}
	var stdout, stderr bytes.Buffer
	t.Setenv("COWBIRD_TOKEN", "")
	if code := run([]string{"events", "list", "--url", f.url}, &stdout, &stderr); code != exitFailure ||
		!strings.Contains(stderr.String(), "401") {
		t.Errorf("list without a token: exit %d, stderr %q", code, stderr.String())
	}
}

// TestEventsShowCommand: events show prints the event, its payload masked,
// its handlers' outcomes, and for failed handlers the events.replay action:
// body, CLI line and a curl line that the daemon accepts.
func TestEventsShowCommand(t *testing.T) {
	f := newEventsFixture(t)
	code, out, errOut := f.cli(t, "events", "show", id(f.failed))
	if code != exitOK {
		t.Fatalf("show: exit %d, stderr %s", code, errOut)
	}
	for _, re := range []string{
		`(?m)^id: +` + id(f.failed) + `$`,
		`(?m)^received: +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`,
		`(?m)^source: +user$`,
		`(?m)^event: +user_created$`,
		`(?m)^key: +user:alice$`,
		`(?m)^status: +failed$`,
		`(?m)^attempts: +1$`,
		`(?m)^next retry: +-$`,
		`(?m)^payload: +\{"action":"created","callback_url":"https://magpie.example.org/\*{8}","user_name":"alice"\}$`,
		`(?m)^handlers:\n  Magpie +failed: HEAD https://magpie.example.org/\*{8}: 500 Internal Server Error$`,
		`(?m)^Replay the failed handlers with the events.replay action, body \{"event_id":` + id(f.failed) + `,"handlers":\["Magpie"\]\}:$`,
		`(?m)^  cowbird events replay ` + id(f.failed) + ` --handler Magpie --url ` + regexp.QuoteMeta(f.url) + `$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("show output lacks %s:\n%s", re, out)
		}
	}

	// The printed curl line starts the action on the daemon.
	m := regexp.MustCompile(`(?m)^  curl -s -H "Authorization: Bearer \$COWBIRD_TOKEN" -H 'Content-Type: application/json' -X POST (\S+) -d '(.*)'$`).
		FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no curl line in:\n%s", out)
	}
	var req struct {
		RequestID string             `json:"request_id"`
		Body      actions.ReplayBody `json:"body"`
	}
	if err := json.Unmarshal([]byte(m[2]), &req); err != nil || req.RequestID == "" || req.Body.EventID != f.failed ||
		!slices.Equal(req.Body.Handlers, []string{"Magpie"}) || m[1] != f.url+"/actions/v1/events.replay" {
		t.Fatalf("curl line: url %s, body %s (%v)", m[1], m[2], err)
	}
	hreq, _ := http.NewRequest(http.MethodPost, m[1], strings.NewReader(m[2]))
	hreq.Header.Set("Authorization", "Bearer "+cliToken)
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("the printed curl request answered %d, want 202", resp.StatusCode)
	}

	code, out, _ = f.cli(t, "events", "show", id(f.retry))
	for _, re := range []string{
		`(?m)^status: +pending$`, `(?m)^next retry: +2031-03-04T05:06:07Z$`,
		`(?m)^  FileSystem +pending, next retry 2031-03-04T05:06:07Z, last error: magpie: 503 Service Unavailable$`,
		`(?m)^payload: +\{.*"resource_id":42,.*"user":"alice"\}$`,
	} {
		if code != exitOK || !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("show %d (exit %d) lacks %s:\n%s", f.retry, code, re, out)
		}
	}
	if strings.Contains(out, "Replay") {
		t.Errorf("a pending event offers a replay:\n%s", out)
	}
	code, out, _ = f.cli(t, "events", "show", id(f.done))
	if code != exitOK || !strings.Contains(out, "handlers:    none pending, none failed\n") || strings.Contains(out, "Replay") {
		t.Errorf("show done: exit %d\n%s", code, out)
	}

	code, out, _ = f.cli(t, "events", "show", id(f.failed), "--json")
	var ev actions.JournalEvent
	if err := json.Unmarshal([]byte(out), &ev); code != exitOK || err != nil || ev.Replay == nil || ev.Replay.Type != actions.ReplayType ||
		ev.Handlers[0].Outcome != actions.EventFailed {
		t.Errorf("show --json: exit %d, %v: %s", code, err, out)
	}
	if code, _, errOut := f.cli(t, "events", "show", "99"); code != exitFailure || !strings.Contains(errOut, "404") {
		t.Errorf("show 99: exit %d, stderr %q", code, errOut)
	}
	for _, bad := range []string{"x", "0", "-3"} {
		if code, _, errOut := f.cli(t, "events", "show", bad); code != exitUsage {
			t.Errorf("show %s: exit %d, want %d; stderr %q", bad, code, exitUsage, errOut)
		}
	}
}

// TestEventsReplayCommand: events replay runs events.replay for the failed
// handlers, or those named; --wait exits 1 when the replay fails; an event
// with no failed handler needs --handler.
func TestEventsReplayCommand(t *testing.T) {
	f := newEventsFixture(t)
	code, out, errOut := f.cli(t, "events", "replay", id(f.failed), "--wait", "--interval", "1ms")
	if code != exitOK || !regexp.MustCompile(`(?m)^status: +SUCCEEDED$`).MatchString(out) {
		t.Errorf("replay: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = f.cli(t, "events", "replay", id(f.done))
	if code != exitFailure || !strings.Contains(errOut, "no handler failed for good (status done)") {
		t.Errorf("replay of a done event: exit %d, stderr %q", code, errOut)
	}
	code, out, errOut = f.cli(t, "events", "replay", id(f.done), "--handler", "FileSystem", "--handler", "Magpie",
		"--wait", "--interval", "1ms", "--json")
	var st actions.Status
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil || st.Status != actions.Succeeded {
		t.Errorf("replay --handler: exit %d, %v, stdout %q, stderr %q", code, err, out, errOut)
	}
	code, _, errOut = f.cli(t, "events", "replay", id(f.brk), "--wait", "--interval", "1ms")
	if code != exitFailure || !strings.Contains(errOut, "replay of event "+id(f.brk)+" failed") {
		t.Errorf("failing replay: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := f.cli(t, "events", "replay", "x"); code != exitUsage {
		t.Errorf("replay x: exit %d, want %d", code, exitUsage)
	}
	want := []string{
		`{"event_id":` + id(f.failed) + `,"handlers":["Magpie"]}`,
		`{"event_id":` + id(f.done) + `,"handlers":["FileSystem","Magpie"]}`,
		`{"event_id":` + id(f.brk) + `,"handlers":["Broken"]}`,
	}
	if got := f.recorded(); !slices.Equal(got, want) {
		t.Errorf("replays = %v, want %v", got, want)
	}
}
