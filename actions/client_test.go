package actions_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/handlers"
)

const clientToken = "client-secret"

// daemon serves the real actions API (api.New) over the harness's service,
// with handlers FileSystem and Magpie and an admin token named "admin" (the
// harness's admin caller). It counts the requests it answers.
type daemon struct {
	*harness
	url      string
	requests atomic.Int64
}

func newDaemon(t *testing.T) *daemon {
	t.Helper()
	d := &daemon{harness: newHarness(t)}
	reg, err := handlers.NewRegistry(
		handlers.Registration{Handler: handlers.Named("FileSystem"), Active: true},
		handlers.Registration{Handler: handlers.Named("Magpie"), Active: true},
	)
	if err != nil {
		t.Fatal(err)
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	srv := api.New(api.Options{Log: logrus.NewEntry(l), Registry: reg, Actions: d.svc,
		Auth: api.Auth{AdminTokens: map[string]string{"admin": clientToken}}})
	h := srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close) // before the harness closes the service
	d.url = ts.URL
	return d
}

// client returns a client of the daemon with the admin token.
func (d *daemon) client() *actions.Client {
	return &actions.Client{URL: d.url + "/", Token: clientToken, Timeout: hangGuard}
}

// wantAPIError checks that err is an *actions.APIError with status code and
// error code, which does not quote the token.
func wantAPIError(t *testing.T, what string, err error, status int, code string) *actions.APIError {
	t.Helper()
	var ae *actions.APIError
	if !errors.As(err, &ae) || ae.StatusCode != status || ae.Code != code {
		t.Fatalf("%s: err = %#v (%v), want an APIError %d %s", what, err, err, status, code)
	}
	if strings.Contains(err.Error(), clientToken) {
		t.Errorf("%s: error %q quotes the token", what, err)
	}
	return ae
}

func TestClientTypesAndHandlers(t *testing.T) {
	d := newDaemon(t)
	c := d.client()
	types, err := c.Types(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var titles []string
	for _, ty := range types {
		titles = append(titles, ty.Title)
	}
	if want := []string{"echo", "panic", "slow", "wait", "wait.resumable"}; !reflect.DeepEqual(titles, want) {
		t.Errorf("types = %v, want %v", titles, want)
	}
	if types[3].Description != "waits for the test" || !types[3].LogSupported || len(types[3].InputSchema) == 0 {
		t.Errorf("wait = %+v", types[3])
	}
	names, err := c.Handlers(t.Context())
	if want := []string{"FileSystem", "Magpie"}; err != nil || !reflect.DeepEqual(names, want) {
		t.Errorf("handlers = %v, %v; want %v", names, err, want)
	}
}

func TestClientRun(t *testing.T) {
	d := newDaemon(t)
	c := d.client()
	ctx := t.Context()
	req := actions.RunRequest{Label: "hello", Body: json.RawMessage(`{"name": "a"}`)}
	st, err := c.Run(ctx, "echo", req)
	if err != nil || st.Type != "echo" || st.ActionID == "" || st.Label != "hello" || st.CreatorID != admin.ID {
		t.Fatalf("run = %+v, %v", st, err)
	}
	if end := d.waitEnd(st.ActionID); end.Status != actions.Succeeded || end.Details["you_said"] != "a" {
		t.Errorf("action = %+v", end)
	}
	// Without a request ID each run is a new action; with one, a repeat
	// returns the same action.
	other, err := c.Run(ctx, "echo", req)
	if err != nil || other.ActionID == st.ActionID {
		t.Errorf("second run without request ID = %+v, %v; want a new action", other, err)
	}
	req.RequestID = "r1"
	first, err := c.Run(ctx, "echo", req)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.Run(ctx, "echo", req); err != nil || again.ActionID != first.ActionID {
		t.Errorf("repeat of r1 = %+v, %v; want action %s", again, err, first.ActionID)
	}

	_, err = c.Run(ctx, "echo", actions.RunRequest{Body: json.RawMessage(`{"name": 3}`)})
	if ae := wantAPIError(t, "invalid body", err, http.StatusUnprocessableEntity, "RequestValidationError"); !strings.Contains(ae.Description, "$.body.name") {
		t.Errorf("invalid body: description %q", ae.Description)
	}
	req.RequestID = "r1"
	req.Label = "other"
	_, err = c.Run(ctx, "echo", req)
	wantAPIError(t, "reused request ID", err, http.StatusConflict, "ActionConflict")
	_, err = c.Run(ctx, "nope", req)
	wantErr(t, "unknown type", err, actions.ErrNotFound)
}

// TestClientRunRequest checks what Run sends: a random 32-hex request_id
// when the request has none, the token, and JSON headers.
func TestClientRunRequest(t *testing.T) {
	got := make(chan *http.Request, 2)
	bodies := make(chan map[string]any, 2)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Error(err)
		}
		got <- r
		bodies <- m
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprint(w, `{"action_id": "x1", "status": "ACTIVE"}`)
	}))
	defer ts.Close()
	c := &actions.Client{URL: ts.URL, Token: "tok"}
	st, err := c.Run(t.Context(), "handler.resync", actions.RunRequest{Label: "resync a", Body: json.RawMessage(`{"handler":"a"}`)})
	if err != nil || st.ActionID != "x1" || st.Type != "handler.resync" {
		t.Fatalf("run = %+v, %v", st, err)
	}
	r, m := <-got, <-bodies
	if r.Method != http.MethodPost || r.URL.Path != "/actions/v1/handler.resync" || r.Header.Get("Authorization") != "Bearer tok" ||
		r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Accept") != "application/json" {
		t.Errorf("request = %s %s %v", r.Method, r.URL, r.Header)
	}
	id, _ := m["request_id"].(string)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) || m["label"] != "resync a" ||
		!reflect.DeepEqual(m["body"], map[string]any{"handler": "a"}) {
		t.Errorf("run request = %v", m)
	}
	c.Token = ""
	if _, err := c.Run(t.Context(), "t", actions.RunRequest{RequestID: "mine"}); err != nil {
		t.Fatal(err)
	}
	if r, m := <-got, <-bodies; r.Header.Get("Authorization") != "" || m["request_id"] != "mine" {
		t.Errorf("without a token: header %v, request %v", r.Header, m)
	}
}

