package magpietest

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"reflect"
	"strconv"
	"testing"
	"time"
)

func TestAuth(t *testing.T) {
	s := NewServer(t, Options{})
	must[int](t)(s.AddUser("alice", "alicepassword"))
	anon := &api{t: t, base: s.URL(), hc: &http.Client{}}
	code, body := anon.do("GET", "/users", nil)
	if code != 401 || body["detail"] != "Unauthorized access to this resource. Missing authentication headers or cookies." {
		t.Errorf("no cookie: %d %v", code, body)
	}
	resp, err := http.Get(s.URL() + "/users")
	check(t, err)
	resp.Body.Close()
	if resp.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	if code, _ := anon.do("POST", "/signin", map[string]any{"user_name": "admin", "password": "wrong-password"}); code != 401 {
		t.Errorf("bad password: %d", code)
	}
	if code, _ := anon.do("POST", "/signin", map[string]any{"user_name": "anonymous", "password": ""}); code != 403 {
		t.Errorf("anonymous sign-in: %d", code)
	}
	if code, _ := anon.do("POST", "/signin", map[string]any{}); code != 422 {
		t.Errorf("missing user_name: %d", code)
	}

	jar, _ := cookiejar.New(nil)
	alice := &api{t: t, base: s.URL(), hc: &http.Client{Jar: jar}}
	if code, _ := alice.do("POST", "/signin", map[string]any{"user_name": "alice@example.com", "password": "alicepassword"}); code != 200 {
		t.Fatalf("sign-in by email: %d", code)
	}
	if code, _ := alice.do("GET", "/users", nil); code != 403 {
		t.Errorf("non-admin: %d, want 403", code)
	}

	admin := newAPI(t, s)
	code, body = admin.do("GET", "/users", nil)
	for _, k := range []string{"code", "detail", "type", "path", "url", "method"} {
		if _, ok := body[k]; !ok {
			t.Errorf("envelope lacks %q: %v", k, body)
		}
	}
	if code != 200 || !reflect.DeepEqual(body["user_names"], []any{"admin", "alice", "anonymous"}) {
		t.Errorf("users: %d %v", code, body)
	}
	s.ExpireSessions()
	if code, _ := admin.do("GET", "/users", nil); code != 401 {
		t.Errorf("after ExpireSessions: %d, want 401", code)
	}
	if s.Hits("GET /users") != 5 {
		t.Errorf("Hits = %d, want 5", s.Hits("GET /users"))
	}
}

func TestSessionTTL(t *testing.T) {
	s := NewServer(t, Options{SessionTTL: time.Nanosecond})
	a := newAPI(t, s)
	if code, _ := a.do("GET", "/users", nil); code != 401 {
		t.Errorf("expired session: %d, want 401", code)
	}
}

func TestFaults(t *testing.T) {
	s := NewServer(t, Options{})
	a := newAPI(t, s)
	s.FailNext("GET /services/types", 2, 503)
	for i := range 2 {
		if code, _ := a.do("GET", "/services/types", nil); code != 503 {
			t.Errorf("attempt %d: %d, want 503", i, code)
		}
	}
	code, body := a.do("GET", "/services/types", nil)
	want := []any{"access", "api", "geoserver", "geoserverwfs", "geoserverwms", "geoserverwps", "ncwms", "thredds", "wfs", "wps"}
	if code != 200 || !reflect.DeepEqual(body["service_types"], want) {
		t.Errorf("after faults: %d %v", code, body)
	}

	// A fresh connection: Go retries a GET once on a reused one.
	s.Inject("/users", Fault{Reset: true})
	fresh := &http.Client{Transport: &http.Transport{}}
	if _, err := fresh.Get(s.URL() + "/users"); err == nil {
		t.Error("reset: want a transport error")
	}

	s.Inject("*", Fault{Delay: time.Minute})
	hc := &http.Client{Timeout: 50 * time.Millisecond, Jar: a.hc.Jar}
	_, err := hc.Get(s.URL() + "/users")
	var ne interface{ Timeout() bool }
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("delay: err = %v, want a timeout", err)
	}
}

// Latency holds every answer, held requests wait concurrently, and
// PeakInFlight counts them.
func TestLatency(t *testing.T) {
	held := NewServer(t, Options{Latency: time.Minute})
	hc := &http.Client{Timeout: 50 * time.Millisecond}
	_, err := hc.Get(held.URL() + "/users")
	var ne interface{ Timeout() bool }
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Options.Latency: err = %v, want a timeout", err)
	}

	s := NewServer(t, Options{})
	a := newAPI(t, s)
	s.SetLatency(time.Minute)
	s.ResetPeak()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	answered := make(chan error, 3)
	for range 3 {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+"/users", nil)
			resp, err := a.hc.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			answered <- err
		}()
	}
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for s.PeakInFlight() < 3 {
		select {
		case err := <-answered:
			t.Fatalf("a request held a minute was answered: %v", err)
		case <-deadline:
			t.Fatalf("PeakInFlight = %d, want 3 requests held at once", s.PeakInFlight())
		case <-tick.C:
		}
	}
	cancel()
	for range 3 {
		if err := <-answered; !errors.Is(err, context.Canceled) {
			t.Errorf("held request: err = %v, want context.Canceled", err)
		}
	}
	s.SetLatency(0)
	if code, _ := a.do("GET", "/users", nil); code != 200 {
		t.Errorf("after SetLatency(0): %d", code)
	}
	if got := s.PeakInFlight(); got != 3 {
		t.Errorf("PeakInFlight = %d, want 3", got)
	}
}

