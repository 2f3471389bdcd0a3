package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/catalog"
	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/geoserver"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/hooks"
	"github.com/cowbird-go/cowbird/magpie"
	"github.com/cowbird-go/cowbird/monitor"
	"github.com/cowbird-go/cowbird/store"
)

// daemon is the wired application: it is built by newDaemon and torn down
// by run when its context ends.
type daemon struct {
	log      *logrus.Entry
	dataDir  string
	settings config.Settings
	cfg      *config.Config
	db       *store.DB
	mon      *monitor.Monitor
	disp     *handlers.Dispatcher
	srv      *api.Server
	ready    atomic.Bool
	cleanups []func() error // run in reverse order by close
	// services run beside the HTTP server until shutdown (job runners).
	services map[string]func(context.Context) error
	magpie   *magpie.Client  // nil when no Magpie handler is configured
	gsJobs   *geoserver.Jobs // nil when no Geoserver handler is active
	fs       *filesystem.Handler
	// starters run once before the monitor starts (watch registrations).
	starters []func(context.Context) error
	outbound *outboundMetrics
	recon    *reconcileMetrics
	actions  *actions.Service
	hookRec  *hookRecorder
	// admins are the principals that see the actions the daemon starts.
	admins []string
}

// newDaemon loads the configuration and opens the state; errors in the
// configuration are usage errors (exit 2).
func newDaemon(o serveOptions, base *logrus.Logger, out io.Writer, addr *net.TCPAddr) (*daemon, error) {
	settings, err := config.LoadSettings(os.LookupEnv)
	if err != nil {
		return nil, usageError{fmt.Errorf("settings: %w", err)}
	}
	configureLogger(base, settings)
	log := logrus.NewEntry(base)
	d := &daemon{log: log, settings: settings, dataDir: o.dataDir, services: map[string]func(context.Context) error{},
		outbound: newOutboundMetrics(), recon: newReconcileMetrics()}

	path := o.configPath
	if o.demo {
		demo, err := startDemo(o.demoDir, fmt.Sprintf("http://127.0.0.1:%d", addr.Port), out, log.WithField("component", "demo"))
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		d.cleanups = append(d.cleanups, demo.close)
		path = demo.configPath
	}
	if path == "" {
		path = settings.ConfigPath
	}
	if path == "" {
		return nil, usageError{errors.New("no configuration: give --config, set COWBIRD_CONFIG_PATH, or use --demo")}
	}
	cfg, err := config.Load(path, log.WithField("config", path))
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return nil, errors.Join(usageError{fmt.Errorf("config %s: %w", path, err)}, d.close())
	}
	d.cfg = cfg
	if d.settings.URL == "" {
		d.settings.URL = localURL(addr)
		log.WithField("url", d.settings.URL).Warn("COWBIRD_URL is not set: using the listen address")
	}

	if d.db, err = store.Open(o.dataDir); err != nil {
		return nil, errors.Join(err, d.close())
	}
	d.cleanups = append(d.cleanups, d.db.Close)
	d.admins = []string{api.AdminGroup}
	for name := range cfg.Daemon.AdminTokenMap() {
		d.admins = append(d.admins, "token:"+name)
	}
	d.hookRec = newHookRecorder(log.WithField("component", "hooks"))
	if d.actions, err = actions.New(actions.Options{
		Store: d.db, Log: log.WithField("component", "actions"),
		Types: append(d.actionTypes(), d.hookRec.actionType()),
	}); err != nil {
		return nil, errors.Join(err, d.close())
	}
	d.hookRec.svc, d.hookRec.monitorBy = d.actions, d.admins

	d.mon = monitor.New(monitor.Options{
		Sink:     d.fileEvent,
		Resync:   d.resyncWatch,
		Store:    d.db,
		Log:      log.WithField("component", "monitor"),
		Debounce: monitor.DefaultDebounce,
	})
	d.magpie = newMagpieClient(cfg, d.outbound.client("magpie", outboundClient(d.settings)), log)
	newHandler := d.newHandler
	if o.newHandler != nil {
		newHandler = o.newHandler
	}
	reg, err := d.buildRegistry(newHandler)
	if err != nil {
		return nil, errors.Join(usageError{err}, d.close())
	}
	d.disp = handlers.NewDispatcher(reg, log.WithField("component", "dispatch"), handlers.Options{
		Journal: d.db,
		Observe: func(h string, ev handlers.Event, took time.Duration, err error) {
			d.srv.ObserveDispatch(h, ev, took, err)
		},
	})
	srv := api.New(api.Options{
		Registry:        reg,
		Dispatcher:      apiDispatcher{d.disp, d},
		Actions:         d.actions,
		Auth:            d.auth(),
		URL:             d.settings.URL,
		Version:         APIVersion,
		DaemonVersion:   version,
		Prefix:          cfg.Daemon.URLPrefix,
		BodyLimit:       cfg.Daemon.BodyLimit,
		DispatchTimeout: cfg.Daemon.DispatchTimeout,
		CallbackClient:  outboundClient(d.settings),
		Ready:           d.readiness,
		Log:             log.WithField("component", "api"),
	})
	srv.Metrics().MustRegister(append(stateCollectors(d.mon, d.db, d.gsJobs),
		d.outbound.requests, d.outbound.duration, d.recon.runs, d.recon.duration, d.recon.changes)...)
	if d.fs != nil && cfg.Daemon.ReconcileInterval > 0 {
		d.services["periodic reconcile"] = d.periodicReconcile
	}
	d.srv = srv
	return d, nil
}

