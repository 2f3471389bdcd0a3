package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/hooks"
	"github.com/cowbird-go/cowbird/magpie"
	"github.com/cowbird-go/cowbird/monitor"
	"github.com/cowbird-go/cowbird/store"
)

// daemon is the wired application: built by build, run until its context
// ends.
type daemon struct {
	log      *logrus.Entry
	settings config.Settings
	cfg      *config.Config
	kinds    []handlers.Descriptor
	db       *store.DB
	mon      *monitor.Monitor
	disp     *handlers.Dispatcher
	srv      *api.Server
	actions  *actions.Service
	magpie   *magpie.Client // nil when no Magpie entry has a url
	outbound *outboundMetrics
	// callbackClient sends Magpie's failure callbacks.
	callbackClient *http.Client
	version        string
	ready          atomic.Bool
	started        atomic.Value   // time.Time: when the daemon started serving
	cleanups       []func() error // run in reverse order by close
	// admins are the principals that see the actions the daemon starts.
	admins []string
}

// build loads the configuration, opens the state and builds every part.
// ctx bounds what start-up asks of Magpie.
func build(ctx context.Context, o Options, addr *net.TCPAddr) (*daemon, error) {
	s := o.Settings
	configureLogger(o.Log, s)
	log := logrus.NewEntry(o.Log)
	d := &daemon{log: log, settings: s, kinds: o.Kinds, outbound: newOutboundMetrics(), version: o.Version}
	if o.Demo {
		demoURL := fmt.Sprintf("http://127.0.0.1:%d", addr.Port)
		demo, err := startDemo(o.DemoDir, demoURL, o.Out, log.WithField("component", "demo"))
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		d.cleanups = append(d.cleanups, demo.close)
		s.ConfigPath = demo.configPath
		// The demo's state belongs to its tree (no data dir given): a
		// state from another tree would name watches that are not there.
		if s.DataDir == "" {
			s.DataDir = filepath.Join(demo.dir, "data")
			d.settings.DataDir = s.DataDir
		}
		if d.settings.URL == "" {
			d.settings.URL = demoURL // the demo knows where it listens
		}
	}
	if s.ConfigPath == "" {
		return nil, UsageError{errors.New("no configuration: give --config, set COWBIRD_CONFIG_PATH, or use --demo")}
	}
	cfg, err := config.Load(s.ConfigPath, log.WithField("config", s.ConfigPath), ConfigKinds(d.kinds))
	if err != nil {
		return nil, errors.Join(UsageError{fmt.Errorf("config %s: %w", s.ConfigPath, err)}, d.close())
	}
	d.cfg = cfg
	if d.settings.URL == "" {
		d.settings.URL = fmt.Sprintf("http://localhost:%d", addr.Port)
		log.WithField("url", d.settings.URL).Warn("COWBIRD_URL is not set: using the listen address")
	}
	if d.db, err = store.Open(s.DataDir); err != nil {
		return nil, errors.Join(err, d.close())
	}
	d.cleanups = append(d.cleanups, d.db.Close)
	if err := d.wire(ctx, s.DataDir); err != nil {
		return nil, errors.Join(err, d.close())
	}
	return d, nil
}

// wire builds the actions service, the monitor, the handlers, the
// dispatcher and the API.
func (d *daemon) wire(ctx context.Context, dataDir string) error {
	d.callbackClient = d.httpClient("magpie")
	d.admins = []string{api.AdminGroup}
	for name := range d.cfg.Daemon.AdminTokenMap() {
		d.admins = append(d.admins, "token:"+name)
	}
	rec, err := d.wireActions()
	if err != nil {
		return err
	}
	latency := newFileEventLatency()
	d.mon = monitor.New(monitor.Options{
		Sink:     func(ctx context.Context, ev handlers.FileEvent) error { return d.disp.Dispatch(ctx, ev) },
		Observe:  latency.observe,
		Resync:   d.resyncWatch,
		Store:    d.db,
		Log:      d.log.WithField("component", "monitor"),
		Debounce: monitor.DefaultDebounce,
	})
	deps := []any{d.db, rec}
	if d.magpie = magpie.SharedClient(d.cfg, d.httpClient("magpie"), d.log.WithField("component", "magpie")); d.magpie != nil {
		deps = append(deps, d.magpie)
	}
	reg, err := d.buildRegistry(ctx, handlers.Env{Config: d.cfg, Settings: d.settings, DataDir: dataDir,
		Watcher: d.mon, HTTPClient: d.httpClient, Deps: deps})
	if err != nil {
		return err
	}
	d.disp = handlers.NewDispatcher(reg, d.log.WithField("component", "dispatch"), handlers.Options{
		Journal: d.db,
		Observe: func(h string, ev handlers.Event, took time.Duration, err error) {
			d.srv.ObserveDispatch(h, ev, took, err)
		},
		GaveUp: d.gaveUp,
	})
	d.srv = api.New(api.Options{
		Registry:        reg,
		Dispatcher:      apiDispatcher{d.disp, d},
		Actions:         d.actions,
		State:           d.db,
		Journal:         d.db,
		Explainer:       explainerOf(d), // composed from the active handlers (explain.go)
		Status:          d.status,
		Auth:            d.auth(),
		URL:             d.settings.URL,
		DaemonVersion:   d.version,
		Prefix:          d.cfg.Daemon.URLPrefix,
		BodyLimit:       d.cfg.Daemon.BodyLimit,
		DispatchTimeout: d.cfg.Daemon.DispatchTimeout,
		Callback:        d.callback,
		Ready:           d.readiness,
		Log:             d.log.WithField("component", "api"),
	})
	d.srv.Metrics().MustRegister(append(d.collectors(reg), stateCollectors(d.mon, latency.collector(reg), d.db)...)...)
	return nil
}