func TestResourceValidation(t *testing.T) {
	s := NewServer(t, Options{})
	svc, ws, lyr := geoTree(t, s)
	a := newAPI(t, s)
	tests := []struct {
		name   string
		parent any
		rname  string
		typ    string
		code   int
	}{
		{"under a layer", lyr, "x", "layer", 403},
		{"type unknown to the service", svc, "x", "directory", 403},
		{"type not allowed under parent", svc, "x", "layer", 422},
		{"duplicate sibling", svc, "test_user", "workspace", 409},
		{"bad name", svc, "bad/name", "workspace", 422},
		{"no parent id", "1", "x", "workspace", 422},
		{"ok", ws, "workspace:file0", "layer", 201},
	}
	for _, tc := range tests {
		code, body := a.do("POST", "/resources", map[string]any{"resource_name": tc.rname, "resource_type": tc.typ, "parent_id": tc.parent})
		if code != tc.code {
			t.Errorf("%s: %d %v, want %d", tc.name, code, body, tc.code)
		}
	}
	must[int](t)(s.AddUser("alice", ""))
	perms := "/users/alice/resources/" + strconv.Itoa(lyr) + "/permissions"
	for _, tc := range []struct {
		body any
		code int
	}{
		{map[string]any{"permission": "getCapabilities"}, 422}, // names are lower case
		{map[string]any{"permission": "read"}, 400},            // not a layer permission
		{map[string]any{}, 400},
	} {
		if code, _ := a.do("POST", perms, tc.body); code != tc.code {
			t.Errorf("POST %v: %d, want %d", tc.body, code, tc.code)
		}
	}
	if code, _ := a.do("POST", perms, map[string]any{"permission": "GET_FEATURE"}); code != 201 {
		t.Errorf("member-name permission: %d, want 201", code)
	}
}

func TestTreesAndCascade(t *testing.T) {
	s := NewServer(t, Options{})
	svc, ws, lyr := geoTree(t, s)
	second := must[int](t)(s.AddResource(ws, "Another", "layer"))
	must[int](t)(s.AddUser("alice", ""))
	check(t, s.SetUserPermission("alice", lyr, "getmap-allow-match"))
	a := newAPI(t, s)

	code, body := a.do("GET", "/resources/"+strconv.Itoa(svc), nil)
	root := body["resource"].(map[string]any)
	wsNode := root["children"].(map[string]any)[strconv.Itoa(ws)].(map[string]any)
	kids := wsNode["children"].(map[string]any)
	if code != 200 || root["parent_id"] != nil || len(kids) != 2 || kids[strconv.Itoa(second)] == nil {
		t.Errorf("tree: %d %v", code, body)
	}
	if n := len(wsNode["permissions"].([]any)); n != 18*4 {
		t.Errorf("workspace allowed permissions: %d rows, want 72", n)
	}

	code, body = a.do("GET", "/resources/"+strconv.Itoa(lyr)+"?parent=True&invert=True&flatten=True", nil)
	var path []string
	for _, r := range body["resources"].([]any) {
		path = append(path, r.(map[string]any)["resource_name"].(string))
	}
	if code != 200 || !reflect.DeepEqual(path, []string{"geoserver", "test_user", "Espace_Vert"}) {
		t.Errorf("path: %d %v", code, body)
	}

	code, body = a.do("GET", "/users/alice/resources", nil)
	res := body["resources"].(map[string]any)
	if code != 200 || len(res) != 10 {
		t.Fatalf("user resources: %d %v", code, body)
	}
	gs := res["geoserver"].(map[string]any)["geoserver"].(map[string]any)
	cropped := gs["resources"].(map[string]any)[strconv.Itoa(ws)].(map[string]any)["children"].(map[string]any)
	if len(cropped) != 1 || !reflect.DeepEqual(cropped[strconv.Itoa(lyr)].(map[string]any)["permission_names"],
		[]any{"getmap-match", "getmap-allow-match"}) {
		t.Errorf("cropped tree: %v", cropped)
	}

	if code, _ := a.do("DELETE", "/resources/"+strconv.Itoa(ws), nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if len(s.UserPermissions("alice", lyr)) != 0 || len(s.Resources()) != 1 {
		t.Errorf("cascade left %v / %v", s.UserPermissions("alice", lyr), s.Resources())
	}
	if code, _ := a.do("GET", "/resources/"+strconv.Itoa(lyr), nil); code != 404 {
		t.Errorf("deleted resource: %d, want 404", code)
	}
	if code, _ := a.do("GET", "/resources/abc", nil); code != 422 {
		t.Errorf("non-integer id: %d, want 422", code)
	}
}

func TestUserListing(t *testing.T) {
	s := NewServer(t, Options{})
	must[int](t)(s.AddUser("alice", ""))
	a := newAPI(t, s)
	_, body := a.do("GET", "/users?detail=True", nil)
	for _, u := range body["users"].([]any) {
		m := u.(map[string]any)
		if _, has := m["user_id"]; has == (m["user_name"] == "anonymous") {
			t.Errorf("user_id presence wrong for %v", m)
		}
	}
	if code, _ := a.do("GET", "/users?status=bogus", nil); code != 400 {
		t.Errorf("bad status: %d", code)
	}
	_, body = a.do("GET", "/users?status=OK", nil)
	if n := len(body["user_names"].([]any)); n != 3 {
		t.Errorf("status=OK lists %d users", n)
	}
	if code, _ := a.do("GET", "/users/nobody", nil); code != 404 {
		t.Errorf("unknown user: %d", code)
	}
	if code, _ := a.do("DELETE", "/users/admin", nil); code != 403 {
		t.Errorf("delete admin: %d, want 403", code)
	}
}