func TestClientActionOperations(t *testing.T) {
	d := newDaemon(t)
	c := d.client()
	ctx := t.Context()
	id := d.runBody(admin, "wait", "w", `{"name": "w"}`).ActionID
	d.waitStarted("w")

	for _, typ := range []string{"wait", ""} {
		st, err := c.Status(ctx, typ, id)
		if err != nil || st.ActionID != id || st.Type != "wait" || st.Status != actions.Active {
			t.Errorf("Status(%q) = %+v, %v", typ, st, err)
		}
	}
	if st, err := c.Find(ctx, id); err != nil || st.Type != "wait" || st.ActionID != id {
		t.Errorf("Find = %+v, %v", st, err)
	}
	_, err := c.Status(ctx, "echo", id)
	wantErr(t, "status as another type", err, actions.ErrNotFound)
	wantAPIError(t, "status as another type", err, http.StatusNotFound, "ActionNotFound")

	_, err = c.Release(ctx, "", id)
	if ae := wantAPIError(t, "release of an active action", err, http.StatusConflict, "ActionConflict"); !strings.Contains(err.Error(), "still ACTIVE") ||
		ae.Method != http.MethodDelete || ae.Path != "/actions/v1/wait/"+id {
		t.Errorf("release of an active action: %v", err)
	}
	st, err := c.Cancel(ctx, "", id)
	if err != nil || st.ActionID != id || st.Type != "wait" {
		t.Fatalf("cancel = %+v, %v", st, err)
	}
	wantCode(t, d.waitEnd(id), actions.Failed, actions.CodeCanceled)
	_, err = c.Cancel(ctx, "wait", id)
	wantAPIError(t, "cancel of an ended action", err, http.StatusConflict, "ActionConflict")

	st, err = c.Release(ctx, "wait", id)
	if err != nil || st.Status != actions.Failed || st.Type != "wait" {
		t.Fatalf("release = %+v, %v", st, err)
	}
	_, err = c.Status(ctx, "", id)
	if wantErr(t, "status after release", err, actions.ErrNotFound); err == nil || err.Error() != "action "+id+": not found" {
		t.Errorf("status after release: %v", err)
	}
	_, err = c.LogAll(ctx, "", id)
	wantErr(t, "log after release", err, actions.ErrNotFound)
	_, err = c.Cancel(ctx, "", "nope")
	wantErr(t, "cancel of an unknown action", err, actions.ErrNotFound)
}