// buildRegistry instantiates every active configured handler; the table
// below is the one place that knows the handler names.
func (d *daemon) buildRegistry(newHandler func(config.HandlerConfig) (handlers.Handler, error)) (*handlers.Registry, error) {
	var regs []handlers.Registration
	var errs []error
	for _, hc := range d.cfg.Handlers {
		reg := handlers.Registration{Active: hc.Active, Priority: hc.Priority, Handler: handlers.Named(hc.Name)}
		if hc.Active {
			h, err := newHandler(hc)
			if err != nil {
				errs = append(errs, fmt.Errorf("handler %s: %w", hc.Name, err))
				continue
			}
			reg.Handler = h
		}
		regs = append(regs, reg)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return handlers.NewRegistry(regs...)
}

func (d *daemon) newHandler(hc config.HandlerConfig) (handlers.Handler, error) {
	log := d.log.WithField("handler", hc.Name)
	switch hc.Name {
	case catalog.Name:
		return catalog.New(hc.Catalog.WorkspaceDir, d.mon, log), nil
	case "Thredds", "Nginx":
		return handlers.Named(hc.Name), nil
	case "Magpie":
		h, err := magpie.NewHandler(d.cfg.SyncPoints, d.magpie, log)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), d.settings.RequestTimeout*3)
		defer cancel()
		if err := h.Validate(ctx); err != nil {
			if !handlers.IsTransient(err) {
				return nil, err
			}
			log.WithError(err).Warn("Magpie unreachable: sync_permissions service types not checked against Magpie")
		}
		return h, nil
	case filesystem.Name:
		if d.magpie == nil {
			return nil, errors.New("the FileSystem handler needs the Magpie handler's url and credentials")
		}
		h, err := filesystem.New(*hc.FileSystem, d.magpie, d.mon, log,
			filesystem.Options{AdminUID: d.settings.AdminUID, AdminGID: d.settings.AdminGID, IndexStore: d.db})
		if err != nil {
			return nil, err
		}
		d.cleanups = append(d.cleanups, h.Close)
		d.starters = append(d.starters, h.Start)
		d.fs = h
		return h, nil
	case hooks.Name:
		h, err := newHooksHandler(d.cfg, d.dataDir, d.hookRec, log)
		if err != nil {
			return nil, err
		}
		d.starters = append(d.starters, h.Check)
		return h, nil
	case geoserver.HandlerName:
		if d.magpie == nil {
			return nil, errors.New("the Geoserver handler needs the Magpie handler's url and credentials")
		}
		c := hc.Geoserver
		gs := geoserver.NewClient(geoserver.ClientOptions{
			URL: c.URL, User: c.AdminUser, Password: c.AdminPassword.Reveal(),
			HTTPClient: d.outbound.client("geoserver", outboundClient(d.settings)), Log: log,
		})
		jobs := geoserver.NewJobs(d.db, geoserver.JobsOptions{Log: log.WithField("component", "jobs")})
		h, err := geoserver.New(*c, gs, d.magpie, d.mon, jobs, log,
			geoserver.Options{AdminUID: d.settings.AdminUID, AdminGID: d.settings.AdminGID})
		if err != nil {
			return nil, err
		}
		d.cleanups = append(d.cleanups, h.Close)
		d.services["geoserver jobs"] = jobs.Run
		d.gsJobs = jobs
		return h, nil
	default:
		log.Errorf("the %s handler is not implemented yet in this build: its events are only logged", hc.Name)
		return handlers.Named(hc.Name), nil
	}
}