// wireActions builds the actions service, with the hook runs' recorder,
// which it returns.
func (d *daemon) wireActions() (*hooks.ActionRecorder, error) {
	rec := hooks.NewActionRecorder(d.log.WithField("component", "hooks"))
	svc, err := actions.New(actions.Options{
		Store: d.db, Log: d.log.WithField("component", "actions"),
		Types: append(d.actionTypes(), rec.Type()),
	})
	if err != nil {
		return nil, err
	}
	d.actions = svc
	rec.Bind(d.startHookRun)
	return rec, nil
}

// buildRegistry builds every active configured handler with its
// descriptor; inactive ones are only listed.
func (d *daemon) buildRegistry(ctx context.Context, env handlers.Env) (*handlers.Registry, error) {
	var regs []handlers.Registration
	var errs []error
	for _, hc := range d.cfg.Handlers {
		kind, _ := Lookup(d.kinds, hc.Name) // config.Load keeps known names only
		reg := handlers.Registration{Active: hc.Active, Priority: hc.Priority, ShareFiles: kind.ShareFiles,
			Handler: handlers.Named(hc.Name)}
		if hc.Active && kind.New != nil {
			env.Entry, env.Log = hc, d.log.WithField("handler", hc.Name)
			h, err := kind.New(ctx, env)
			if err != nil {
				errs = append(errs, fmt.Errorf("handler %s: %w", hc.Name, err))
				continue
			}
			if c, ok := h.(handlers.Closer); ok {
				d.cleanups = append(d.cleanups, c.Close)
			}
			reg.Handler = h
		}
		regs = append(regs, reg)
	}
	if err := errors.Join(errs...); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, UsageError{err}
	}
	return handlers.NewRegistry(regs...)
}

// collectors are the metrics of the active handlers and of the outbound
// calls.
func (d *daemon) collectors(reg *handlers.Registry) []prometheus.Collector {
	cs := []prometheus.Collector{d.outbound.requests, d.outbound.duration}
	for _, h := range reg.Active() {
		if c, ok := h.(handlers.Collector); ok {
			cs = append(cs, c.Collectors()...)
		}
		if r, ok := h.(handlers.Readier); ok {
			cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "cowbird_handler_ready",
				Help:        "1 when the handler is ready (e.g. Magpie accepted the sign-in), else 0 (see /readyz for why).",
				ConstLabels: prometheus.Labels{"handler": h.Name()},
			}, func() float64 {
				if r.Ready() != nil {
					return 0
				}
				return 1
			}))
		}
	}
	return cs
}

// resyncWatch is called by the monitor for a watched root that needs a
// reconcile (start-up catch-up, inotify overflow). It reports whether the
// reconcile covered what the lost file events would have done.
func (d *daemon) resyncWatch(ctx context.Context, r monitor.Registration) (bool, error) {
	log := d.log.WithFields(logrus.Fields{"handler": r.Handler, "path": r.Path})
	h, ok := d.disp.Registry().Lookup(r.Handler)
	if !ok {
		log.Warn("watch of an inactive handler: no reconcile")
		return false, nil
	}
	if pr, ok := h.(handlers.PathResyncer); ok {
		return pr.ResyncPath(ctx, r.Path)
	}
	if _, ok := h.(handlers.Resyncer); !ok {
		log.Debug("no reconcile for this watch: the handler has none") // once per watch: not a warning
		return false, nil
	}
	return false, d.disp.Resync(ctx, r.Handler)
}

