package actions_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/store"
)

const hangGuard = 10 * time.Second

var (
	admin = actions.Caller{ID: "token:admin"}
	alice = actions.Caller{ID: "magpie:user:alice"}
	bob   = actions.Caller{ID: "magpie:user:bob"}
)

const schema = `{"type": "object", "properties": {
	"name": {"type": "string", "minLength": 1}, "lock": {"type": "string"},
	"ignore_cancel": {"type": "boolean"}, "progress": {"type": "boolean"},
	"logs": {"type": "integer", "minimum": 0}, "fail": {"type": "string"}, "fail_code": {"type": "string"},
	"tags": {"type": "array", "items": {"type": "string"}}},
	"required": ["name"], "additionalProperties": false}`

// body is the input of the test action types.
type body struct {
	Name         string `json:"name"`
	Lock         string `json:"lock"`
	IgnoreCancel bool   `json:"ignore_cancel"`
	Progress     bool   `json:"progress"`
	Logs         int    `json:"logs"`
	Fail         string `json:"fail"`
	FailCode     string `json:"fail_code"`
}

func decode(input json.RawMessage) body {
	var b body
	if err := json.Unmarshal(input, &b); err != nil {
		panic(err) // the schema guarantees the shape
	}
	return b
}

type result struct {
	details map[string]any
	err     error
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// harness runs a Service on a real store in a temporary directory. Its
// action types:
//   - wait, wait.resumable: announce the body's name on started, then end
//     with what the test sends on gate(name), or when cancelled;
//   - echo: append `logs` log lines, then fail with `fail` or succeed;
//   - slow: has a tiny timeout and waits for its context;
//   - panic: panics.
type harness struct {
	t       *testing.T
	dir     string
	clock   *clock
	started chan string
	db      *store.DB
	svc     *actions.Service

	mu    sync.Mutex
	gates map[string]chan result
	ended map[string]error // what wait runs saw when their context ended
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{
		t: t, dir: t.TempDir(), clock: &clock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)},
		started: make(chan string, 64), gates: map[string]chan result{}, ended: map[string]error{},
	}
	h.open(h.types()...)
	t.Cleanup(h.close)
	return h
}

func (h *harness) types() []actions.Type {
	lock := func(input json.RawMessage) string {
		if b := decode(input); b.Lock != "" {
			return "lock:" + b.Lock
		}
		return ""
	}
	return []actions.Type{
		{Name: "wait", Description: "waits for the test", InputSchema: json.RawMessage(schema), Lock: lock, Run: h.wait},
		{Name: "wait.resumable", InputSchema: json.RawMessage(schema), Lock: lock, Run: h.wait, Resumable: true},
		{Name: "echo", InputSchema: json.RawMessage(schema), Run: echo},
		{Name: "slow", InputSchema: json.RawMessage(schema), Timeout: time.Millisecond,
			Run: func(ctx context.Context, _ json.RawMessage, _ actions.Progress) (map[string]any, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}},
		{Name: "panic", InputSchema: json.RawMessage(schema),
			Run: func(context.Context, json.RawMessage, actions.Progress) (map[string]any, error) { panic("boom") }},
	}
}

