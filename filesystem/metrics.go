package filesystem

import "github.com/prometheus/client_golang/prometheus"

// reconcileMetrics export the figures of the reconciles run by Reconcile
// (resync, start-up, overflow, periodic), dry runs excepted.
type reconcileMetrics struct {
	runs     *prometheus.CounterVec
	duration prometheus.Histogram
	changes  *prometheus.CounterVec
	running  prometheus.Gauge
}

func newReconcileMetrics() *reconcileMetrics {
	return &reconcileMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cowbird_reconcile_runs_total", Help: "FileSystem reconciles (resync, start-up, overflow, periodic), by outcome.",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cowbird_reconcile_duration_seconds", Help: "Duration of FileSystem reconciles.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 9),
		}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cowbird_reconcile_changes_total", Help: "Changes applied by reconciles, by kind.",
		}, []string{"kind"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cowbird_reconcile_running", Help: "FileSystem reconciles in progress (0 or 1: they run one at a time).",
		}),
	}
}

// observe counts one reconcile that reported st and err.
func (m *reconcileMetrics) observe(st Stats, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.runs.WithLabelValues(outcome).Inc()
	m.duration.Observe(st.Duration.Seconds())
	for kind, n := range map[string]int{
		"link_created": st.LinksCreated, "link_replaced": st.LinksReplaced, "link_removed": st.LinksRemoved,
		"mode_fixed": st.ModesFixed, "dir_created": st.DirsCreated, "dir_removed": st.DirsRemoved,
		"symlink_fixed": st.Symlinks, "failed": st.Failed,
	} {
		m.changes.WithLabelValues(kind).Add(float64(n))
	}
}

// Collectors returns the reconcile metrics, for registration:
// cowbird_reconcile_runs_total{outcome}, cowbird_reconcile_duration_seconds,
// cowbird_reconcile_changes_total{kind} and cowbird_reconcile_running. Every
// Reconcile that is not a dry run is counted.
func (h *Handler) Collectors() []prometheus.Collector {
	return []prometheus.Collector{h.metrics.runs, h.metrics.duration, h.metrics.changes, h.metrics.running}
}