func (d *daemon) readiness() error {
	select {
	case <-d.mon.Started():
	default:
		return errors.New("starting: watches not established yet")
	}
	if !d.ready.Load() {
		return errors.New("not serving")
	}
	var errs []error
	for _, h := range d.disp.Registry().Active() {
		if r, ok := h.(handlers.Readier); ok {
			if err := r.Ready(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", h.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// run serves on ln until ctx ends, then stops HTTP, the actions, the
// monitor, the dispatcher and the handlers' background work, and closes
// the state.
func (d *daemon) run(ctx context.Context, ln net.Listener, ready func(addr string)) error {
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	goRun := func(name string, fn func(context.Context) error) {
		wg.Go(func() {
			if err := fn(workCtx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
				stopWork()
			}
		})
	}
	if err := d.start(ctx); err != nil {
		return errors.Join(err, ln.Close(), d.close())
	}
	goRun("dispatcher", d.disp.Run)
	goRun("monitor", d.mon.Run)
	goRun("journal retention", func(ctx context.Context) error {
		return d.db.RunRetention(ctx, d.cfg.Daemon.JournalRetention, d.cfg.Daemon.JournalMaxEvents, d.log)
	})
	for name, fn := range d.services() {
		goRun(name, fn)
	}
	d.started.Store(time.Now().UTC())
	d.ready.Store(true)

	httpDone := make(chan error, 1)
	httpCtx, stopHTTP := context.WithCancel(ctx)
	defer stopHTTP()
	go func() { httpDone <- d.srv.Serve(httpCtx, ln) }()
	ready(ln.Addr().String())

	select {
	case <-ctx.Done():
		d.log.Info("shutting down")
	case <-workCtx.Done():
	}
	d.ready.Store(false)
	stopHTTP()
	if err := <-httpDone; err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := d.actions.Shutdown(shutCtx); err != nil {
		errs = append(errs, fmt.Errorf("actions: %w", err))
	}
	stopWork()
	wg.Wait()
	return errors.Join(append(errs, d.close())...)
}

// start runs the handlers' start-up work (directories, watches, checks)
// and resumes the actions, before the monitor runs.
func (d *daemon) start(ctx context.Context) error {
	for _, h := range d.disp.Registry().Active() {
		if s, ok := h.(handlers.Starter); ok {
			if err := s.Start(ctx); err != nil {
				return fmt.Errorf("start %s: %w", h.Name(), err)
			}
		}
	}
	return d.actions.Start(ctx)
}

// services is the background work of the handlers that have some, and the
// periodic reconcile, by name.
func (d *daemon) services() map[string]func(context.Context) error {
	out := map[string]func(context.Context) error{}
	for _, h := range d.disp.Registry().Active() {
		if r, ok := h.(handlers.Runner); ok {
			out[h.Name()+" background work"] = r.Run
		}
		if p, ok := h.(periodic); ok && d.cfg.Daemon.ReconcileInterval > 0 {
			name := h.Name()
			out["periodic reconcile"] = func(ctx context.Context) error {
				return p.Periodic(ctx, d.cfg.Daemon.ReconcileInterval, func(ctx context.Context) error {
					return d.runAction(ctx, "periodic reconcile", "handler.resync", map[string]any{"handler": name, "reuse_answers": true})
				})
			}
		}
	}
	return out
}

// periodic is a handler whose reconcile runs every reconcile_interval.
type periodic interface {
	Periodic(ctx context.Context, every time.Duration, run func(context.Context) error) error
}

// close runs the cleanups in reverse order.
func (d *daemon) close() error {
	var errs []error
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		errs = append(errs, d.cleanups[i]())
	}
	d.cleanups = nil
	return errors.Join(errs...)
}

func configureLogger(l *logrus.Logger, s config.Settings) {
	l.SetLevel(s.LogLevel)
	if s.LogFormat == "json" {
		l.SetFormatter(&logrus.JSONFormatter{})
	}
}

// httpClient is the client of outbound calls to service, counted in the
// metrics: COWBIRD_REQUEST_TIMEOUT and COWBIRD_SSL_VERIFY apply.
func (d *daemon) httpClient(service string) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// A reconcile asks Magpie from 4 x CPUs goroutines at once; with the
	// default 2 idle connections per host most requests would dial anew.
	tr.MaxIdleConnsPerHost = 64
	if !d.settings.SSLVerify {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // operator's choice (COWBIRD_SSL_VERIFY=false)
	}
	return d.outbound.client(service, &http.Client{Timeout: d.settings.RequestTimeout, Transport: tr})
}