// open starts a service with types on the harness's data directory.
func (h *harness) open(types ...actions.Type) {
	h.t.Helper()
	db, err := store.Open(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	svc, err := actions.New(actions.Options{
		Store: db, Log: logrus.NewEntry(log), Types: types, Now: h.clock.Now, MaxReleaseAfter: 30 * 24 * time.Hour,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.db, h.svc = db, svc
}

// close shuts the service down and closes the store, as the daemon does.
func (h *harness) close() {
	if h.svc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := h.svc.Shutdown(ctx); err != nil {
		h.t.Error(err)
	}
	if err := h.db.Close(); err != nil {
		h.t.Error(err)
	}
	h.svc, h.db = nil, nil
}

func (h *harness) gate(name string) chan result {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gates[name] == nil {
		h.gates[name] = make(chan result, 1)
	}
	return h.gates[name]
}

func (h *harness) wait(ctx context.Context, input json.RawMessage, p actions.Progress) (map[string]any, error) {
	b := decode(input)
	if b.Progress {
		p.Progress(ctx, 150, "Half way: "+strings.Repeat("x", 80), map[string]any{"users_done": 1})
	}
	h.started <- b.Name
	g := h.gate(b.Name)
	if b.IgnoreCancel {
		r := <-g
		return r.details, r.err
	}
	select {
	case r := <-g:
		return r.details, r.err
	case <-ctx.Done():
		h.mu.Lock()
		h.ended[b.Name] = ctx.Err()
		h.mu.Unlock()
		return nil, ctx.Err()
	}
}

func echo(ctx context.Context, input json.RawMessage, p actions.Progress) (map[string]any, error) {
	b := decode(input)
	for i := range b.Logs {
		p.Log(ctx, "STEP", fmt.Sprint("step ", i))
	}
	switch {
	case b.FailCode != "":
		f := &actions.Failure{Code: b.FailCode}
		if b.Fail != "" {
			f.Err = errors.New(b.Fail)
		}
		return nil, fmt.Errorf("hook: %w", f)
	case b.Fail != "":
		return nil, errors.New(b.Fail)
	}
	return map[string]any{"you_said": b.Name}, nil
}

func (h *harness) run(c actions.Caller, typ string, req actions.RunRequest) actions.Status {
	h.t.Helper()
	st, created, err := h.svc.Run(context.Background(), c, typ, req)
	if err != nil || !created {
		h.t.Fatalf("Run(%s, %s) = created %v, %v; want a new action", typ, req.RequestID, created, err)
	}
	return st
}

// runBody runs typ with a request ID and the body given.
func (h *harness) runBody(c actions.Caller, typ, requestID, b string) actions.Status {
	h.t.Helper()
	return h.run(c, typ, actions.RunRequest{RequestID: requestID, Body: json.RawMessage(b)})
}

func (h *harness) waitStarted(name string) {
	h.t.Helper()
	select {
	case got := <-h.started:
		if got != name {
			h.t.Fatalf("run %q started, want %q", got, name)
		}
	case <-time.After(hangGuard):
		h.t.Fatalf("run %q did not start", name)
	}
}

func (h *harness) waitEnd(id string) actions.Status {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	st, err := h.svc.Wait(ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	if !st.Status.Terminal() {
		h.t.Fatalf("Wait(%s) = %s, want a terminal status", id, st.Status)
	}
	return st
}

func (h *harness) status(c actions.Caller, id string) actions.Status {
	h.t.Helper()
	st, err := h.svc.Status(context.Background(), c, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

func wantCode(t *testing.T, st actions.Status, state actions.State, code string) {
	t.Helper()
	if st.Status != state || st.Details["code"] != code {
		t.Errorf("action %s = %s with details %v, want %s with code %s", st.ActionID, st.Status, st.Details, state, code)
	}
}

// TestRunDeduplicates is conformance point 1.
func TestRunDeduplicates(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	req := actions.RunRequest{RequestID: "r1", Label: "resync", Body: json.RawMessage(`{"name": "a", "tags": ["x"]}`)}
	first := h.run(alice, "wait", req)
	want := actions.Status{
		ActionID: first.ActionID, Status: actions.Active, CreatorID: alice.ID, Label: "resync",
		MonitorBy: []string{alice.ID}, ManageBy: []string{alice.ID}, StartTime: h.clock.Now(),
		ReleaseAfter: "P7D", DisplayStatus: "Running", Details: map[string]any{}, Type: "wait",
	}
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("Run = %+v, want %+v", first, want)
	}

	same := req
	same.Body = json.RawMessage(`{"tags":["x"],"name":"a"}`) // same content, other key order
	got, created, err := h.svc.Run(ctx, alice, "wait", same)
	if err != nil || created || got.ActionID != first.ActionID {
		t.Fatalf("repeat Run = %s, created %v, %v; want %s, not created", got.ActionID, created, err, first.ActionID)
	}

	for name, change := range map[string]func(*actions.RunRequest){
		"body":          func(r *actions.RunRequest) { r.Body = json.RawMessage(`{"name": "b"}`) },
		"label":         func(r *actions.RunRequest) { r.Label = "other" },
		"monitor_by":    func(r *actions.RunRequest) { r.MonitorBy = []string{"magpie:group:ops"} },
		"release_after": func(r *actions.RunRequest) { r.ReleaseAfter = "P1D" },
	} {
		other := req
		change(&other)
		_, _, err := h.svc.Run(ctx, alice, "wait", other)
		wantErr(t, "Run with another "+name, err, actions.ErrConflict)
	}
	_, _, err = h.svc.Run(ctx, alice, "echo", actions.RunRequest{RequestID: "r1", Body: req.Body})
	wantErr(t, "Run of another type", err, actions.ErrConflict)

	if other := h.runBody(bob, "wait", "r1", `{"name": "b"}`); other.ActionID == first.ActionID {
		t.Error("another creator's request ID reused alice's action")
	}

	h.gate("a") <- result{details: map[string]any{"users": 2}}
	if st := h.waitEnd(first.ActionID); st.Status != actions.Succeeded || st.Details["users"] != 2.0 {
		t.Fatalf("after the run = %s %v, want SUCCEEDED with its details", st.Status, st.Details)
	}
	if _, err := h.svc.Release(ctx, alice, first.ActionID); err != nil {
		t.Fatal(err)
	}
	if again := h.run(alice, "wait", req); again.ActionID == first.ActionID {
		t.Error("after release, the request ID still names the released action")
	}
}

// TestRelease is conformance point 2.
func TestRelease(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	st := h.runBody(alice, "wait", "r1", `{"name": "a"}`)
	_, err := h.svc.Release(ctx, alice, st.ActionID)
	wantErr(t, "Release(ACTIVE)", err, actions.ErrConflict)
	if got := h.status(alice, st.ActionID); got.Status != actions.Active {
		t.Fatalf("after a refused release: %s, want ACTIVE", got.Status)
	}

	h.gate("a") <- result{}
	final := h.waitEnd(st.ActionID)
	released, err := h.svc.Release(ctx, alice, st.ActionID)
	if err != nil || !reflect.DeepEqual(released, final) {
		t.Fatalf("Release = %+v, %v; want the final status %+v", released, err, final)
	}
	_, err = h.svc.Status(ctx, alice, st.ActionID)
	wantErr(t, "Status after release", err, actions.ErrNotFound)
	_, err = h.svc.Cancel(ctx, alice, st.ActionID)
	wantErr(t, "Cancel after release", err, actions.ErrNotFound)
	_, err = h.svc.Release(ctx, alice, st.ActionID)
	wantErr(t, "Release after release", err, actions.ErrNotFound)
	_, err = h.svc.Log(ctx, alice, st.ActionID, 0, "")
	wantErr(t, "Log after release", err, actions.ErrNotFound)
	if entries, _, err := h.db.ActionLog(ctx, st.ActionID, 0, 10); err != nil || len(entries) != 0 {
		t.Errorf("stored log after release = %v, %v; want none", entries, err)
	}
}

// TestCancel is conformance point 3.
func TestCancel(t *testing.T) {
	ctx := context.Background()

	t.Run("running", func(t *testing.T) {
		h := newHarness(t)
		st := h.runBody(alice, "wait", "r1", `{"name": "a"}`)
		h.waitStarted("a")
		got, err := h.svc.Cancel(ctx, admin, st.ActionID)
		wantErr(t, "Cancel by a stranger", err, actions.ErrNotFound)
		if got, err = h.svc.Cancel(ctx, alice, st.ActionID); err != nil || got.Status != actions.Active || got.DisplayStatus != "Canceling" {
			t.Fatalf("Cancel = %s %q, %v; want ACTIVE Canceling (advisory)", got.Status, got.DisplayStatus, err)
		}
		final := h.waitEnd(st.ActionID)
		wantCode(t, final, actions.Failed, actions.CodeCanceled)
		if final.DisplayStatus != "Canceled by "+alice.ID || final.CompletionTime == nil {
			t.Errorf("canceled action: display %q, completion %v", final.DisplayStatus, final.CompletionTime)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if !errors.Is(h.ended["a"], context.Canceled) {
			t.Errorf("the run saw %v, want its context canceled", h.ended["a"])
		}
	})

	t.Run("a run that ignores it still ends CANCELED", func(t *testing.T) {
		h := newHarness(t)
		st := h.runBody(alice, "wait", "r1", `{"name": "a", "ignore_cancel": true}`)
		h.waitStarted("a")
		if _, err := h.svc.Cancel(ctx, alice, st.ActionID); err != nil {
			t.Fatal(err)
		}
		if got, err := h.svc.Cancel(ctx, alice, st.ActionID); err != nil || got.Status != actions.Active {
			t.Fatalf("second Cancel = %s, %v; want the ACTIVE status again", got.Status, err)
		}
		h.gate("a") <- result{details: map[string]any{"done": true}}
		wantCode(t, h.waitEnd(st.ActionID), actions.Failed, actions.CodeCanceled)
	})

	t.Run("terminal", func(t *testing.T) {
		h := newHarness(t)
		st := h.runBody(alice, "echo", "r1", `{"name": "a"}`)
		before := h.waitEnd(st.ActionID)
		h.clock.Add(time.Hour)
		_, err := h.svc.Cancel(ctx, alice, st.ActionID)
		wantErr(t, "Cancel(SUCCEEDED)", err, actions.ErrConflict)
		if after := h.status(alice, st.ActionID); !reflect.DeepEqual(after, before) {
			t.Errorf("status after a refused cancel = %+v, want unchanged %+v", after, before)
		}
	})
}

// TestACL covers conformance point 4's permissions: the creator is implied,
// a stranger gets ErrNotFound, a monitor may look but not manage.
func TestACL(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	st := h.run(alice, "wait", actions.RunRequest{
		RequestID: "r1", Body: json.RawMessage(`{"name": "a"}`),
		MonitorBy: []string{"magpie:group:ops", "magpie:group:ops"}, ManageBy: []string{"magpie:user:carol"},
	})
	if want := []string{alice.ID, "magpie:group:ops"}; !slices.Equal(st.MonitorBy, want) {
		t.Errorf("monitor_by = %v, want %v (creator first, no duplicates)", st.MonitorBy, want)
	}
	dave := actions.Caller{ID: "magpie:user:dave", Groups: []string{"magpie:group:users", "magpie:group:ops"}}
	carol := actions.Caller{ID: "magpie:user:carol"}

	for _, c := range []actions.Caller{bob, admin, {ID: "magpie:user:eve", Groups: []string{"magpie:group:users"}}} {
		_, err := h.svc.Status(ctx, c, st.ActionID)
		wantErr(t, c.ID+" Status", err, actions.ErrNotFound)
		_, err = h.svc.Cancel(ctx, c, st.ActionID)
		wantErr(t, c.ID+" Cancel", err, actions.ErrNotFound)
		_, err = h.svc.Release(ctx, c, st.ActionID)
		wantErr(t, c.ID+" Release", err, actions.ErrNotFound)
		_, err = h.svc.Log(ctx, c, st.ActionID, 0, "")
		wantErr(t, c.ID+" Log", err, actions.ErrNotFound)
	}
	h.status(dave, st.ActionID)
	if _, err := h.svc.Log(ctx, dave, st.ActionID, 0, ""); err != nil {
		t.Errorf("monitor's Log: %v", err)
	}
	_, err := h.svc.Cancel(ctx, dave, st.ActionID)
	wantErr(t, "monitor's Cancel", err, actions.ErrForbidden)
	if got := h.status(alice, st.ActionID); got.Status != actions.Active {
		t.Fatalf("after a forbidden cancel: %s, want ACTIVE", got.Status)
	}
	_, err = h.svc.Status(ctx, carol, st.ActionID)
	wantErr(t, "manager's Status (manage_by does not grant monitoring)", err, actions.ErrNotFound)
	if _, err := h.svc.Cancel(ctx, carol, st.ActionID); err != nil {
		t.Fatalf("manager's Cancel: %v", err)
	}
	wantCode(t, h.waitEnd(st.ActionID), actions.Failed, actions.CodeCanceled)
}

// TestEnumerate covers conformance point 4's filters: status AND (any of
// the roles), defaults for unknown or missing values.
func TestEnumerate(t *testing.T) {
	h := newHarness(t)
	ops := "magpie:group:ops"
	a1 := h.runBody(alice, "wait", "a1", `{"name": "a1"}`).ActionID
	a2 := h.waitEnd(h.runBody(alice, "echo", "a2", `{"name": "a2"}`).ActionID).ActionID
	b1 := h.run(bob, "echo", actions.RunRequest{RequestID: "b1", Body: json.RawMessage(`{"name": "b1", "fail": "no"}`), MonitorBy: []string{ops}}).ActionID
	h.waitEnd(b1)
	b2 := h.run(bob, "wait", actions.RunRequest{RequestID: "b2", Body: json.RawMessage(`{"name": "b2"}`), ManageBy: []string{alice.ID}}).ActionID
	aliceOps := actions.Caller{ID: alice.ID, Groups: []string{ops}}

	tests := []struct {
		name   string
		caller actions.Caller
		filter actions.Filter
		want   []string
	}{
		{"defaults: active, creator", alice, actions.Filter{}, []string{a1}},
		{"statuses", alice, actions.Filter{Statuses: []string{"succeeded,FAILED"}}, []string{a2}},
		{"unknown values fall back", alice, actions.Filter{Statuses: []string{"bogus"}, Roles: []string{"nobody"}}, []string{a1}},
		{"monitor_by implies creator", alice, actions.Filter{Statuses: []string{"active", "succeeded", "failed"}, Roles: []string{"monitor_by"}}, []string{a1, a2}},
		{"manage_by", alice, actions.Filter{Roles: []string{"manage_by"}}, []string{a1, b2}},
		{"short role names", alice, actions.Filter{Roles: []string{"manage"}}, []string{a1, b2}},
		{"group membership", aliceOps, actions.Filter{Statuses: []string{"failed"}, Roles: []string{" Monitor_By "}}, []string{b1}},
		{"roles are ORed", aliceOps, actions.Filter{Statuses: []string{"active,failed,succeeded"}, Roles: []string{"creator_id,monitor_by,manage_by"}}, []string{a1, a2, b1, b2}},
		{"type", aliceOps, actions.Filter{Type: "echo", Statuses: []string{"active,failed,succeeded"}, Roles: []string{"creator_id,monitor_by,manage_by"}}, []string{a2, b1}},
		{"another caller", bob, actions.Filter{Statuses: []string{"active,inactive"}}, []string{b2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := h.svc.Enumerate(context.Background(), tt.caller, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, st := range got {
				ids = append(ids, st.ActionID)
			}
			slices.Sort(ids)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(ids, want) {
				t.Errorf("Enumerate = %v, want %v", ids, want)
			}
		})
	}
}

// TestReleaseAfter is the parsing and capping half of conformance point 5.
func TestReleaseAfter(t *testing.T) {
	h := newHarness(t)
	tests := []struct{ in, want string }{
		{"", "P7D"},
		{"PT1H", "PT1H"},
		{"P1W", "P1W"},
		{"P1DT2H", "P1DT2H"},
		{"P1M", "P1M"},
		{"P2M", "P30D"}, // capped
		{"P1Y", "P30D"},
	}
	for i, tt := range tests {
		st := h.run(alice, "echo", actions.RunRequest{RequestID: fmt.Sprint(i), ReleaseAfter: tt.in, Body: json.RawMessage(`{"name": "a"}`)})
		if st.ReleaseAfter != tt.want {
			t.Errorf("release_after %q = %q, want %q", tt.in, st.ReleaseAfter, tt.want)
		}
	}
	_, _, err := h.svc.Run(context.Background(), alice, "echo", actions.RunRequest{RequestID: "x", ReleaseAfter: "7 days", Body: json.RawMessage(`{"name": "a"}`)})
	var ve *actions.ValidationError
	if !errors.As(err, &ve) || ve.Field != "$.release_after" {
		t.Errorf("bad release_after: err = %v, want a ValidationError on $.release_after", err)
	}
}

// TestJanitor is the janitor half of conformance point 5.
func TestJanitor(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	req := actions.RunRequest{RequestID: "r1", ReleaseAfter: "PT1H", Body: json.RawMessage(`{"name": "a"}`)}
	done := h.waitEnd(h.run(alice, "echo", req).ActionID)
	running := h.run(alice, "wait", actions.RunRequest{RequestID: "r2", ReleaseAfter: "PT1S", Body: json.RawMessage(`{"name": "b"}`)})

	h.clock.Add(59 * time.Minute)
	if n, err := h.svc.ReleaseExpired(ctx); err != nil || n != 0 {
		t.Fatalf("ReleaseExpired before expiry = %d, %v; want 0", n, err)
	}
	h.status(alice, done.ActionID)

	h.clock.Add(time.Minute)
	if n, err := h.svc.ReleaseExpired(ctx); err != nil || n != 1 {
		t.Fatalf("ReleaseExpired at expiry = %d, %v; want 1", n, err)
	}
	_, err := h.svc.Status(ctx, alice, done.ActionID)
	wantErr(t, "Status of an expired action", err, actions.ErrNotFound)
	if got := h.status(alice, running.ActionID); got.Status != actions.Active {
		t.Errorf("running action after the janitor: %s, want ACTIVE (never released)", got.Status)
	}
	if again := h.run(alice, "echo", req); again.ActionID == done.ActionID {
		t.Error("the request ID of an expired action still names it")
	}
}

func TestLock(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	a := h.runBody(alice, "wait", "a", `{"name": "a", "lock": "fs"}`)
	h.waitStarted("a")
	b := h.runBody(alice, "wait", "b", `{"name": "b", "lock": "fs"}`)
	c := h.runBody(alice, "wait", "c", `{"name": "c", "lock": "fs"}`)
	other := h.runBody(alice, "wait", "o", `{"name": "o", "lock": "geo"}`)
	h.waitStarted("o")
	for _, st := range []actions.Status{b, c} {
		wantCode(t, st, actions.Inactive, actions.CodeWaitingForLock)
		if st.DisplayStatus != "Waiting for lock" {
			t.Errorf("waiting action display_status = %q", st.DisplayStatus)
		}
	}
	if other.Status != actions.Active {
		t.Errorf("action with another lock: %s, want ACTIVE", other.Status)
	}

	// Cancelling a waiting action ends it at once; it never runs.
	got, err := h.svc.Cancel(ctx, alice, c.ActionID)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, got, actions.Failed, actions.CodeCanceled)

	h.gate("a") <- result{}
	if st := h.waitEnd(a.ActionID); st.Status != actions.Succeeded {
		t.Fatalf("a = %s, want SUCCEEDED", st.Status)
	}
	h.waitStarted("b")
	if st := h.status(alice, b.ActionID); st.Status != actions.Active || st.DisplayStatus != "Running" || len(st.Details) != 0 {
		t.Errorf("b after a ended = %s %q %v, want ACTIVE Running with no details", st.Status, st.DisplayStatus, st.Details)
	}
	h.gate("b") <- result{}
	h.waitEnd(b.ActionID)
	h.gate("o") <- result{}
	h.waitEnd(other.ActionID)
	select {
	case name := <-h.started:
		t.Errorf("run %q started after its cancel", name)
	default:
	}
}

// TestRestart checks that no action stays ACTIVE across a daemon restart.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	expiring := h.waitEnd(h.run(alice, "echo", actions.RunRequest{RequestID: "expiring", ReleaseAfter: "PT30M", Body: json.RawMessage(`{"name": "e"}`)}).ActionID)
	lost := h.runBody(alice, "wait", "lost", `{"name": "lost"}`)
	h.waitStarted("lost")
	other := h.runBody(alice, "wait", "other", `{"name": "other"}`)
	canceling := h.runBody(alice, "wait", "canceling", `{"name": "canceling"}`)
	resumed := h.runBody(alice, "wait.resumable", "resumed", `{"name": "resumed", "lock": "fs"}`)
	h.clock.Add(time.Second) // resumed, first in, gets the lock first after the restart
	waiting := h.runBody(alice, "wait.resumable", "waiting", `{"name": "waiting", "lock": "fs"}`)
	wantCode(t, waiting, actions.Inactive, actions.CodeWaitingForLock)
	h.close()
	for len(h.started) > 0 {
		<-h.started
	}

	db, err := store.Open(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{lost.ActionID, other.ActionID, resumed.ActionID} {
		if r, err := db.Action(ctx, id); err != nil || r.Status.Status != actions.Active {
			t.Errorf("after shutdown, %s = %s, %v; want it left ACTIVE for the restart", r.Status.Details, r.Status.Status, err)
		}
	}
	// A cancel that was requested when the daemon died.
	if _, err := db.UpdateAction(ctx, canceling.ActionID, func(r *actions.Record) error { r.CanceledBy = bob.ID; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	h.clock.Add(time.Hour)
	h.open(h.types()...)
	for _, st := range []actions.Status{lost, other} {
		got := h.status(alice, st.ActionID)
		wantCode(t, got, actions.Failed, actions.CodeDaemonRestarted)
		if got.CompletionTime == nil || !got.CompletionTime.Equal(h.clock.Now()) {
			t.Errorf("completion_time = %v, want the restart time", got.CompletionTime)
		}
	}
	wantCode(t, h.status(alice, canceling.ActionID), actions.Failed, actions.CodeCanceled)
	_, err = h.svc.Status(ctx, alice, expiring.ActionID)
	wantErr(t, "Status of an action expired while the daemon was down", err, actions.ErrNotFound)

	h.waitStarted("resumed")
	if st := h.status(alice, waiting.ActionID); st.Status != actions.Inactive {
		t.Errorf("waiting after restart: %s, want INACTIVE", st.Status)
	}
	h.gate("resumed") <- result{}
	if st := h.waitEnd(resumed.ActionID); st.Status != actions.Succeeded {
		t.Errorf("resumed = %s, want SUCCEEDED", st.Status)
	}
	h.waitStarted("waiting")
	h.gate("waiting") <- result{}
	h.waitEnd(waiting.ActionID)

	page, err := h.svc.Log(ctx, alice, resumed.ActionID, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, e := range page.Entries {
		codes = append(codes, e.Code)
	}
	if want := []string{"STARTED", "RESUMED", "STARTED", "SUCCEEDED"}; !slices.Equal(codes, want) {
		t.Errorf("log of the resumed action = %v, want %v", codes, want)
	}
}

func TestLogPages(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	st := h.waitEnd(h.runBody(alice, "echo", "r1", `{"name": "a", "logs": 25}`).ActionID)

	var got []string
	marker, pages := "", 0
	for {
		page, err := h.svc.Log(ctx, alice, st.ActionID, 10, marker)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range page.Entries {
			got = append(got, e.Description)
		}
		if page.HasNextPage != (page.Marker != "") || page.Limit != 10 {
			t.Fatalf("page %d: has_next_page %v, marker %q, limit %d", pages, page.HasNextPage, page.Marker, page.Limit)
		}
		if !page.HasNextPage {
			break
		}
		marker = page.Marker
	}
	want := []string{"running"}
	for i := range 25 {
		want = append(want, fmt.Sprint("step ", i))
	}
	want = append(want, "Succeeded")
	if pages != 3 || !slices.Equal(got, want) {
		t.Errorf("%d pages of %v, want 3 pages of %v", pages, got, want)
	}

	if page, err := h.svc.Log(ctx, alice, st.ActionID, 0, ""); err != nil || page.Limit != 10 || len(page.Entries) != 10 {
		t.Errorf("default limit: %d entries, limit %d, %v; want 10", len(page.Entries), page.Limit, err)
	}
	if page, err := h.svc.Log(ctx, alice, st.ActionID, 1000, ""); err != nil || page.Limit != 100 || len(page.Entries) != 27 {
		t.Errorf("large limit: %d entries, limit %d, %v; want 27 under a limit of 100", len(page.Entries), page.Limit, err)
	}
	for _, tc := range []struct {
		limit         int
		marker, field string
	}{{-1, "", "limit"}, {10, "x", "marker"}, {10, "-5", "marker"}} {
		_, err := h.svc.Log(ctx, alice, st.ActionID, tc.limit, tc.marker)
		var ve *actions.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("Log(limit %d, marker %q) err = %v, want a ValidationError on %s", tc.limit, tc.marker, err, tc.field)
		}
	}
}

func TestValidation(t *testing.T) {
	tests := []struct {
		name string
		req  actions.RunRequest
		want string
	}{
		{"no request ID", actions.RunRequest{Body: json.RawMessage(`{"name": "a"}`)}, `Field '$.request_id' (category: 'missing')`},
		{"long label", actions.RunRequest{Label: strings.Repeat("l", 65)}, `Field '$.label' (category: 'string_too_long')`},
		{"bad principal", actions.RunRequest{MonitorBy: []string{"magpie:group:ops", "alice"}}, `Field '$.monitor_by[1]' (category: 'value')`},
		{"empty principal name", actions.RunRequest{ManageBy: []string{"magpie:user:"}}, `Field '$.manage_by[0]' (category: 'value')`},
		{"no body", actions.RunRequest{Body: json.RawMessage(``)}, `Field '$.body' (category: 'missing')`},
		{"body not JSON", actions.RunRequest{Body: json.RawMessage(`{`)}, `Field '$.body' (category: 'json')`},
		{"body not an object", actions.RunRequest{Body: json.RawMessage(`[]`)}, `Field '$.body' (category: 'type')`},
		{"wrong type", actions.RunRequest{Body: json.RawMessage(`{"name": 3}`)}, `Field '$.body.name' (category: 'type'): Input failed schema validation`},
		{"missing", actions.RunRequest{Body: json.RawMessage(`{"lock": "x"}`)}, `Field '$.body.name' (category: 'required')`},
		{"unexpected", actions.RunRequest{Body: json.RawMessage(`{"name": "a", "extra": 1}`)}, `Field '$.body.extra' (category: 'additionalProperties')`},
		{"array item", actions.RunRequest{Body: json.RawMessage(`{"name": "a", "tags": ["x", 2]}`)}, `Field '$.body.tags[1]' (category: 'type')`},
		{"minimum", actions.RunRequest{Body: json.RawMessage(`{"name": "a", "logs": -1}`)}, `Field '$.body.logs' (category: 'minimum')`},
		{"first of several, by field", actions.RunRequest{Body: json.RawMessage(`{"name": "", "logs": "x"}`)}, `Field '$.body.logs' (category: 'type')`},
	}
	h := newHarness(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			if req.RequestID == "" && !strings.Contains(tt.want, "request_id") {
				req.RequestID = "r"
			}
			if req.Body == nil {
				req.Body = json.RawMessage(`{"name": "a"}`)
			}
			_, _, err := h.svc.Run(context.Background(), alice, "echo", req)
			var ve *actions.ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want a ValidationError containing %s", err, tt.want)
			}
		})
	}
	if all, err := h.svc.Enumerate(context.Background(), alice, actions.Filter{Statuses: []string{"active,inactive,succeeded,failed"}}); err != nil || len(all) != 0 {
		t.Errorf("after invalid requests: %d actions, %v; want none stored", len(all), err)
	}
	_, _, err := h.svc.Run(context.Background(), alice, "nope", actions.RunRequest{RequestID: "r", Body: json.RawMessage(`{}`)})
	wantErr(t, "Run of an unknown type", err, actions.ErrNotFound)
}

func TestOutcomes(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		typ, body, code, description string
	}{
		{"echo", `{"name": "a", "fail": "magpie said no"}`, actions.CodeHandlerError, "magpie said no"},
		{"echo", `{"name": "a", "fail": "exit 3", "fail_code": "HOOK_FAILED"}`, "HOOK_FAILED", "exit 3"},
		{"echo", `{"name": "a", "fail_code": "DEPENDENCY_UNAVAILABLE"}`, "DEPENDENCY_UNAVAILABLE", "DEPENDENCY_UNAVAILABLE"},
		{"slow", `{"name": "a"}`, actions.CodeTimeout, "timed out after 1ms"},
		{"panic", `{"name": "a"}`, actions.CodeHandlerError, "panic: boom"},
	}
	for i, tt := range tests {
		st := h.waitEnd(h.runBody(alice, tt.typ, fmt.Sprint(i), tt.body).ActionID)
		wantCode(t, st, actions.Failed, tt.code)
		if desc, _ := st.Details["description"].(string); !strings.Contains(desc, tt.description) {
			t.Errorf("%s %s: description %q, want it to contain %q", tt.typ, tt.body, desc, tt.description)
		}
	}
	st := h.waitEnd(h.runBody(alice, "echo", "ok", `{"name": "hi"}`).ActionID)
	if st.Status != actions.Succeeded || st.DisplayStatus != "Succeeded" || st.Details["you_said"] != "hi" || st.CompletionTime.Before(st.StartTime) {
		t.Errorf("success = %+v", st)
	}
}

func TestProgress(t *testing.T) {
	h := newHarness(t)
	st := h.runBody(alice, "wait", "r1", `{"name": "a", "progress": true}`)
	h.waitStarted("a") // after its progress report
	got := h.status(alice, st.ActionID)
	if want := "Half way: " + strings.Repeat("x", 54); got.DisplayStatus != want {
		t.Errorf("display_status = %q, want the status cut to 64 characters", got.DisplayStatus)
	}
	if want := map[string]any{"progress": 100.0, "users_done": 1.0}; !reflect.DeepEqual(got.Details, want) {
		t.Errorf("details = %v, want %v (progress capped at 100)", got.Details, want)
	}
}

func TestIntrospect(t *testing.T) {
	h := newHarness(t)
	d, err := h.svc.Introspect("wait")
	if err != nil {
		t.Fatal(err)
	}
	if d.Title != "wait" || d.Description != "waits for the test" || d.Synchronous || !d.LogSupported || string(d.InputSchema) != schema {
		t.Errorf("Introspect(wait) = %+v", d)
	}
	var names []string
	for _, d := range h.svc.Types() {
		names = append(names, d.Title)
	}
	if want := []string{"echo", "panic", "slow", "wait", "wait.resumable"}; !slices.Equal(names, want) {
		t.Errorf("Types() = %v, want %v", names, want)
	}
	_, err = h.svc.Introspect("nope")
	wantErr(t, "Introspect(unknown)", err, actions.ErrNotFound)
}

func TestNewRejectsBadOptions(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	run := func(context.Context, json.RawMessage, actions.Progress) (map[string]any, error) { return nil, nil }
	obj := json.RawMessage(`{"type": "object"}`)
	log := logrus.NewEntry(logrus.New())
	tests := []struct {
		name string
		opts actions.Options
		want string
	}{
		{"no store", actions.Options{Log: log}, "store is nil"},
		{"no log", actions.Options{Store: db}, "log is nil"},
		{"bad name", actions.Options{Store: db, Log: log, Types: []actions.Type{{Name: "a/b", InputSchema: obj, Run: run}}}, `action type "a/b": name must be`},
		{"twice", actions.Options{Store: db, Log: log, Types: []actions.Type{{Name: "a", InputSchema: obj, Run: run}, {Name: "a", InputSchema: obj, Run: run}}}, `action type "a": defined twice`},
		{"no run", actions.Options{Store: db, Log: log, Types: []actions.Type{{Name: "a", InputSchema: obj}}}, `action type "a": run is nil`},
		{"bad schema", actions.Options{Store: db, Log: log, Types: []actions.Type{{Name: "a", InputSchema: json.RawMessage(`{"type": 5}`), Run: run}}}, `action type "a": input schema`},
		{"no schema", actions.Options{Store: db, Log: log, Types: []actions.Type{{Name: "a", Run: run}}}, `action type "a": input schema`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := actions.New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestStoppedService(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	svc := h.svc
	h.close()
	_, _, err := svc.Run(ctx, alice, "echo", actions.RunRequest{RequestID: "r", Body: json.RawMessage(`{"name": "a"}`)})
	wantErr(t, "Run after Shutdown", err, actions.ErrStopped)
}
