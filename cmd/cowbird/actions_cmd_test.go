package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/store"
)

const (
	cliToken  = "cli-secret"
	hangGuard = 10 * time.Second
)

// daemonFixture is a daemon's HTTP API (api.New over a real actions.Service
// on a real store) with a handler.resync type that records its inputs and
// fails for handler "Broken", and a test.wait type that runs until released.
type daemonFixture struct {
	svc  *actions.Service
	url  string
	gate chan struct{}

	mu     sync.Mutex
	inputs []string
}

func newDaemonFixture(t *testing.T) *daemonFixture {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &daemonFixture{gate: make(chan struct{})}
	reg, err := handlers.NewRegistry(
		handlers.Registration{Handler: handlers.Named("FileSystem"), Active: true},
		handlers.Registration{Handler: handlers.Named("Magpie"), Active: true},
	)
	if err != nil {
		t.Fatal(err)
	}
	f.svc, f.url = serveAPI(t, db, []actions.Type{
		{Name: resyncType, Run: f.resync, InputSchema: json.RawMessage(`{"type": "object", "properties": {
			"handler": {"type": "string"}, "users": {"type": "array", "items": {"type": "string"}},
			"dry_run": {"type": "boolean"}}, "required": ["handler"], "additionalProperties": false}`)},
		{Name: "test.wait", InputSchema: json.RawMessage(`{"type": "object"}`),
			Run: func(ctx context.Context, _ json.RawMessage, p actions.Progress) (map[string]any, error) {
				select {
				case <-f.gate:
					return nil, nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}},
	}, api.Options{Registry: reg})
	return f
}

// serveAPI serves the actions API over db with the action types and opts
// (admin token cliToken) until the test ends, when it shuts the actions
// down and closes db.
func serveAPI(t *testing.T, db *store.DB, types []actions.Type, opts api.Options) (*actions.Service, string) {
	t.Helper()
	l := logrus.New()
	l.SetOutput(io.Discard)
	log := logrus.NewEntry(l)
	svc, err := actions.New(actions.Options{Store: db, Log: log, Types: types})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	opts.Log, opts.Actions = log, svc
	opts.Auth = api.Auth{AdminTokens: map[string]string{"cli": cliToken}}
	ts := httptest.NewServer(api.New(opts).Handler())
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return svc, ts.URL
}

func (f *daemonFixture) resync(ctx context.Context, input json.RawMessage, p actions.Progress) (map[string]any, error) {
	f.mu.Lock()
	f.inputs = append(f.inputs, string(input))
	f.mu.Unlock()
	var in struct{ Handler string }
	if err := json.Unmarshal(input, &in); err != nil {
		return nil, err
	}
	p.Progress(ctx, 50, "Halfway", nil)
	p.Log(ctx, "SCANNED", "scanned "+in.Handler)
	if in.Handler == "Broken" {
		return nil, errors.New("handler Broken is broken")
	}
	return map[string]any{"handler": in.Handler}, nil
}

func (f *daemonFixture) recorded() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.inputs, "\n")
}

