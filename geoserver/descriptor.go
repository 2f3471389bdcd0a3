package geoserver

import (
	"context"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
)

// Descriptor describes the Geoserver handler.
var Descriptor = handlers.Descriptor{
	HandlerKind: config.HandlerKind{
		Name: HandlerName,
		// Its own keys are the basic-auth credentials, optional; url and
		// workspace_dir are required (cowbird.md §3.4.1).
		Decode: func(s *config.Section) any { return s.Credentials() },
		Validate: func(hc config.HandlerConfig) config.Errors {
			return hc.Require("url", hc.URL, "workspace_dir", hc.WorkspaceDir)
		},
	},
	Type:       (*Handler)(nil),
	New:        newHandler,
	ShareFiles: true,
	Fields: func(hc config.HandlerConfig) []handlers.Field {
		return append(handlers.WithCredentials(hc, handlers.Field{Key: "url", Value: hc.URL},
			handlers.Field{Key: "workspace_dir", Value: hc.WorkspaceDir}),
			handlers.Field{Key: "monitors", Value: filepath.Join(hc.WorkspaceDir, "<user>", datastoreDirName) + " (recursive, from user_created and, for the workspaces on disk, at start-up)"})
	},
}

// newHandler builds the handler, its REST client and its job queue, kept in
// the state store.
func newHandler(_ context.Context, env handlers.Env) (handlers.Handler, error) {
	var mp Magpie = noMagpie{}
	if mc, err := magpie.Shared(env); err == nil {
		mp = mc
	} else {
		env.Log.Warn("no Magpie url and credentials: GeoServer workspaces, datastores and layers are kept, " +
			"Magpie permissions are not synced (those steps fail)")
	}
	db, err := handlers.Dep[JobStore](env)
	if err != nil {
		return nil, err
	}
	c := config.SettingsOf[config.Credentials](env.Entry)
	gs := NewClient(ClientOptions{URL: env.Entry.URL, User: c.AdminUser, Password: c.AdminPassword.Reveal(),
		HTTPClient: env.HTTPClient("geoserver"), Log: env.Log})
	jobs := NewJobs(db, JobsOptions{Log: env.Log.WithField("component", "jobs")})
	return New(env.Entry.WorkspaceDir, gs, mp, env.Watcher, jobs, env.Log,
		Options{AdminUID: env.Settings.AdminUID, AdminGID: env.Settings.AdminGID})
}

// Run implements handlers.Runner: it runs the GeoServer jobs until ctx ends.
func (h *Handler) Run(ctx context.Context) error { return h.jobs.Run(ctx) }

// Collectors implements handlers.Collector: the jobs queued and failed.
func (h *Handler) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cowbird_geoserver_jobs_pending", Help: "GeoServer jobs queued or running.",
		}, func() float64 { return float64(len(h.jobs.Status().Pending)) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cowbird_geoserver_jobs_failed_total", Help: "GeoServer jobs that failed for good since start.",
		}, func() float64 { return float64(h.jobs.Status().FailedTotal) }),
	}
}
