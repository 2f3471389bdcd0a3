// Package api is cowbird's HTTP edge: the echo server with the Cowbird REST
// routes, the Magpie webhooks, the actions API (/actions/v1) with its
// authentication, health and readiness probes, Prometheus metrics and the
// OpenAPI (Swagger 2.0) document. It parses webhook bodies
// into typed handlers events, rejects bad input before dispatch, and maps
// errors to the Cowbird JSON envelope (spec cowbird.md §1). echo types never
// leave this package.
package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/handlers"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultPrefix          = "/cowbird"
	DefaultVersion         = "2.6.0"
	DefaultBodyLimit       = 1 << 20
	DefaultDispatchTimeout = 30 * time.Second
	shutdownTimeout        = 10 * time.Second
)

// Dispatcher runs events and resyncs through the active handlers;
// *handlers.Dispatcher implements it.
type Dispatcher interface {
	// Submit runs ev through every active handler and returns the joined
	// handler errors.
	Submit(ctx context.Context, ev handlers.Event) (uint64, error)
	// Resync runs the named active handler's resync.
	Resync(ctx context.Context, name string) error
}

// Options configures a Server. Every field is optional.
type Options struct {
	// Registry lists the handlers for /handlers; default: empty.
	Registry *handlers.Registry
	// Dispatcher runs webhook events and resyncs; default: an unjournaled
	// handlers.Dispatcher over Registry.
	Dispatcher Dispatcher
	// URL is COWBIRD_URL: GET / documents URL+"/api", /json uses it as host.
	URL string
	// Version is the Cowbird API version served (default "2.6.0").
	Version string
	// DaemonVersion is this daemon's build version, shown by GET /version.
	DaemonVersion string
	// Prefix is the path prefix every route also answers under (default
	// "/cowbird"; "/" disables it).
	Prefix string
	// BodyLimit bounds request bodies in bytes (default 1 MiB); larger
	// bodies get 413.
	BodyLimit int64
	// DispatchTimeout bounds a webhook's dispatch, which runs detached from
	// the request so a client disconnect cannot cut it short (default 30s).
	DispatchTimeout time.Duration
	// Callback is called with a user webhook's callback_url when its
	// created event fails, to tell Magpie that the user's creation failed
	// (magpie.NotifyFailure); it must bound its own time. Its error is
	// logged and swallowed, without the URL, which holds a token. Nil: no
	// callback is sent.
	Callback func(ctx context.Context, url string) error
	// Ready reports readiness for /readyz; nil means always ready.
	Ready func() error
	// Log receives the access log and errors; default: discarded.
	Log *logrus.Entry
	// Actions, when set, is served under /actions/v1.
	Actions *actions.Service
	// Auth says who may call the actions API and the webhooks.
	Auth Auth
	// State, when set, is served to admins under GET /state/snapshot.
	State Snapshotter
	// Journal, when set, is shown to admins under GET /events and GET
	// /events/{id}.
	Journal Journal
	// Explainer, when set, is served to admins under GET /explain.
	Explainer Explainer
	// Status, when set, is served to admins under GET /status (the
	// server sets the answer's Version and APIVersion).
	Status func(ctx context.Context) (DaemonStatus, error)
}

// Server is the HTTP server of the daemon.
type Server struct {
	opts    Options
	prefix  string
	e       *echo.Echo
	routes  []route
	exempt  map[string]bool // paths served without content negotiation
	metrics *metrics
	auth    *authenticator
}

