// Package magpietest is a stateful, in-memory emulator of the Magpie REST API
// subset cowbird uses: users, groups, services, resource trees, permissions
// with Magpie's resolution rules, cookie sign-in, webhooks with callback URLs,
// and fault injection. Tests and the daemon's demo mode run it on 127.0.0.1.
package magpietest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// Prefix is the path Magpie is mounted under; URL() includes it.
const Prefix = "/magpie"

// CookieName is the session cookie Magpie issues on sign-in.
const CookieName = "auth_tkt"

// Options configures a Server. The zero value is usable.
type Options struct {
	// AdminUser and AdminPassword are the seeded administrator's credentials
	// (default "admin" / "qwertyqwerty").
	AdminUser, AdminPassword string
	// Webhooks are fired on the matching actions (see CowbirdWebhooks).
	Webhooks []Webhook
	// QuietSeeding stops the Go seeding API (AddUser, SetUserPermission, ...)
	// from firing webhooks; REST calls always fire them.
	QuietSeeding bool
	// SessionTTL expires sign-in cookies after this long; zero never does.
	SessionTTL time.Duration
	// TokenTTL expires callback_url tokens (default 24h, MAGPIE_TOKEN_EXPIRE).
	TokenTTL time.Duration
	// TwitcherURL prefixes services' public_url (default
	// "https://localhost/twitcher/ows/proxy").
	TwitcherURL string
	// WebhookClient sends webhooks (default: a client with a 10 s timeout).
	WebhookClient *http.Client
	// Log receives the emulator's logs (default: discarded).
	Log *logrus.Entry
	// Latency holds every answer this long before it is computed (a real
	// Magpie resolves permissions in SQL: tens of milliseconds are typical).
	// Requests wait concurrently; SetLatency changes it later.
	Latency time.Duration
}

// Server is the Magpie emulator. All its methods are safe for concurrent use.
type Server struct {
	opts Options
	log  *logrus.Entry

	mu                    sync.Mutex
	nextUser, nextGroup   int
	nextRes               int
	users                 map[int]*user
	userNames             map[string]*user // users by name (names never change)
	groups                map[int]*group
	res                   map[int]*resource
	userPerms, groupPerms map[rowKey]map[string]perm
	sessions              map[string]*session
	tokens                map[string]*token
	hooks                 map[string][]Webhook
	faults                map[string][]*Fault
	hits                  map[string]int
	baseURL               string
	latency               time.Duration
	inFlight, peak        int // requests being answered now, and at most at once

	wh  *deliverer
	srv *http.Server
}

// New returns an emulator seeded with Magpie's defaults (groups
// administrators, anonymous and users; users admin and anonymous). It
// answers through Handler; Start serves it on 127.0.0.1.
func New(opts Options) *Server {
	if opts.AdminUser == "" {
		opts.AdminUser = "admin"
	}
	if opts.AdminPassword == "" {
		opts.AdminPassword = "qwertyqwerty"
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = 24 * time.Hour
	}
	if opts.TwitcherURL == "" {
		opts.TwitcherURL = "https://localhost/twitcher/ows/proxy"
	}
	if opts.WebhookClient == nil {
		opts.WebhookClient = &http.Client{Timeout: 10 * time.Second}
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = logrus.NewEntry(l)
	}
	s := &Server{
		opts: opts, log: log,
		users: map[int]*user{}, userNames: map[string]*user{}, groups: map[int]*group{}, res: map[int]*resource{},
		userPerms: map[rowKey]map[string]perm{}, groupPerms: map[rowKey]map[string]perm{},
		sessions: map[string]*session{}, tokens: map[string]*token{},
		faults: map[string][]*Fault{}, hits: map[string]int{}, latency: opts.Latency,
	}
	s.wh = newDeliverer(s)
	s.seed()
	if err := s.SetWebhooks(opts.Webhooks); err != nil {
		s.log.WithError(err).Error("webhooks ignored")
	}
	return s
}

// NewServer starts an emulator for a test and closes it on cleanup.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s := New(opts)
	if err := s.Start(); err != nil {
		t.Fatalf("start magpie emulator: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Start serves the emulator on 127.0.0.1 on a free port.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.mu.Lock()
	s.baseURL = "http://" + ln.Addr().String() + Prefix
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.mu.Unlock()
	go func() { _ = s.srv.Serve(ln) }()
	return nil
}

// URL is the base URL, prefix included (e.g. http://127.0.0.1:4321/magpie).
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// Close stops serving and stops webhook delivery.
func (s *Server) Close() error {
	s.wh.stop()
	if s.srv == nil {
		return nil
	}
	return s.srv.Close()
}

// Handler is the emulator's HTTP handler, routes under Prefix.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// Fault is an injected failure for the next requests on a route.
type Fault struct {
	// Status answers with this code and an envelope (Body if set) instead of
	// running the route; 0 runs the route normally after Delay.
	Status int
	// Body replaces the answer's body when Status is set.
	Body string
	// Delay holds the answer (or until the client gives up).
	Delay time.Duration
	// Reset closes the connection with a TCP reset instead of answering.
	Reset bool
	// Times is how many requests it applies to (0 means 1).
	Times int
}

// Inject queues a fault for route: "METHOD /pattern" (e.g.
// "GET /users/{user}"), "/pattern" for any method, or "*" for every route.
// Route patterns are the ones listed by Routes.
func (s *Server) Inject(route string, f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[route] = append(s.faults[route], &f)
}

// ClearFaults drops every fault still queued.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// FailNext makes the next n requests on route answer status.
func (s *Server) FailNext(route string, n, status int) {
	s.Inject(route, Fault{Status: status, Times: n})
}

// ExpireSessions invalidates every sign-in cookie, so the next call gets 401.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.sessions)
}