func TestClientList(t *testing.T) {
	d := newDaemon(t)
	c := d.client()
	ctx := t.Context()
	done := d.runBody(admin, "echo", "e", `{"name": "e"}`).ActionID
	d.waitEnd(done)
	active := d.runBody(admin, "wait", "w", `{"name": "w"}`).ActionID
	d.waitStarted("w")
	d.runBody(alice, "echo", "a", `{"name": "a"}`) // not visible to the admin token

	ids := func(sts []actions.Status) (out []string) {
		for _, st := range sts {
			out = append(out, st.Type+":"+st.ActionID)
		}
		return out
	}
	for _, tt := range []struct {
		name string
		f    actions.Filter
		want []string
	}{
		{"defaults: active, created", actions.Filter{}, []string{"wait:" + active}},
		{"every type", actions.Filter{Statuses: []string{"active,succeeded"}}, []string{"echo:" + done, "wait:" + active}},
		{"repeated values", actions.Filter{Statuses: []string{"succeeded", "active"}, Roles: []string{"creator", "monitor_by"}},
			[]string{"echo:" + done, "wait:" + active}},
		{"one type", actions.Filter{Type: "echo", Statuses: []string{"succeeded,active"}}, []string{"echo:" + done}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sts, err := c.List(ctx, tt.f)
			if err != nil || !reflect.DeepEqual(ids(sts), tt.want) {
				t.Errorf("List = %v, %v; want %v", ids(sts), err, tt.want)
			}
		})
	}
	sts, err := c.List(ctx, actions.Filter{Statuses: []string{"failed"}})
	if data, _ := json.Marshal(sts); err != nil || string(data) != "[]" {
		t.Errorf("empty list = %s, %v; want []", data, err)
	}
	_, err = c.List(ctx, actions.Filter{Type: "nope"})
	wantErr(t, "list of an unknown type", err, actions.ErrNotFound)
}

func TestClientLog(t *testing.T) {
	d := newDaemon(t)
	c := d.client()
	ctx := t.Context()
	id := d.runBody(admin, "echo", "e", `{"name": "e", "logs": 150}`).ActionID
	d.waitEnd(id)

	page, err := c.Log(ctx, "echo", id, 10, "")
	if err != nil || len(page.Entries) != 10 || !page.HasNextPage || page.Marker != "10" || page.Entries[1].Description != "step 0" {
		t.Fatalf("first page = %+v, %v", page, err)
	}
	next, err := c.Log(ctx, "", id, 10, page.Marker)
	if err != nil || len(next.Entries) != 10 || next.Entries[0].Description != "step 9" {
		t.Errorf("second page = %+v, %v", next, err)
	}
	want, err := d.svc.Log(ctx, admin, id, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if page, err := c.Log(ctx, "echo", id, 0, ""); err != nil || !reflect.DeepEqual(page, want) {
		t.Errorf("page of the default size = %+v, %v; want %+v", page, err, want)
	}

	all, err := c.LogAll(ctx, "", id)
	if err != nil || len(all) != 152 || all[0].Code != "STARTED" || all[150].Description != "step 149" {
		t.Fatalf("whole log: %d entries, %v", len(all), err)
	}
	_, err = c.Log(ctx, "echo", id, -1, "")
	wantAPIError(t, "negative limit", err, http.StatusUnprocessableEntity, "RequestValidationError")
}

func TestClientFollow(t *testing.T) {
	d := newDaemon(t)
	c := d.client()
	st, err := c.Run(t.Context(), "wait", actions.RunRequest{Body: json.RawMessage(`{"name": "f", "progress": true}`)})
	if err != nil {
		t.Fatal(err)
	}
	d.waitStarted("f")
	seen := make(chan actions.Status, 1000)
	type followed struct {
		st  actions.Status
		err error
	}
	ended := make(chan followed, 1)
	go func() {
		st, err := c.Follow(t.Context(), st, time.Millisecond, func(st actions.Status) { seen <- st })
		ended <- followed{st, err}
	}()
	// Follow reports the status it was given, then polls.
	for _, want := range []string{"Running", "Half way: "} {
		select {
		case got := <-seen:
			if got.ActionID != st.ActionID || got.Type != "wait" || !strings.HasPrefix(got.DisplayStatus, want) {
				t.Fatalf("progress = %+v, want display status %q", got, want)
			}
		case <-time.After(hangGuard):
			t.Fatalf("no progress %q", want)
		}
	}
	d.gate("f") <- result{} // success
	var r followed
	select {
	case r = <-ended:
	case <-time.After(hangGuard):
		t.Fatal("Follow did not return")
	}
	if r.err != nil || r.st.Status != actions.Succeeded || r.st.Type != "wait" {
		t.Fatalf("Follow = %+v, %v", r.st, r.err)
	}
	close(seen)
	var last actions.Status
	for last = range seen {
	}
	if last.Status != actions.Succeeded {
		t.Errorf("last progress = %+v, want the terminal status", last)
	}

	// A terminal status is returned as is, without a request.
	before := d.requests.Load()
	calls := 0
	if got, err := c.Follow(t.Context(), r.st, time.Hour, func(actions.Status) { calls++ }); err != nil || got.ActionID != r.st.ActionID || calls != 1 {
		t.Errorf("Follow of a terminal action = %+v, %v, %d calls", got, err, calls)
	}
	if d.requests.Load() != before {
		t.Error("Follow of a terminal action sent a request")
	}
}

func TestClientFollowCanceled(t *testing.T) {
	d := newDaemon(t)
	c := d.client()
	st, err := c.Run(t.Context(), "wait", actions.RunRequest{Body: json.RawMessage(`{"name": "c"}`)})
	if err != nil {
		t.Fatal(err)
	}
	d.waitStarted("c")
	ctx, cancel := context.WithCancel(t.Context())
	_, err = c.Follow(ctx, st, time.Hour, func(actions.Status) { cancel() })
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "wait for action "+st.ActionID) {
		t.Errorf("Follow after cancel = %v", err)
	}
	d.gate("c") <- result{}
}