// newHooksHandler builds the Hooks handler: sessions live under
// <data-dir>/sessions, and the FileSystem handler's directories are the
// hooks' {{Handler.*}} values.
func newHooksHandler(cfg *config.Config, dataDir string, rec hooks.Recorder, log *logrus.Entry) (*hooks.Handler, error) {
	root := filepath.Join(dataDir, "sessions")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("hooks session root: %w", err)
	}
	// Hook users must reach their session directory through the data dir:
	// let them traverse it (not list it; the state file stays 0600).
	if err := os.Chmod(dataDir, 0o711); err != nil {
		return nil, fmt.Errorf("hooks session root: %w", err)
	}
	opts := hooks.Options{SessionRoot: root, Recorder: rec, Log: log}
	if fs, ok := cfg.Handler(filesystem.Name); ok && fs.FileSystem != nil {
		opts.WorkspaceDir, opts.WpsOutputsDir = fs.FileSystem.WorkspaceDir, fs.FileSystem.WPSOutputsDir
	}
	return hooks.New(cfg.Hooks, opts)
}

// newMagpieClient is the Magpie client every handler shares, from the Magpie
// handler's url and credentials; nil when none is configured.
func newMagpieClient(cfg *config.Config, hc *http.Client, log *logrus.Entry) *magpie.Client {
	mc, ok := cfg.Handler("Magpie")
	if !ok || mc.Magpie == nil || mc.Magpie.URL == "" {
		return nil
	}
	return magpie.NewClient(magpie.ClientOptions{
		URL: mc.Magpie.URL, AdminUser: mc.Magpie.AdminUser, AdminPassword: mc.Magpie.AdminPassword.Reveal(),
		HTTPClient: hc, Log: log.WithField("component", "magpie"),
	})
}

// fileEvent routes a monitor event to the dispatcher.
// File events under the trees FileSystem and Geoserver watch also reach the
// Hooks handler, when active, for its wps_output_* and shapefile_* hooks.
func (d *daemon) fileEvent(ctx context.Context, ev handlers.FileEvent) error {
	err := d.disp.Dispatch(ctx, ev)
	if _, hooked := d.disp.Registry().Lookup(hooks.Name); hooked && !ev.IsDir &&
		(ev.Handler == filesystem.Name || ev.Handler == geoserver.HandlerName) {
		ev.Handler = hooks.Name
		err = errors.Join(err, d.disp.Dispatch(ctx, ev))
	}
	return err
}

// resyncWatch is called by the monitor for a watched root that needs a
// reconcile (start-up catch-up, inotify overflow).
func (d *daemon) resyncWatch(ctx context.Context, r monitor.Registration) (bool, error) {
	if r.Handler == filesystem.Name && d.fs != nil {
		// The reconcile of the tree does all that its file events would.
		_, err := d.reconcile(ctx, filesystem.Scope{Path: r.Path}, false)
		return err == nil, err
	}
	if errors.Is(d.disp.Resync(ctx, r.Handler), handlers.ErrNoHandler) {
		d.log.WithFields(logrus.Fields{"handler": r.Handler, "path": r.Path}).Warn("watch of an inactive handler: no reconcile")
	}
	return false, nil
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
	return nil
}

