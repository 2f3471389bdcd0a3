// Package geoservertest is a stateful in-process GeoServer REST emulator for
// tests and the daemon's demo mode (spec magpie_geoserver.md C.2). It keeps
// workspaces, namespaces, data stores with their connection parameters,
// feature types and layers, answers with GeoServer's status codes and body
// formats (B.2), and injects faults: status codes with bodies, latency,
// first-N-fail per route, and a down switch.
package geoservertest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// The admin credentials used when Options leaves them empty (GeoServer's
// defaults).
const (
	DefaultUser     = "admin"
	DefaultPassword = "geoserver"
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// User and Password are the only accepted Basic auth credentials;
	// defaults DefaultUser and DefaultPassword.
	User, Password string
	// DuplicateWorkspaceStatus is the status of a duplicate workspace POST:
	// 401 (default; GeoServer ≤ 2.19, the version Cowbird tests) or 409 (≥ 2.20).
	DuplicateWorkspaceStatus int
	// PathMap maps a GeoServer-side path prefix to a local directory, e.g.
	// "/user_workspaces" to a t.TempDir(). When set, publishing feature type S
	// requires <data store url directory>/S.shp to exist under the mapping,
	// else the answer is GeoServer's 400. When empty, files are not checked.
	PathMap map[string]string
	// StrictTrailingSlash emulates GeoServer 3.0: POST /rest/workspaces/
	// (with the slash Cowbird sends) answers 404.
	StrictTrailingSlash bool
}

// Route names one REST route for fault injection.
type Route string

// The routes the emulator serves (relative to URL()), and AnyRoute.
const (
	AnyRoute                Route = "*"
	RouteCreateWorkspace    Route = "POST /rest/workspaces"
	RouteDeleteWorkspace    Route = "DELETE /rest/workspaces/{ws}"
	RouteCreateDatastore    Route = "POST /rest/workspaces/{ws}/datastores"
	RouteConfigureDatastore Route = "PUT /rest/workspaces/{ws}/datastores/{ds}"
	RoutePublishFeatureType Route = "POST /rest/workspaces/{ws}/datastores/{ds}/featuretypes"
	RouteDeleteFeatureType  Route = "DELETE /rest/workspaces/{ws}/datastores/{ds}/featuretypes/{ft}"
	// The read-only routes (cowbird explain).
	RouteGetWorkspace     Route = "GET /rest/workspaces/{ws}"
	RouteGetDatastore     Route = "GET /rest/workspaces/{ws}/datastores/{ds}"
	RouteListFeatureTypes Route = "GET /rest/workspaces/{ws}/datastores/{ds}/featuretypes"
	RouteListLayers       Route = "GET /rest/workspaces/{ws}/layers"
)

// Fault changes how a route answers.
type Fault struct {
	// Latency delays the answer (ended early when the client goes away or
	// the server closes).
	Latency time.Duration
	// Status, if non-zero, replaces the real answer: a 4xx comes as a
	// Tomcat HTML error page quoting Body HTML-escaped (401 adds the
	// WWW-Authenticate header), anything else as Body in plain text. Body
	// defaults to the status text. Status 401 emulates rejected credentials.
	Status int
	Body   string
	// Times is how many requests the fault applies to before it clears
	// itself ("first N fail, then succeed"); 0 means until ClearFaults.
	Times int
}

// Request is one request the server received.
type Request struct {
	Method string
	// Path is the URL path, Query the raw query.
	Path, Query string
	// ContentType is the request's Content-Type header.
	ContentType string
	Body        string
	// Status is the answer's status; 0 when the server was down or the
	// client left before an answer.
	Status int
}

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	ts      *httptest.Server
	opts    Options
	mux     *http.ServeMux
	closing chan struct{}
	once    sync.Once

	mu         sync.Mutex
	down       bool
	faults     map[Route]*Fault
	requests   []Request
	workspaces map[string]*workspace
	namespaces map[string]string // prefix -> URI
}

// New starts an emulator on 127.0.0.1. It panics, naming the field, when
// opts is invalid. Call Close when done.
func New(opts Options) *Server {
	if opts.User == "" && opts.Password == "" {
		opts.User, opts.Password = DefaultUser, DefaultPassword
	}
	switch opts.DuplicateWorkspaceStatus {
	case 0:
		opts.DuplicateWorkspaceStatus = http.StatusUnauthorized
	case http.StatusUnauthorized, http.StatusConflict:
	default:
		panic(fmt.Sprintf("geoservertest: Options.DuplicateWorkspaceStatus must be 401 or 409, got %d", opts.DuplicateWorkspaceStatus))
	}
	s := &Server{
		opts:       opts,
		mux:        http.NewServeMux(),
		closing:    make(chan struct{}),
		faults:     make(map[Route]*Fault),
		workspaces: make(map[string]*workspace),
		namespaces: make(map[string]string),
	}
	s.routes()
	s.ts = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// NewServer starts an emulator that closes when tb's test ends.
func NewServer(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := New(opts)
	tb.Cleanup(s.Close)
	return s
}

// URL is GeoServer's base URL (…/geoserver); the REST API is under URL()+"/rest".
func (s *Server) URL() string { return s.ts.URL + basePath }

// Close stops the server, ending any injected latency first.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closing)
		s.ts.Close()
	})
}

// SetDown switches the server down or up. While down, every request's
// connection is closed without an answer, so clients get a transport error,
// as from a stopped GeoServer. (A 503 from a proxy in front is a Fault.)
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// SetFault makes route (or every route, with AnyRoute) answer with f,
// replacing the route's previous fault. A route's own fault wins over
// AnyRoute's.
func (s *Server) SetFault(route Route, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[route] = &f
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// Requests returns the requests received so far, in the order they were
// answered.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

const basePath = "/geoserver"

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := &statusWriter{ResponseWriter: w}
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	} else {
		s.mux.ServeHTTP(rec, r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		ContentType: r.Header.Get("Content-Type"), Body: string(body), Status: rec.status,
	})
}

// handle registers h for route under pattern, behind faults and Basic auth.
func (s *Server) handle(route Route, pattern string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if f, ok := s.takeFault(route); ok {
			if !s.wait(r, f.Latency) {
				return
			}
			if f.Status != 0 {
				writeFault(w, f)
				return
			}
		}
		if u, p, ok := r.BasicAuth(); !ok || u != s.opts.User || p != s.opts.Password {
			sendError(w, http.StatusUnauthorized, "")
			return
		}
		h(w, r)
	})
}

// takeFault returns the fault for route, counting one use of it.
func (s *Server) takeFault(route Route) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := route
	f, ok := s.faults[key]
	if !ok {
		key = AnyRoute
		if f, ok = s.faults[key]; !ok {
			return Fault{}, false
		}
	}
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			delete(s.faults, key)
		}
	}
	return *f, true
}

// wait sleeps d unless the client leaves or the server closes first; it
// reports whether to go on answering.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.closing:
	}
	return false
}

func writeFault(w http.ResponseWriter, f Fault) {
	body := f.Body
	if body == "" {
		body = http.StatusText(f.Status)
	}
	if f.Status >= 400 && f.Status < 500 {
		sendError(w, f.Status, body)
		return
	}
	plain(w, f.Status, body)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
