package magpietest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// api is a signed-in admin REST caller for tests.
type api struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newAPI(t *testing.T, s *Server) *api {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	a := &api{t: t, base: s.URL(), hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	if code, body := a.do("POST", "/signin", map[string]any{"user_name": "admin", "password": "qwertyqwerty"}); code != 200 {
		t.Fatalf("signin: %d %v", code, body)
	}
	return a
}

// do sends a JSON request and decodes the JSON answer.
func (a *api) do(method, path string, in any) (int, map[string]any) {
	a.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	data, _ := io.ReadAll(resp.Body)
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			a.t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode, out
}

// must fails the test on a seeding error.
func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// receiver collects webhook bodies, answering status.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []map[string]any
	status int
}

func newReceiver(t *testing.T, status int) *receiver {
	r := &receiver{status: status}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var b map[string]any
		_ = json.NewDecoder(req.Body).Decode(&b)
		r.mu.Lock()
		r.bodies = append(r.bodies, b)
		r.mu.Unlock()
		w.WriteHeader(r.status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.bodies...)
}

func wait(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
}

// geoTree seeds a geoserver service with workspace ws and layer lyr.
func geoTree(t *testing.T, s *Server) (svc, ws, lyr int) {
	t.Helper()
	svc = must[int](t)(s.AddService("geoserver", "geoserver"))
	ws = must[int](t)(s.AddResource(svc, "test_user", "workspace"))
	lyr = must[int](t)(s.AddResource(ws, "Espace_Vert", "layer"))
	return svc, ws, lyr
}
