package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/store"
)

const hangGuard = 10 * time.Second

// Credentials of the action tests.
var (
	opsToken   = "ops-secret-token"
	cronToken  = "cron-secret-token" // configured only as its hash
	guestToken = "guest-token"       // valid, but not in runnable_by
	testAuth   = Auth{
		AdminTokens: map[string]string{
			"ops":   opsToken,
			"cron":  "sha256:" + sha256Hex(cronToken),
			"guest": guestToken,
		},
		RunnableBy: map[string][]string{"test.wait": {"token:ops", "token:cron", AdminGroup}},
	}
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

const waitSchema = `{"type": "object", "properties": {"name": {"type": "string", "minLength": 1},
	"fail": {"type": "string"}}, "required": ["name"], "additionalProperties": false}`

// actionsFixture serves api.New over a real actions.Service on a real
// bbolt store. Actions of type test.wait block until finish(name).
type actionsFixture struct {
	svc     *actions.Service
	ts      *httptest.Server
	started chan string

	mu    sync.Mutex
	gates map[string]chan struct{}
}

func newActionsFixture(t *testing.T, auth Auth) *actionsFixture {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	log := logrus.NewEntry(l)
	f := &actionsFixture{started: make(chan string, 16), gates: map[string]chan struct{}{}}
	svc, err := actions.New(actions.Options{Store: db, Log: log, Types: []actions.Type{
		{Name: "test.wait", Description: "waits for the test", InputSchema: json.RawMessage(waitSchema), Run: f.run},
		{Name: "test.quick", InputSchema: json.RawMessage(`{"type": "object"}`),
			Run: func(context.Context, json.RawMessage, actions.Progress) (map[string]any, error) {
				return map[string]any{"done": true}, nil
			}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	f.ts = httptest.NewServer(New(Options{Log: log, Actions: svc, Auth: auth}).Handler())
	t.Cleanup(func() {
		f.ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

func (f *actionsFixture) gate(name string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gates[name] == nil {
		f.gates[name] = make(chan struct{})
	}
	return f.gates[name]
}

// run is test.wait's Run: it reports its start, then waits for finish.
func (f *actionsFixture) run(ctx context.Context, input json.RawMessage, p actions.Progress) (map[string]any, error) {
	var in struct{ Name, Fail string }
	if err := json.Unmarshal(input, &in); err != nil {
		return nil, err
	}
	f.started <- in.Name
	p.Log(ctx, "WORKING", "working on "+in.Name)
	select {
	case <-f.gate(in.Name):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if in.Fail != "" {
		return nil, errors.New(in.Fail)
	}
	return map[string]any{"name": in.Name}, nil
}

// finish lets action name end and waits until it is terminal.
func (f *actionsFixture) finish(t *testing.T, name, id string) {
	t.Helper()
	close(f.gate(name))
	ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
	defer cancel()
	if _, err := f.svc.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
}

func (f *actionsFixture) waitStarted(t *testing.T, name string) {
	t.Helper()
	select {
	case got := <-f.started:
		if got != name {
			t.Fatalf("started %q, want %q", got, name)
		}
	case <-time.After(hangGuard):
		t.Fatalf("action %q did not start", name)
	}
}

// answer is a decoded reply of the actions API.
type answer struct {
	code int
	raw  string
	hdr  http.Header
}

func (a answer) status(t *testing.T) actions.Status {
	t.Helper()
	var st actions.Status
	if err := json.Unmarshal([]byte(a.raw), &st); err != nil {
		t.Fatalf("status %q: %v", a.raw, err)
	}
	return st
}

// expectError checks an error answer's status and envelope code, and that
// its description contains want.
func (a answer) expectError(t *testing.T, status int, code, want string) {
	t.Helper()
	var body map[string]string
	if err := json.Unmarshal([]byte(a.raw), &body); err != nil {
		t.Fatalf("body %q: %v", a.raw, err)
	}
	if a.code != status || body["code"] != code || !strings.Contains(body["description"], want) || len(body) != 2 {
		t.Fatalf("answer %d %s, want %d with code %s and description containing %q", a.code, a.raw, status, code, want)
	}
}

// do sends a request with token as bearer token ("" for none).
func (f *actionsFixture) do(t *testing.T, token, method, path, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{code: resp.StatusCode, raw: string(data), hdr: resp.Header}
}

// start runs a test.wait action as ops and returns its status.
func (f *actionsFixture) start(t *testing.T, token, requestID, name string) actions.Status {
	t.Helper()
	a := f.do(t, token, http.MethodPost, "/actions/v1/test.wait", `{"request_id": "`+requestID+`", "body": {"name": "`+name+`"}}`)
	if a.code != http.StatusAccepted {
		t.Fatalf("run: %d %s", a.code, a.raw)
	}
	f.waitStarted(t, name)
	return a.status(t)
}

func TestActionsIntrospect(t *testing.T) {
	f := newActionsFixture(t, testAuth)
	for _, path := range []string{"/actions/v1/", "/actions/v1", "/cowbird/actions/v1/"} {
		a := f.do(t, opsToken, http.MethodGet, path, "")
		var doc struct {
			Title        string `json:"title"`
			Synchronous  *bool  `json:"synchronous"`
			LogSupported bool   `json:"log_supported"`
			ActionTypes  []struct {
				Title       string          `json:"title"`
				InputSchema json.RawMessage `json:"input_schema"`
				Synchronous *bool           `json:"synchronous"`
				RunnableBy  []string        `json:"runnable_by"`
			} `json:"action_types"`
		}
		if a.code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, a.code, a.raw)
		}
		if err := json.Unmarshal([]byte(a.raw), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Title == "" || doc.Synchronous == nil || *doc.Synchronous || !doc.LogSupported || len(doc.ActionTypes) != 2 {
			t.Fatalf("GET %s: %s", path, a.raw)
		}
		wait, quick := doc.ActionTypes[1], doc.ActionTypes[0]
		if wait.Title != "test.wait" || !strings.Contains(string(wait.InputSchema), `"required"`) ||
			wait.Synchronous == nil || *wait.Synchronous || strings.Join(wait.RunnableBy, ",") != "token:ops,token:cron,"+AdminGroup {
			t.Errorf("test.wait = %+v", wait)
		}
		// The default runnable_by: the administrators group and every token.
		if got, want := strings.Join(quick.RunnableBy, ","), AdminGroup+",token:cron,token:guest,token:ops"; got != want {
			t.Errorf("test.quick runnable_by = %s, want %s", got, want)
		}
	}
	f.do(t, "", http.MethodGet, "/actions/v1/", "").expectError(t, http.StatusUnauthorized, "UnauthorizedRequest", "no credentials")
}

func TestActionsAuthentication(t *testing.T) {
	f := newActionsFixture(t, testAuth)
	const path = "/actions/v1/test.quick"
	tests := []struct {
		name   string
		header []string
		code   int
		want   string
	}{
		{"no token", nil, http.StatusUnauthorized, "no credentials"},
		{"wrong token", []string{"Authorization", "Bearer nope"}, http.StatusUnauthorized, "not valid"},
		{"hash as token", []string{"Authorization", "Bearer " + sha256Hex(cronToken)}, http.StatusUnauthorized, "not valid"},
		{"basic scheme", []string{"Authorization", "Basic b3BzOnNlY3JldA=="}, http.StatusUnauthorized, "not a bearer token"},
		{"cookie without magpie auth", []string{"Cookie", MagpieCookie + "=abc"}, http.StatusUnauthorized, "no credentials"},
		{"valid token", []string{"Authorization", "Bearer " + opsToken}, http.StatusOK, ""},
		{"hashed token", []string{"Authorization", "bearer " + cronToken}, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.do(t, "", http.MethodGet, path, "", tt.header...)
			if tt.code != http.StatusOK {
				a.expectError(t, tt.code, "UnauthorizedRequest", tt.want)
				if a.hdr.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				return
			}
			if a.code != http.StatusOK || a.raw != "[]\n" {
				t.Errorf("GET %s = %d %s, want 200 []", path, a.code, a.raw)
			}
		})
	}
}

func TestActionsRunErrors(t *testing.T) {
	f := newActionsFixture(t, testAuth)
	tests := []struct {
		name, token, path, body string
		code                    int
		errCode, want           string
	}{
		{"not runnable", guestToken, "/actions/v1/test.wait", `{"request_id": "1", "body": {"name": "a"}}`,
			http.StatusForbidden, "ForbiddenRequest", "token:guest may not run test.wait"},
		{"unknown type", opsToken, "/actions/v1/no.such", `{"request_id": "1", "body": {}}`,
			http.StatusNotFound, "ActionNotFound", "/actions/v1/no.such"},
		{"bad json", opsToken, "/actions/v1/test.wait", `{"request_id": `,
			http.StatusBadRequest, "BadActionRequest", "Invalid JSON"},
		{"empty body", opsToken, "/actions/v1/test.wait", ``,
			http.StatusBadRequest, "BadActionRequest", "Invalid JSON"},
		{"not an object", opsToken, "/actions/v1/test.wait", `[1]`,
			http.StatusUnprocessableEntity, "RequestValidationError", "Field '$' (category: 'type')"},
		{"missing request_id", opsToken, "/actions/v1/test.wait", `{"body": {"name": "a"}}`,
			http.StatusUnprocessableEntity, "RequestValidationError", "Field '$.request_id' (category: 'missing')"},
		{"request_id not a string", opsToken, "/actions/v1/test.wait", `{"request_id": ["x"], "body": {"name": "a"}}`,
			http.StatusUnprocessableEntity, "RequestValidationError", "Field '$.request_id' (category: 'type')"},
		{"monitor_by not a list", opsToken, "/actions/v1/test.wait", `{"request_id": "1", "monitor_by": "x", "body": {"name": "a"}}`,
			http.StatusUnprocessableEntity, "RequestValidationError", "Field '$.monitor_by' (category: 'type')"},
		{"bad principal", opsToken, "/actions/v1/test.wait", `{"request_id": "1", "manage_by": ["bob"], "body": {"name": "a"}}`,
			http.StatusUnprocessableEntity, "RequestValidationError", "Field '$.manage_by[0]'"},
		{"missing body", opsToken, "/actions/v1/test.wait", `{"request_id": "1"}`,
			http.StatusUnprocessableEntity, "RequestValidationError", "Field '$.body' (category: 'missing')"},
		{"schema: missing field", opsToken, "/actions/v1/test.wait", `{"request_id": "1", "body": {}}`,
			http.StatusUnprocessableEntity, "RequestValidationError", "Field '$.body.name'"},
		{"schema: wrong type", opsToken, "/actions/v1/test.wait", `{"request_id": "1", "body": {"name": 3}}`,
			http.StatusUnprocessableEntity, "RequestValidationError", "Field '$.body.name' (category: 'type')"},
		{"bad release_after", opsToken, "/actions/v1/test.wait", `{"request_id": "1", "release_after": "soon", "body": {"name": "a"}}`,
			http.StatusUnprocessableEntity, "RequestValidationError", "Field '$.release_after'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.do(t, tt.token, http.MethodPost, tt.path, tt.body).expectError(t, tt.code, tt.errCode, tt.want)
		})
	}
	// Nothing was started by the refused requests.
	if a := f.do(t, opsToken, http.MethodGet, "/actions/v1/test.wait?status=active,inactive,succeeded,failed", ""); a.raw != "[]\n" {
		t.Errorf("actions after refused runs: %s", a.raw)
	}
}

func TestActionsRunDeduplicates(t *testing.T) {
	f := newActionsFixture(t, testAuth)
	first := f.start(t, opsToken, "r1", "a")
	if first.Status != actions.Active || first.CreatorID != "token:ops" || first.ActionID == "" {
		t.Fatalf("first run = %+v", first)
	}
	// Same request_id, same content: 200 with the same action.
	again := f.do(t, opsToken, http.MethodPost, "/actions/v1/test.wait", `{"body": {"name": "a"}, "request_id": "r1"}`)
	if again.code != http.StatusOK || again.status(t).ActionID != first.ActionID {
		t.Fatalf("repeat = %d %s", again.code, again.raw)
	}
	// Same request_id, other content: 409.
	f.do(t, opsToken, http.MethodPost, "/actions/v1/test.wait", `{"request_id": "r1", "body": {"name": "b"}}`).
		expectError(t, http.StatusConflict, "ActionConflict", "already present with different parameters")
	// Request IDs are per caller: another token starts its own action.
	other := f.start(t, cronToken, "r1", "c")
	if other.ActionID == first.ActionID || other.CreatorID != "token:cron" {
		t.Fatalf("other caller's run = %+v", other)
	}
	// A numeric request_id is a string.
	num := f.do(t, opsToken, http.MethodPost, "/actions/v1/test.quick", `{"request_id": 7, "body": {}}`)
	numAgain := f.do(t, opsToken, http.MethodPost, "/actions/v1/test.quick", `{"request_id": "7", "body": {}}`)
	if num.code != http.StatusAccepted || numAgain.code != http.StatusOK || num.status(t).ActionID != numAgain.status(t).ActionID {
		t.Errorf("numeric request_id: %d %s then %d %s", num.code, num.raw, numAgain.code, numAgain.raw)
	}
	f.finish(t, "a", first.ActionID)
	f.finish(t, "c", other.ActionID)
	// After release the request_id starts a new action.
	if a := f.do(t, opsToken, http.MethodDelete, "/actions/v1/test.wait/"+first.ActionID, ""); a.code != http.StatusOK {
		t.Fatalf("release: %d %s", a.code, a.raw)
	}
	if again := f.start(t, opsToken, "r1", "a"); again.ActionID == first.ActionID {
		t.Error("request_id reused after release gave the released action")
	}
}

func TestActionsStatusCancelRelease(t *testing.T) {
	f := newActionsFixture(t, testAuth)
	st := f.start(t, opsToken, "r1", "a")
	path := "/actions/v1/test.wait/" + st.ActionID

	if got := f.do(t, opsToken, http.MethodGet, path, "").status(t); got.Status != actions.Active || got.ActionID != st.ActionID {
		t.Errorf("status = %+v", got)
	}
	for _, tt := range []struct{ name, token, method, path string }{
		{"stranger status", guestToken, http.MethodGet, path},
		{"stranger cancel", guestToken, http.MethodPost, path + "/cancel"},
		{"stranger release", guestToken, http.MethodDelete, path},
		{"stranger log", guestToken, http.MethodGet, path + "/log"},
		{"wrong type", opsToken, http.MethodGet, "/actions/v1/test.quick/" + st.ActionID},
		{"unknown id", opsToken, http.MethodGet, "/actions/v1/test.wait/0b6e0000-0000-4000-8000-000000000000"},
		{"unknown type", opsToken, http.MethodGet, "/actions/v1/no.such/" + st.ActionID},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.do(t, tt.token, tt.method, tt.path, "").expectError(t, http.StatusNotFound, "ActionNotFound", tt.path)
		})
	}
	f.do(t, opsToken, http.MethodDelete, path, "").expectError(t, http.StatusConflict, "ActionConflict", "still ACTIVE")

	// Cancel answers at once; the action then ends FAILED CANCELED.
	c := f.do(t, opsToken, http.MethodPost, path+"/cancel", "")
	if c.code != http.StatusOK || c.status(t).Status.Terminal() {
		t.Fatalf("cancel = %d %s", c.code, c.raw)
	}
	ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
	defer cancel()
	if _, err := f.svc.Wait(ctx, st.ActionID); err != nil {
		t.Fatal(err)
	}
	end := f.do(t, opsToken, http.MethodGet, path, "").status(t)
	if end.Status != actions.Failed || end.Details["code"] != actions.CodeCanceled || end.DisplayStatus != "Canceled by token:ops" {
		t.Errorf("after cancel: %+v", end)
	}
	f.do(t, opsToken, http.MethodPost, path+"/cancel", "").expectError(t, http.StatusConflict, "ActionConflict", "already FAILED")

	rel := f.do(t, opsToken, http.MethodDelete, path, "")
	if rel.code != http.StatusOK || rel.status(t).Status != actions.Failed {
		t.Fatalf("release = %d %s", rel.code, rel.raw)
	}
	for _, p := range []string{path, path + "/log"} {
		f.do(t, opsToken, http.MethodGet, p, "").expectError(t, http.StatusNotFound, "ActionNotFound", p)
	}
	f.do(t, opsToken, http.MethodDelete, path, "").expectError(t, http.StatusNotFound, "ActionNotFound", path)
}

func TestActionsMonitorAndManage(t *testing.T) {
	f := newActionsFixture(t, testAuth)
	a := f.do(t, opsToken, http.MethodPost, "/actions/v1/test.wait",
		`{"request_id": "m", "monitor_by": ["token:guest"], "body": {"name": "m"}}`)
	if a.code != http.StatusAccepted {
		t.Fatalf("run: %d %s", a.code, a.raw)
	}
	f.waitStarted(t, "m")
	id := a.status(t).ActionID
	path := "/actions/v1/test.wait/" + id
	// A monitor sees the action but may not manage it.
	if got := f.do(t, guestToken, http.MethodGet, path, ""); got.code != http.StatusOK {
		t.Errorf("monitor status = %d %s", got.code, got.raw)
	}
	f.do(t, guestToken, http.MethodPost, path+"/cancel", "").expectError(t, http.StatusForbidden, "ForbiddenRequest", "may not manage")
	// Enumerate: by default the caller's own active actions; roles widen it.
	list := func(token, query string) string {
		a := f.do(t, token, http.MethodGet, "/actions/v1/test.wait"+query, "")
		var sts []actions.Status
		if err := json.Unmarshal([]byte(a.raw), &sts); err != nil || a.code != http.StatusOK {
			t.Fatalf("enumerate %s: %d %s", query, a.code, a.raw)
		}
		var ids []string
		for _, st := range sts {
			ids = append(ids, st.ActionID)
		}
		return strings.Join(ids, ",")
	}
	for _, tt := range []struct{ token, query, want string }{
		{opsToken, "", id},
		{guestToken, "", ""},
		{guestToken, "?roles=monitor_by", id},
		{guestToken, "?roles=manage_by", ""},
		{opsToken, "?status=succeeded", ""},
		{opsToken, "?status=SUCCEEDED,active&roles=creator_id", id},
		{opsToken, "?status=bogus", id}, // unknown values fall back to the default
	} {
		if got := list(tt.token, tt.query); got != tt.want {
			t.Errorf("enumerate %s as %s = %q, want %q", tt.query, tt.token[:4], got, tt.want)
		}
	}
	f.finish(t, "m", id)
	if got := list(opsToken, "?status=succeeded"); got != id {
		t.Errorf("succeeded = %q, want %q", got, id)
	}
}

// TestActionsGlobusFlow is a client following the Action Provider
// protocol: run, poll status until terminal, read the log, release.
func TestActionsGlobusFlow(t *testing.T) {
	f := newActionsFixture(t, testAuth)
	run := f.do(t, opsToken, http.MethodPost, "/actions/v1/test.wait",
		`{"request_id": "flow", "label": "a flow", "release_after": "P1D", "body": {"name": "flow"}, "unknown": 1}`)
	if run.code != http.StatusAccepted {
		t.Fatalf("run: %d %s", run.code, run.raw)
	}
	f.waitStarted(t, "flow")
	st := run.status(t)
	if st.Label != "a flow" || st.ReleaseAfter != "P1D" || st.CompletionTime != nil {
		t.Errorf("run = %s", run.raw)
	}
	path := "/actions/v1/test.wait/" + st.ActionID
	released := false
	for polls := 0; !st.Status.Terminal(); polls++ {
		if polls > 0 && !released {
			// The first poll saw it running; let it finish and wait for
			// that before polling again.
			f.finish(t, "flow", st.ActionID)
			released = true
		} else if polls > 2 {
			t.Fatalf("still %s after %d polls", st.Status, polls)
		}
		a := f.do(t, opsToken, http.MethodGet, path, "")
		if a.code != http.StatusOK {
			t.Fatalf("poll: %d %s", a.code, a.raw)
		}
		st = a.status(t)
	}
	if st.Status != actions.Succeeded || st.Details["name"] != "flow" || st.CompletionTime == nil {
		t.Fatalf("terminal status = %+v", st)
	}
	var page actions.LogPage
	a := f.do(t, opsToken, http.MethodGet, path+"/log?limit=2", "")
	if err := json.Unmarshal([]byte(a.raw), &page); err != nil || a.code != http.StatusOK {
		t.Fatalf("log: %d %s", a.code, a.raw)
	}
	if page.Limit != 2 || len(page.Entries) != 2 || !page.HasNextPage || page.Entries[1].Code != "WORKING" {
		t.Fatalf("log page 1 = %s", a.raw)
	}
	a = f.do(t, opsToken, http.MethodGet, path+"/log?limit=2&marker="+page.Marker, "")
	if err := json.Unmarshal([]byte(a.raw), &page); err != nil || len(page.Entries) != 1 || page.Entries[0].Code != string(actions.Succeeded) {
		t.Fatalf("log page 2 = %d %s", a.code, a.raw)
	}
	f.do(t, opsToken, http.MethodGet, path+"/log?limit=x", "").expectError(t, http.StatusUnprocessableEntity, "RequestValidationError", "Field 'limit'")
	f.do(t, opsToken, http.MethodGet, path+"/log?marker=x", "").expectError(t, http.StatusUnprocessableEntity, "RequestValidationError", "Field 'marker'")
	if rel := f.do(t, opsToken, http.MethodDelete, path, ""); rel.code != http.StatusOK || rel.status(t).Status != actions.Succeeded {
		t.Fatalf("release: %d %s", rel.code, rel.raw)
	}
	f.do(t, opsToken, http.MethodGet, path, "").expectError(t, http.StatusNotFound, "ActionNotFound", path)
}

func TestActionsBodyTooLarge(t *testing.T) {
	f := newActionsFixture(t, testAuth)
	big := `{"request_id": "big", "body": {"name": "` + strings.Repeat("x", DefaultBodyLimit) + `"}}`
	// Without a Content-Length, the limit is hit while reading the body.
	req, err := http.NewRequest(http.MethodPost, f.ts.URL+"/actions/v1/test.wait", io.NopCloser(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+opsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	answer{code: resp.StatusCode, raw: string(data)}.expectError(t, http.StatusRequestEntityTooLarge, "RequestTooLarge", "too large")
}

func TestActionsNotServedWithoutService(t *testing.T) {
	f := newFixture(t, nil, Options{})
	f.call(t, http.MethodGet, "/actions/v1/", "").expect(t, http.StatusNotFound, detailNotFound, nil)
}

func TestActionsInSwagger(t *testing.T) {
	f := newActionsFixture(t, testAuth)
	a := f.do(t, "", http.MethodGet, "/json", "")
	var doc struct {
		Tags  []struct{ Name string }
		Paths map[string]map[string]struct {
			Responses map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(a.raw), &doc); err != nil {
		t.Fatal(err)
	}
	for path, methods := range map[string][]string{
		"/actions/v1/":                   {"get"},
		"/actions/v1/{type}":             {"get", "post"},
		"/actions/v1/{type}/{id}":        {"get", "delete"},
		"/actions/v1/{type}/{id}/log":    {"get"},
		"/actions/v1/{type}/{id}/cancel": {"post"},
	} {
		for _, m := range methods {
			if _, ok := doc.Paths[path][m]; !ok {
				t.Errorf("%s %s is not documented", m, path)
			}
		}
	}
	if _, ok := doc.Paths["/actions/v1/{type}"]["post"].Responses["202"]; !ok {
		t.Error("run does not document 202")
	}
	if last := doc.Tags[len(doc.Tags)-1].Name; last != tagActions {
		t.Errorf("last tag = %s, want %s", last, tagActions)
	}
}

func TestWebhookSecret(t *testing.T) {
	const user = `{"event": "deleted", "user_name": "alice"}`
	t.Run("off", func(t *testing.T) {
		f := newFixture(t, nil, Options{})
		f.call(t, http.MethodPost, "/webhooks/users", user).expect(t, http.StatusOK, detailUserOK, nil)
	})
	t.Run("on", func(t *testing.T) {
		f := newFixture(t, nil, Options{Auth: Auth{WebhookSecret: "hook-secret"}})
		for _, tt := range []struct {
			path, body, secret string
			code               int
			detail             string
		}{
			{"/webhooks/users", user, "", http.StatusUnauthorized, detailBadWebhookSecret},
			{"/webhooks/users", user, "wrong", http.StatusUnauthorized, detailBadWebhookSecret},
			{"/webhooks/permissions", `{}`, "", http.StatusUnauthorized, detailBadWebhookSecret},
			{"/webhooks/users", user, "hook-secret", http.StatusOK, detailUserOK},
			{"/cowbird/webhooks/users", user, "hook-secret", http.StatusOK, detailUserOK},
		} {
			var hdr []string
			if tt.secret != "" {
				hdr = []string{WebhookSecretHeader, tt.secret}
			}
			f.call(t, http.MethodPost, tt.path, tt.body, hdr...).expect(t, tt.code, tt.detail, nil)
		}
		// Refused webhooks reach no handler.
		if got := strings.Join(f.j.snapshot(), ","); got != "FileSystem:user_deleted,Magpie:user_deleted,FileSystem:user_deleted,Magpie:user_deleted" {
			t.Errorf("dispatched = %s", got)
		}
	})
}

// magpieSessions is a SessionLookup: the users that cookies sign in, and a
// switch that makes Magpie unreachable.
type magpieSessions struct {
	mu    sync.Mutex
	users map[string][]string // cookie -> user name, then groups
	hits  int
	down  bool
}

// User implements SessionLookup.
func (m *magpieSessions) User(_ context.Context, cookie string) (string, []string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hits++
	if m.down {
		return "", nil, errors.New("magpie GET /session: 500 Internal Server Error: unavailable")
	}
	if u := m.users[cookie]; u != nil {
		return u[0], u[1:], nil
	}
	return "", nil, nil
}

func (m *magpieSessions) hitCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hits
}

func (m *magpieSessions) setDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
}

func TestMagpieAuth(t *testing.T) {
	mg := &magpieSessions{users: map[string][]string{
		"alice-cookie": {"alice", "administrators", "users"},
		"bob-cookie":   {"bob", "users"},
		"carol-cookie": {"carol", "ops-team"},
	}}
	sessions := NewMagpieSessions(mg, time.Minute)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	sessions.now = func() time.Time { return now }
	f := newActionsFixture(t, Auth{AdminTokens: map[string]string{"ops": opsToken}, Magpie: sessions})
	cookie := func(v string) []string { return []string{"Cookie", MagpieCookie + "=" + v} }
	const runBody = `{"request_id": "1", "monitor_by": ["magpie:group:ops-team"], "body": {}}`

	run := f.do(t, "", http.MethodPost, "/actions/v1/test.quick", runBody, cookie("alice-cookie")...)
	if run.code != http.StatusAccepted || run.status(t).CreatorID != "magpie:user:alice" {
		t.Fatalf("alice (administrators) run = %d %s", run.code, run.raw)
	}
	path := "/actions/v1/test.quick/" + run.status(t).ActionID
	f.do(t, "", http.MethodPost, "/actions/v1/test.quick", runBody, cookie("bob-cookie")...).
		expectError(t, http.StatusForbidden, "ForbiddenRequest", "magpie:user:bob may not run test.quick")
	if a := f.do(t, "", http.MethodGet, path, "", cookie("carol-cookie")...); a.code != http.StatusOK {
		t.Errorf("carol, monitor through her group: %d %s", a.code, a.raw)
	}
	f.do(t, "", http.MethodGet, path, "", cookie("bob-cookie")...).expectError(t, http.StatusNotFound, "ActionNotFound", path)
	f.do(t, "", http.MethodGet, path, "", cookie("forged")...).expectError(t, http.StatusUnauthorized, "UnauthorizedRequest", "not signed in")
	// A bearer token wins over the cookie, even a wrong one.
	f.do(t, "nope", http.MethodGet, path, "", cookie("alice-cookie")...).expectError(t, http.StatusUnauthorized, "UnauthorizedRequest", "not valid")

	// Sessions are cached: alice, bob and carol were each asked once.
	hits := mg.hitCount()
	f.do(t, "", http.MethodGet, path, "", cookie("alice-cookie")...)
	if got := mg.hitCount(); got != hits {
		t.Errorf("cached session asked Magpie again: %d hits, want %d", got, hits)
	}
	// Magpie down: a known session is served from the cache until it
	// expires, then the request is denied (fail closed).
	mg.setDown(true)
	if a := f.do(t, "", http.MethodGet, path, "", cookie("alice-cookie")...); a.code != http.StatusOK {
		t.Errorf("cached session while Magpie is down: %d %s", a.code, a.raw)
	}
	now = now.Add(time.Minute + time.Second)
	f.do(t, "", http.MethodGet, path, "", cookie("alice-cookie")...).
		expectError(t, http.StatusServiceUnavailable, "ServiceUnavailable", "authentication through Magpie is unavailable")
	if mg.hitCount() != hits+1 {
		t.Errorf("expired session: %d hits, want %d", mg.hitCount(), hits+1)
	}
}

func TestMagpieSessionsPrincipal(t *testing.T) {
	mg := &magpieSessions{users: map[string][]string{"alice-cookie": {"alice", "administrators", "users"}, "dave-cookie": {"dave"}}}
	sessions := NewMagpieSessions(mg, 0)
	if sessions.ttl != DefaultMagpieCacheTTL {
		t.Errorf("ttl = %v, want %v", sessions.ttl, DefaultMagpieCacheTTL)
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	sessions.now = func() time.Time { return now }
	ctx := t.Context()

	got, err := sessions.Principal(ctx, "alice-cookie")
	if want := (actions.Caller{ID: "magpie:user:alice", Groups: []string{"magpie:group:administrators", "magpie:group:users"}}); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("alice = %+v, %v; want %+v", got, err, want)
	}
	if got, err := sessions.Principal(ctx, "dave-cookie"); err != nil || got.ID != "magpie:user:dave" || len(got.Groups) != 0 {
		t.Errorf("dave = %+v, %v", got, err)
	}
	// Nobody signed in: denied, and not cached.
	for range 2 {
		if _, err := sessions.Principal(ctx, "forged"); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("forged cookie: %v, want ErrUnauthenticated", err)
		}
	}
	if got := mg.hitCount(); got != 4 {
		t.Errorf("hits = %d, want 4 (anonymous answers are not cached)", got)
	}
	// A failure is not ErrUnauthenticated (the API answers 503) and is not
	// cached: Magpie is asked again once it is back.
	mg.setDown(true)
	if _, err := sessions.Principal(ctx, "carol-cookie"); err == nil || errors.Is(err, ErrUnauthenticated) {
		t.Errorf("magpie down: %v, want an error other than ErrUnauthenticated", err)
	}
	mg.setDown(false)
	mg.mu.Lock()
	mg.users["carol-cookie"] = []string{"carol"}
	mg.mu.Unlock()
	if got, err := sessions.Principal(ctx, "carol-cookie"); err != nil || got.ID != "magpie:user:carol" {
		t.Errorf("carol after magpie is back = %+v, %v", got, err)
	}
	// The cache lasts the TTL, and a session Magpie then drops is denied.
	hits := mg.hitCount()
	now = now.Add(DefaultMagpieCacheTTL)
	if _, err := sessions.Principal(ctx, "alice-cookie"); err != nil || mg.hitCount() != hits {
		t.Errorf("alice at the TTL: %v, %d hits, want %d", err, mg.hitCount(), hits)
	}
	mg.mu.Lock()
	delete(mg.users, "alice-cookie")
	mg.mu.Unlock()
	now = now.Add(time.Second)
	if _, err := sessions.Principal(ctx, "alice-cookie"); !errors.Is(err, ErrUnauthenticated) || mg.hitCount() != hits+1 {
		t.Errorf("alice after the TTL, signed out: %v, %d hits, want %d", err, mg.hitCount(), hits+1)
	}
}
