package magpie

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// sessionServer answers GET /magpie/session with status and body, and
// records the cookies and headers it was sent.
type sessionServer struct {
	*httptest.Server
	mu      sync.Mutex
	status  int
	body    string
	cookies []string
	paths   []string
}

func newSessionServer(t *testing.T) *sessionServer {
	t.Helper()
	s := &sessionServer{status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.paths = append(s.paths, r.Method+" "+r.URL.Path)
		s.cookies = append(s.cookies, r.Header.Get("Cookie"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.status)
		_, _ = w.Write([]byte(s.body))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sessionServer) answer(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

// signedIn is Magpie 3's answer for alice, with fields Cowbird does not use.
const signedIn = `{"code": 200, "detail": "Get session successful.", "type": "application/json",
 "authenticated": true,
 "user": {"user_name": "alice", "email": "alice@example.org", "user_id": 7, "status": 1,
          "group_names": ["users", "administrators"], "extra": {"nested": [1, 2]}}}`

func TestSessionsUser(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		user   string
		groups []string
	}{
		{name: "signed in", status: 200, body: signedIn, user: "alice", groups: []string{"users", "administrators"}},
		{name: "no groups", status: 200, body: `{"authenticated": true, "user": {"user_name": "bob"}}`, user: "bob"},
		{name: "unused fields of another type", status: 200,
			body: `{"authenticated": true, "user": {"user_name": "bob", "user_id": "7", "status": "OK", "email": null, "group_names": []}, "code": "200"}`,
			user: "bob", groups: []string{}},
		{name: "anonymous", status: 200, body: `{"code": 200, "detail": "Get session successful.", "authenticated": false}`},
		{name: "anonymous with a user object", status: 200, body: `{"authenticated": false, "user": {"user_name": "anonymous"}}`},
		{name: "authenticated without a user", status: 200, body: `{"authenticated": true}`},
		{name: "authenticated with a null user", status: 200, body: `{"authenticated": true, "user": null}`},
		{name: "authenticated with no user name", status: 200, body: `{"authenticated": true, "user": {"group_names": ["users"]}}`},
		{name: "401", status: 401, body: `{"code": 401, "detail": "Unauthorized access to this resource."}`},
		{name: "403", status: 403, body: `{"code": 403, "detail": "Forbidden."}`},
	}
	srv := newSessionServer(t)
	s := NewSessions(srv.URL+"/magpie/", &http.Client{Timeout: 5 * time.Second})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.answer(tt.status, tt.body)
			user, groups, err := s.User(ctx(t), "the-cookie")
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if user != tt.user || !reflect.DeepEqual(groups, tt.groups) {
				t.Errorf("got %q %#v, want %q %#v", user, groups, tt.user, tt.groups)
			}
		})
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for i, p := range srv.paths {
		if p != "GET /magpie/session" || srv.cookies[i] != CookieName+"=the-cookie" {
			t.Errorf("request %d: %s with Cookie %q, want GET /magpie/session with only the caller's cookie", i, p, srv.cookies[i])
		}
	}
}

func TestSessionsUserErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		transient bool
	}{
		{name: "magpie error", status: 500, body: `{"detail": "unavailable"}`, transient: true},
		{name: "gateway", status: 502, body: `<html>Bad Gateway</html>`, transient: true},
		{name: "too many requests", status: 429, transient: true},
		{name: "wrong url", status: 404, body: `{"detail": "The route resource could not be found."}`},
		{name: "not json", status: 200, body: `<html>login</html>`},
		{name: "used field of another type", status: 200, body: `{"authenticated": "yes", "user": {"user_name": "alice"}}`},
		{name: "group names of another type", status: 200, body: `{"authenticated": true, "user": {"user_name": "alice", "group_names": "users"}}`},
	}
	srv := newSessionServer(t)
	s := NewSessions(srv.URL+"/magpie", &http.Client{Timeout: 5 * time.Second})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.answer(tt.status, tt.body)
			user, groups, err := s.User(ctx(t), "secret-cookie-value")
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("got %q %v, %v; want an *Error", user, groups, err)
			}
			if user != "" || groups != nil {
				t.Errorf("got %q %v with the error", user, groups)
			}
			if me.Op != "GET /session" || me.Transient() != tt.transient {
				t.Errorf("error %v: op %q, transient %v; want transient %v", err, me.Op, me.Transient(), tt.transient)
			}
			if strings.Contains(err.Error(), "secret-cookie-value") {
				t.Errorf("error holds the cookie: %v", err)
			}
		})
	}
}

func TestSessionsMagpieDown(t *testing.T) {
	srv := newSessionServer(t)
	url := srv.URL
	srv.Close()
	s := NewSessions(url, &http.Client{Timeout: 5 * time.Second})
	_, _, err := s.User(ctx(t), "secret-cookie-value")
	var me *Error
	if !errors.As(err, &me) || !me.Transient() || me.Status != 0 {
		t.Fatalf("Magpie down: %v, want a transient transport *Error", err)
	}
	if msg := err.Error(); strings.Contains(msg, "secret-cookie-value") || strings.Contains(msg, "/session\"") || strings.Contains(msg, url) {
		t.Errorf("error holds the cookie or the URL: %v", err)
	}
}

func TestSessionsTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	s := NewSessions(srv.URL, &http.Client{Timeout: 50 * time.Millisecond})
	_, _, err := s.User(ctx(t), "c")
	var me *Error
	if !errors.As(err, &me) || !me.Transient() {
		t.Fatalf("timeout: %v, want a transient *Error", err)
	}
}