// cli runs the cowbird command line in-process against the fixture.
func (f *daemonFixture) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append(args, "--url", f.url)
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// runWait starts a test.wait action through the service, as the CLI token.
func (f *daemonFixture) runWait(t *testing.T) string {
	t.Helper()
	st, _, err := f.svc.Run(t.Context(), actions.Caller{ID: "token:cli"}, "test.wait",
		actions.RunRequest{RequestID: "w", Body: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	return st.ActionID
}

func TestResyncWait(t *testing.T) {
	f := newDaemonFixture(t)
	code, out, errOut := f.cli(t, "resync", "FileSystem", "--user", "alice", "--user", "bob", "--dry-run",
		"--wait", "--interval", "1ms", "--token", cliToken)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	if want := `{"dry_run":true,"handler":"FileSystem","users":["alice","bob"]}`; f.recorded() != want {
		t.Errorf("inputs = %s, want %s", f.recorded(), want)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "SUCCEEDED 100% Succeeded") || strings.Contains(out, "[#") {
		t.Errorf("output (not a terminal: plain lines) = %q", out)
	}
}

func TestResyncEveryHandler(t *testing.T) {
	f := newDaemonFixture(t)
	t.Setenv("COWBIRD_TOKEN", cliToken)
	code, out, errOut := f.cli(t, "resync", "--wait", "--interval", "1ms", "--json")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	want := `{"dry_run":false,"handler":"FileSystem"}` + "\n" + `{"dry_run":false,"handler":"Magpie"}`
	if f.recorded() != want {
		t.Errorf("inputs = %s, want %s", f.recorded(), want)
	}
	var sts []actions.Status
	if err := json.Unmarshal([]byte(out), &sts); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	if len(sts) != 2 || sts[0].Status != actions.Succeeded || sts[1].Details["handler"] != "Magpie" {
		t.Errorf("statuses = %+v", sts)
	}
}

func TestResyncFailedExitsOne(t *testing.T) {
	f := newDaemonFixture(t)
	code, out, errOut := f.cli(t, "resync", "Broken", "--wait", "--interval", "1ms", "--token", cliToken)
	if code != exitFailure || !strings.Contains(errOut, "resync failed") || !strings.Contains(errOut, "handler Broken is broken") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "FAILED") {
		t.Errorf("output = %q", out)
	}
}

func TestResyncWithoutWait(t *testing.T) {
	f := newDaemonFixture(t)
	code, out, errOut := f.cli(t, "resync", "Magpie", "--token", cliToken)
	if code != exitOK || !strings.HasPrefix(out, "ACTION ID") || !strings.Contains(out, resyncType) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestActionsCommands(t *testing.T) {
	f := newDaemonFixture(t)
	id := f.runWait(t)
	tok := []string{"--token", cliToken}

	code, out, errOut := f.cli(t, append([]string{"actions", "list"}, tok...)...)
	if code != exitOK || !strings.HasPrefix(out, "ACTION ID") || !strings.Contains(out, id) || !strings.Contains(out, "test.wait") {
		t.Fatalf("list: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = f.cli(t, append([]string{"actions", "list", "--json", "--status", "succeeded"}, tok...)...)
	if code != exitOK || strings.TrimSpace(out) != "[]" {
		t.Errorf("list --status succeeded: exit %d, %q", code, out)
	}
	code, out, _ = f.cli(t, append([]string{"actions", "status", id}, tok...)...)
	if code != exitOK || !strings.Contains(out, "status:") || !strings.Contains(out, "ACTIVE") {
		t.Errorf("status: exit %d, %q", code, out)
	}
	code, out, errOut = f.cli(t, append([]string{"actions", "release", id}, tok...)...)
	if code != exitFailure || !strings.Contains(errOut, "409") || !strings.Contains(errOut, "still ACTIVE") {
		t.Errorf("release of an active action: exit %d, stderr %q", code, errOut)
	}
	code, out, _ = f.cli(t, append([]string{"actions", "cancel", id, "--json"}, tok...)...)
	var st actions.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != exitOK || st.ActionID != id {
		t.Fatalf("cancel: exit %d, %q", code, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
	defer cancel()
	if st, err := f.svc.Wait(ctx, id); err != nil || st.Details["code"] != actions.CodeCanceled {
		t.Fatalf("after cancel: %+v, %v", st, err)
	}
	code, out, _ = f.cli(t, append([]string{"actions", "log", id}, tok...)...)
	if code != exitOK || !strings.Contains(out, "CANCEL_REQUESTED") || !strings.Contains(out, actions.CodeCanceled) {
		t.Errorf("log: exit %d, %q", code, out)
	}
	code, out, _ = f.cli(t, append([]string{"actions", "release", id}, tok...)...)
	if code != exitOK || !strings.Contains(out, "FAILED") {
		t.Errorf("release: exit %d, %q", code, out)
	}
	code, _, errOut = f.cli(t, append([]string{"actions", "status", id}, tok...)...)
	if code != exitFailure || !strings.Contains(errOut, "action "+id+": not found") {
		t.Errorf("status after release: exit %d, stderr %q", code, errOut)
	}
}

func TestActionsCommandErrors(t *testing.T) {
	f := newDaemonFixture(t)
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no token", []string{"actions", "list"}, exitFailure, "401 no credentials"},
		{"wrong token", []string{"actions", "list", "--token", "nope"}, exitFailure, "401 bearer token is not valid"},
		{"bad id", []string{"actions", "status", "a/b", "--token", cliToken}, exitUsage, `invalid action ID "a/b"`},
		{"missing id", []string{"actions", "cancel", "--token", cliToken}, exitUsage, "accepts 1 arg"},
		{"resync wrong token", []string{"resync", "FileSystem", "--token", "nope"}, exitFailure, "401"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := f.cli(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) || strings.Contains(errOut, cliToken) {
				t.Errorf("exit %d, stderr %q; want exit %d with %q", code, errOut, tt.code, tt.want)
			}
		})
	}
}

func TestProgressLine(t *testing.T) {
	st := actions.Status{ActionID: "id1", Status: actions.Active, DisplayStatus: "Scanning",
		Details: map[string]any{"progress": 50.0}}
	if got, want := progressLine(st, true), "[###############---------------] id1 ACTIVE     50% Scanning"; got != want {
		t.Errorf("bar = %q, want %q", got, want)
	}
	if got, want := progressLine(st, false), "id1 ACTIVE     50% Scanning"; got != want {
		t.Errorf("line = %q, want %q", got, want)
	}
}