// ExpireTokens makes every pending callback_url token answer 410 Gone.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		t.expired = true
	}
}

// Hits counts the requests received on a route key "METHOD /pattern".
func (s *Server) Hits(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[route]
}

// SetLatency sets the time every answer is held from now on (see
// Options.Latency).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// PeakInFlight is the largest number of requests answered at once (from
// their arrival to their answer, latency included) since the start or the
// last ResetPeak.
func (s *Server) PeakInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// ResetPeak restarts PeakInFlight from the requests in flight now.
func (s *Server) ResetPeak() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peak = s.inFlight
}

// takeFault pops the fault applying to a route key, if any.
func (s *Server) takeFault(method, pattern string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range []string{method + " " + pattern, pattern, "*"} {
		q := s.faults[k]
		if len(q) == 0 {
			continue
		}
		f := q[0]
		if f.Times--; f.Times <= 0 {
			s.faults[k] = q[1:]
		}
		return f
	}
	return nil
}

// request is one parsed API call.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	params map[string]string
	caller *user // nil on public routes
}

// route is one API endpoint; pattern segments in braces are captured.
type route struct {
	method, pattern string
	public          bool
	h               func(s *Server, q *request) error
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.EscapedPath(), Prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	latency := s.latency
	s.inFlight++
	s.peak = max(s.peak, s.inFlight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	if !hold(r, latency) {
		return
	}
	rt, params := matchRoute(r.Method, path)
	if rt == nil {
		s.reply(w, r, http.StatusNotFound, "The route resource could not be found.", nil)
		return
	}
	s.mu.Lock()
	s.hits[rt.method+" "+rt.pattern]++
	s.mu.Unlock()
	if f := s.takeFault(rt.method, rt.pattern); f != nil {
		if !s.applyFault(w, r, f) {
			return
		}
	}
	q := &request{w: w, r: r, params: params}
	if !rt.public {
		if err := s.authenticate(q); err != nil {
			s.replyErr(w, r, err)
			return
		}
	}
	if err := rt.h(s, q); err != nil {
		s.replyErr(w, r, err)
	}
}

// applyFault carries out a fault; it reports whether the route still runs.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	if !hold(r, f.Delay) {
		return false
	}
	if f.Reset {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				if tcp, ok := conn.(*net.TCPConn); ok {
					_ = tcp.SetLinger(0)
				}
				_ = conn.Close()
			}
		}
		return false
	}
	switch {
	case f.Status == 0:
		return true
	case f.Body != "":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(f.Body))
	default:
		s.reply(w, r, f.Status, "Injected failure.", nil)
	}
	return false
}

// hold holds the request d; it reports false when the client gave up.
func hold(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// authenticate requires an unexpired session cookie of an administrator.
func (s *Server) authenticate(q *request) error {
	c, err := q.r.Cookie(CookieName)
	s.mu.Lock()
	defer s.mu.Unlock()
	var sess *session
	if err == nil {
		sess = s.sessions[c.Value]
	}
	if sess != nil && !sess.expires.IsZero() && time.Now().After(sess.expires) {
		delete(s.sessions, c.Value)
		sess = nil
	}
	if sess == nil || s.users[sess.userID] == nil {
		return errf(http.StatusUnauthorized, "Unauthorized access to this resource. Missing authentication headers or cookies.")
	}
	q.caller = s.users[sess.userID]
	if !s.isAdmin(q.caller) {
		return errf(http.StatusForbidden, "Forbidden operation for this resource or insufficient user privileges.")
	}
	return nil
}

func (s *Server) replyErr(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, detail: err.Error()}
	}
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Cookie realm="Magpie"`)
	}
	s.reply(w, r, ae.status, ae.detail, nil)
}

// reply writes Magpie's JSON envelope with payload keys at the top level.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, status int, detail string, payload map[string]any) {
	body := map[string]any{
		"code": status, "detail": detail, "type": "application/json",
		"path": r.URL.Path, "url": "http://" + r.Host + r.URL.Path, "method": r.Method,
	}
	for k, v := range payload {
		body[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_ = json.NewEncoder(w).Encode(body)
	}
}

// matchRoute finds the first route whose method and pattern match path.
func matchRoute(method, path string) (*route, map[string]string) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i := range routes {
		rt := &routes[i]
		if rt.method != method && !(method == http.MethodHead && rt.method == http.MethodGet && rt.public) {
			continue
		}
		pat := strings.Split(strings.Trim(rt.pattern, "/"), "/")
		if len(pat) != len(segs) {
			continue
		}
		params := map[string]string{}
		ok := true
		for j, p := range pat {
			if strings.HasPrefix(p, "{") {
				v, err := url.PathUnescape(segs[j])
				if err != nil {
					ok = false
					break
				}
				params[strings.Trim(p, "{}")] = v
			} else if p != segs[j] {
				ok = false
				break
			}
		}
		if ok {
			return rt, params
		}
	}
	return nil, nil
}

// Routes lists the emulated endpoints as "METHOD /pattern", the keys Inject
// and Hits use.
func Routes() []string {
	out := make([]string, len(routes))
	for i, rt := range routes {
		out[i] = rt.method + " " + rt.pattern
	}
	return out
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
