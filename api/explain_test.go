package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/handlers"
)

// fakeExplainer answers with the arguments it was given, refuses paths
// outside /wps as the FileSystem handler does, and fails on "boom".
type fakeExplainer struct{}

func (fakeExplainer) Explain(_ context.Context, path, user string) (any, error) {
	switch {
	case path == "/etc/passwd":
		return nil, fmt.Errorf("path %q: not under wps_outputs_dir /wps (%w)", path, fs.ErrInvalid)
	case user == "boom":
		return nil, errors.New("boom")
	}
	return map[string]any{"path": path, "user": user, "ok": true, "facts": []any{}}, nil
}

// TestExplainRoute: GET /explain answers admins only, with the
// explanation as plain JSON, and refuses bad queries with 400.
func TestExplainRoute(t *testing.T) {
	ts := httptest.NewServer(New(Options{Explainer: fakeExplainer{},
		Auth: Auth{AdminTokens: map[string]string{"ops": "s3cret", "viewer": "v1ew"},
			RunnableBy: map[string][]string{ExplainType: {"token:ops"}}}}).Handler())
	t.Cleanup(ts.Close)
	get := func(token string, q url.Values) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/cowbird/explain?"+q.Encode(), nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" && ct != "application/json; charset=UTF-8" {
			t.Errorf("content type %q", ct)
		}
		var out map[string]any
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		return resp.StatusCode, out
	}
	path := url.Values{"path": {"/wps/weaver/out.nc"}}
	if code, body := get("", path); code != http.StatusUnauthorized {
		t.Errorf("anonymous = %d %v, want 401", code, body)
	}
	if code, _ := get("wrong", path); code != http.StatusUnauthorized {
		t.Errorf("wrong token = %d, want 401", code)
	}
	if code, _ := get("v1ew", path); code != http.StatusForbidden {
		t.Errorf("token not in runnable_by = %d, want 403", code)
	}
	if code, body := get("s3cret", path); code != http.StatusOK || body["path"] != "/wps/weaver/out.nc" || body["user"] != "" {
		t.Errorf("path = %d %v", code, body)
	}
	if code, body := get("s3cret", url.Values{"user": {"alice"}}); code != http.StatusOK || body["user"] != "alice" || body["path"] != "" {
		t.Errorf("user = %d %v", code, body)
	}
	for _, q := range []url.Values{{}, {"path": {"/wps/x"}, "user": {"alice"}}, {"path": {"/etc/passwd"}}} {
		code, body := get("s3cret", q)
		if code != http.StatusBadRequest || body["detail"] == "" {
			t.Errorf("%v = %d %v, want 400 with a detail", q, code, body)
		}
	}
	if _, body := get("s3cret", url.Values{"path": {"/etc/passwd"}}); body["detail"] != `path "/etc/passwd": not under wps_outputs_dir /wps (invalid argument)` {
		t.Errorf("refusal detail = %v", body["detail"])
	}
	if code, body := get("s3cret", url.Values{"user": {"boom"}}); code != http.StatusInternalServerError || body["exception"] != "Exception" {
		t.Errorf("failure = %d %v, want the generic 500", code, body)
	}
}

// TestExplainRouteOnlyWithExplainer: a server given no Explainer has no
// route (a cowbird daemon always gives one, whatever handlers are active).
func TestExplainRouteOnlyWithExplainer(t *testing.T) {
	ts := httptest.NewServer(New(Options{Auth: Auth{AdminTokens: map[string]string{"ops": "s3cret"}}}).Handler())
	t.Cleanup(ts.Close)
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/explain?user=alice", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /explain without an explainer = %d, want 404", resp.StatusCode)
	}
}

// TestEventView: the view explanations quote is GET /events/{id}'s: the
// status, each handler's outcome with its error masked, and the replay of
// the failed handlers.
func TestEventView(t *testing.T) {
	cb := "https://magpie.example/tmp/0123456789abcdef?token=s3cr3tvalue"
	v := EventView(handlers.Record{ID: 7, Event: handlers.UserEvent{Action: handlers.Created, UserName: "alice", CallbackURL: cb},
		Pending: []string{"Geoserver"}, Failed: map[string]string{"FileSystem": "calling " + cb + ": refused", "Geoserver": "down"},
		Attempts: 2})
	if v.ID != 7 || v.Status != actions.EventFailed || v.User != "alice" || v.Attempts != 2 || len(v.Handlers) != 2 ||
		v.Handlers[0] != (actions.HandlerOutcome{Handler: "Geoserver", Outcome: actions.EventPending, Error: "down"}) ||
		v.Handlers[1].Handler != "FileSystem" || v.Handlers[1].Outcome != actions.EventFailed ||
		strings.Contains(v.Handlers[1].Error, "s3cr3tvalue") || !strings.Contains(v.Handlers[1].Error, "https://magpie.example/") {
		t.Errorf("view = %+v", v)
	}
	if v.Replay == nil || v.Replay.Body.EventID != 7 || len(v.Replay.Body.Handlers) != 1 || v.Replay.Body.Handlers[0] != "FileSystem" {
		t.Errorf("replay = %+v", v.Replay)
	}
}