// New builds a Server with every route registered.
func New(opts Options) *Server {
	if opts.Registry == nil {
		opts.Registry = &handlers.Registry{}
	}
	if opts.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		opts.Log = logrus.NewEntry(l)
	}
	if opts.Dispatcher == nil {
		opts.Dispatcher = handlers.NewDispatcher(opts.Registry, opts.Log, handlers.Options{})
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.BodyLimit <= 0 {
		opts.BodyLimit = DefaultBodyLimit
	}
	if opts.DispatchTimeout <= 0 {
		opts.DispatchTimeout = DefaultDispatchTimeout
	}
	s := &Server{
		opts:    opts,
		prefix:  strings.TrimRight(opts.Prefix, "/"),
		e:       echo.New(),
		exempt:  map[string]bool{},
		metrics: newMetrics(),
	}
	var err error
	if s.auth, err = newAuthenticator(opts.Auth); err != nil {
		opts.Log.WithError(err).Error("malformed admin tokens ignored")
	}
	s.e.HideBanner, s.e.HidePort = true, true
	s.e.IPExtractor = echo.ExtractIPFromXFFHeader()
	s.e.HTTPErrorHandler = s.handleError
	s.e.Pre(
		middleware.RequestID(),
		middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
			HandleError: true, LogLatency: true, LogMethod: true, LogURI: true, LogStatus: true,
			LogRequestID: true, LogRemoteIP: true, LogRoutePath: true,
			LogValuesFunc: s.logRequest,
		}),
		recoverPanic,
		s.limitBody,
		s.stripPrefix,
		s.negotiate,
		noOptions,
	)
	s.routes = s.routeTable()
	for _, rt := range s.routes {
		s.e.Add(rt.method, rt.path, rt.handle)
		if rt.method == http.MethodGet {
			s.e.Add(http.MethodHead, rt.path, rt.handle)
		}
		if rt.plain {
			s.exempt[rt.path] = true
		}
	}
	return s
}

// Handler returns the server's http.Handler, for httptest.
func (s *Server) Handler() http.Handler { return s.e }

// Metrics returns the server's private Prometheus registry, served on
// /metrics, so that other packages can register their collectors.
func (s *Server) Metrics() *prometheus.Registry { return s.metrics.reg }

// Serve answers requests on ln until ctx ends, then shuts down gracefully,
// waiting at most 10s for requests in flight.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	errLog := s.opts.Log.WriterLevel(logrus.WarnLevel)
	defer errLog.Close()
	srv := s.e.Server
	srv.Handler = s.e
	srv.ReadHeaderTimeout = 10 * time.Second
	srv.ErrorLog = log.New(errLog, "", 0)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := s.e.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}
	return nil
}

// logRequest writes the access log line and counts the request.
func (s *Server) logRequest(c echo.Context, v middleware.RequestLoggerValues) error {
	route := v.RoutePath
	if route == "" {
		route = "unmatched"
	}
	s.metrics.requests.WithLabelValues(route, metricMethod(v.Method), strconv.Itoa(v.Status)).Inc()
	if !s.opts.Log.Logger.IsLevelEnabled(logrus.InfoLevel) {
		return nil
	}
	path, _, _ := strings.Cut(v.URI, "?")
	s.opts.Log.WithFields(logrus.Fields{
		"method": v.Method, "path": path, "status": v.Status, "latency": v.Latency.String(),
		"request_id": v.RequestID, "remote_ip": v.RemoteIP,
	}).Info("http request")
	return nil
}

// panicError is a panic recovered from a route.
type panicError struct{ value any }

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// recoverPanic turns a panic in the chain into a generic 500.
func recoverPanic(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				err = &panicError{value: r}
			}
		}()
		return next(c)
	}
}

// limitBody rejects bodies over BodyLimit: at once when Content-Length says
// so, else when reading goes past the limit (*http.MaxBytesError).
func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength > s.opts.BodyLimit {
			return &http.MaxBytesError{Limit: s.opts.BodyLimit}
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, s.opts.BodyLimit)
		return next(c)
	}
}

// stripPrefix serves /cowbird/x as /x, as the original's PasteDeploy prefix
// filter does: the envelope's path is then /x and url keeps the prefix.
// Routing then uses the decoded path, like the original's PATH_INFO.
func (s *Server) stripPrefix(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		u := c.Request().URL
		u.RawPath = ""
		if rest, ok := strings.CutPrefix(u.Path, s.prefix); ok && s.prefix != "" && (rest == "" || rest[0] == '/') {
			if rest == "" {
				rest = "/"
			}
			u.Path = rest
		}
		return next(c)
	}
}

// noOptions answers OPTIONS like any other unrouted method (404 or 405):
// echo would answer 204, the original has no OPTIONS.
func noOptions(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Request().Method == http.MethodOptions {
			return echo.ErrMethodNotAllowed
		}
		return next(c)
	}
}

// metricMethod bounds the method label to the standard methods.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}