// run serves on ln until ctx ends, then stops HTTP, the monitor and the
// dispatcher, drains, and closes the state database.
func (d *daemon) run(ctx context.Context, ln net.Listener, ready func(addr string)) error {
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	goRun := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(workCtx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
				stopWork()
			}
		}()
	}
	for _, start := range d.starters {
		if err := start(workCtx); err != nil {
			stopWork()
			return errors.Join(err, ln.Close(), d.close())
		}
	}
	if err := d.actions.Start(workCtx); err != nil {
		stopWork()
		return errors.Join(err, ln.Close(), d.close())
	}
	goRun("dispatcher", d.disp.Run)
	goRun("monitor", d.mon.Run)
	goRun("journal retention", d.pruneJournal)
	for name, fn := range d.services {
		goRun(name, fn)
	}
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

// pruneJournal bounds the journal's finished events, hourly.
func (d *daemon) pruneJournal(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := d.db.Prune(ctx, time.Now(), d.cfg.Daemon.JournalRetention, d.cfg.Daemon.JournalMaxEvents)
		if err != nil && ctx.Err() == nil {
			d.log.WithError(err).Warn("journal retention")
		} else if n > 0 {
			d.log.WithField("events", n).Info("journal pruned")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
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

// outboundClient is the HTTP client of outbound calls: COWBIRD_REQUEST_TIMEOUT
// and COWBIRD_SSL_VERIFY apply.
func outboundClient(s config.Settings) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// A reconcile asks Magpie from 4 x CPUs goroutines at once; with the
	// default 2 idle connections per host most requests would dial anew.
	tr.MaxIdleConnsPerHost = 64
	if !s.SSLVerify {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // operator's choice (COWBIRD_SSL_VERIFY=false)
	}
	return &http.Client{Timeout: s.RequestTimeout, Transport: tr}
}

// localURL is the URL of the daemon on this host.
func localURL(addr *net.TCPAddr) string {
	return fmt.Sprintf("http://localhost:%d", addr.Port)
}

// auth is who may call the actions API and the webhooks.
func (d *daemon) auth() api.Auth {
	a := api.Auth{AdminTokens: d.cfg.Daemon.AdminTokenMap(), WebhookSecret: d.cfg.Daemon.WebhookSecret.Reveal()}
	if d.cfg.Daemon.MagpieAuth {
		if mc, ok := d.cfg.Handler("Magpie"); ok && mc.Magpie != nil {
			a.Magpie = api.NewMagpieSessions(mc.Magpie.URL, d.outbound.client("magpie", outboundClient(d.settings)), 0)
		}
	}
	return a
}

// apiDispatcher is the dispatcher the API calls: PUT /handlers/{name}/resync
// runs a handler.resync action and waits for it.
type apiDispatcher struct {
	*handlers.Dispatcher
	d *daemon
}

// Resync implements api.Dispatcher.
func (a apiDispatcher) Resync(ctx context.Context, name string) error {
	return a.d.runAction(ctx, "PUT /handlers/"+name+"/resync", "handler.resync", map[string]any{"handler": name})
}

// runAction runs an action as the daemon and waits until it ends.
func (d *daemon) runAction(ctx context.Context, label, typ string, body map[string]any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	st, _, err := d.actions.Run(ctx, internalCaller, typ, actions.RunRequest{
		RequestID: internalRequestID(), Label: label, MonitorBy: d.admins, ManageBy: d.admins, Body: raw,
	})
	if err == nil {
		st, err = d.actions.Wait(ctx, st.ActionID)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	if st.Status != actions.Succeeded {
		return fmt.Errorf("%s: action %s %s: %v", label, st.ActionID, st.Status, st.Details["description"])
	}
	return nil
}

// periodicReconcile runs the FileSystem reconcile every reconcile_interval
// (with up to 10% jitter), as a handler.resync action.
func (d *daemon) periodicReconcile(ctx context.Context) error {
	every := d.cfg.Daemon.ReconcileInterval
	for {
		wait := every + time.Duration(rand.Int64N(int64(every)/10+1))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if err := d.runAction(ctx, "periodic reconcile", "handler.resync", map[string]any{"handler": filesystem.Name}); err != nil && ctx.Err() == nil {
			d.log.WithError(err).Warn("periodic reconcile")
		}
	}
}