func TestClientErrors(t *testing.T) {
	d := newDaemon(t)
	ctx := t.Context()
	t.Run("no token", func(t *testing.T) {
		c := d.client()
		c.Token = ""
		_, err := c.Types(ctx)
		wantAPIError(t, "no token", err, http.StatusUnauthorized, "UnauthorizedRequest")
		if want := "GET /actions/v1/: 401 no credentials: unauthenticated"; err.Error() != want {
			t.Errorf("err = %q, want %q", err, want)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		c := d.client()
		c.Token = "wrong-" + clientToken
		_, err := c.List(ctx, actions.Filter{})
		wantAPIError(t, "wrong token", err, http.StatusUnauthorized, "UnauthorizedRequest")
	})
	t.Run("invalid action IDs send nothing", func(t *testing.T) {
		c := d.client()
		before := d.requests.Load()
		for _, id := range []string{"", "a/b", "a?b", "a#b"} {
			for name, call := range map[string]func() error{
				"Find":    func() error { _, err := c.Find(ctx, id); return err },
				"Status":  func() error { _, err := c.Status(ctx, "wait", id); return err },
				"Cancel":  func() error { _, err := c.Cancel(ctx, "", id); return err },
				"Release": func() error { _, err := c.Release(ctx, "wait", id); return err },
				"Log":     func() error { _, err := c.Log(ctx, "", id, 0, ""); return err },
				"LogAll":  func() error { _, err := c.LogAll(ctx, "wait", id); return err },
			} {
				err := call()
				var ae *actions.ArgumentError
				if !errors.As(err, &ae) || err.Error() != fmt.Sprintf("invalid action ID %q", id) {
					t.Errorf("%s(%q) = %v, want an ArgumentError", name, id, err)
				}
			}
		}
		if n := d.requests.Load() - before; n != 0 {
			t.Errorf("%d requests sent", n)
		}
	})
	t.Run("invalid URL", func(t *testing.T) {
		c := &actions.Client{URL: "http://[::1"}
		_, err := c.Types(ctx)
		var ae *actions.ArgumentError
		if !errors.As(err, &ae) || !strings.HasPrefix(err.Error(), "GET /actions/v1/: ") {
			t.Errorf("err = %v, want an ArgumentError", err)
		}
	})
	t.Run("unreachable daemon", func(t *testing.T) {
		ts := httptest.NewServer(http.NotFoundHandler())
		ts.Close()
		c := &actions.Client{URL: strings.Replace(ts.URL, "http://", "http://user:pw@", 1), Token: clientToken}
		_, err := c.Types(ctx)
		if err == nil || !strings.HasPrefix(err.Error(), "GET /actions/v1/: ") || strings.Contains(err.Error(), "pw") ||
			strings.Contains(err.Error(), "http://") {
			t.Errorf("err = %v, want the request without the URL", err)
		}
	})
}

// TestClientAnswers checks how the client reads answers other than the
// actions API's: the Cowbird envelope, no envelope, undecodable bodies and
// a daemon that does not answer in time.
func TestClientAnswers(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
		want   string
		is     error
	}{
		{"cowbird envelope", http.StatusNotFound, `{"code": 404, "detail": "Could not find specified handler."}`,
			"GET /handlers: 404 Could not find specified handler.: not found", actions.ErrNotFound},
		{"no envelope", http.StatusBadGateway, `<html>`, "GET /handlers: 502 Bad Gateway", nil},
		{"undecodable answer", http.StatusOK, `{"handlers": 3}`, "GET /handlers: decode answer: ", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			}))
			defer ts.Close()
			_, err := (&actions.Client{URL: ts.URL}).Handlers(t.Context())
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("timeout", func(t *testing.T) {
		ts := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
		defer ts.Close()
		_, err := (&actions.Client{URL: ts.URL, Timeout: 10 * time.Millisecond}).Types(t.Context())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want a deadline error", err)
		}
	})
}
