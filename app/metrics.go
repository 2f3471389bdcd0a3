package app

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/monitor"
	"github.com/cowbird-go/cowbird/store"
)

// outboundMetrics count and time the daemon's calls to Magpie and GeoServer.
type outboundMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newOutboundMetrics() *outboundMetrics {
	return &outboundMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cowbird_outbound_requests_total",
			Help: "Requests to Magpie and GeoServer, by service, method and status code (\"error\" for transport errors).",
		}, []string{"service", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cowbird_outbound_request_duration_seconds",
			Help:    "Duration of requests to Magpie and GeoServer, by service and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"service", "method"}),
	}
}

// client returns an HTTP client for service whose requests are counted.
func (m *outboundMetrics) client(service string, base *http.Client) *http.Client {
	c := *base
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		start := time.Now()
		resp, err := next.RoundTrip(r)
		code := "error"
		if err == nil {
			code = strconv.Itoa(resp.StatusCode)
		}
		m.requests.WithLabelValues(service, r.Method, code).Inc()
		m.duration.WithLabelValues(service, r.Method).Observe(time.Since(start).Seconds())
		return resp, err
	})
	return &c
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// fileEventLatency is the histogram of monitor.Options.Observe: the time
// from the inotify event the monitor read to the end of the handling of the
// file event, by the handler that registered the watch.
type fileEventLatency struct{ hist *prometheus.HistogramVec }

func newFileEventLatency() fileEventLatency {
	return fileEventLatency{prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "cowbird_file_event_latency_seconds",
		Help: "Time from the inotify event read by the monitor to the end of the handling of the file event " +
			"(coalescing window included), for the events handled without error, by handler and operation " +
			"(created: a new WPS output to its hardlink; modified and deleted events that follow one within " +
			"the coalescing window wait for its end).",
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{"handler", "op"})}
}

// observe is monitor.Options.Observe. A failed event is not timed: nothing
// became visible (cowbird_monitor_handler_errors_total counts it).
func (l fileEventLatency) observe(ev handlers.FileEvent, latency time.Duration, err error) {
	if err == nil {
		l.hist.WithLabelValues(ev.Handler, string(ev.Op)).Observe(latency.Seconds())
	}
}

// collector returns the histogram with an empty series for every active
// handler that watches files, so that they are exported before the first
// file event.
func (l fileEventLatency) collector(reg *handlers.Registry) prometheus.Collector {
	for _, h := range reg.Active() {
		if _, ok := h.(handlers.FileHandler); ok {
			for _, op := range []handlers.FileOp{handlers.FileCreated, handlers.FileModified, handlers.FileDeleted} {
				l.hist.WithLabelValues(h.Name(), string(op))
			}
		}
	}
	return l.hist
}

// stateCollectors export the monitor's and the journal's state, read at
// scrape time, and latency, the monitor's file event latency.
func stateCollectors(mon *monitor.Monitor, latency prometheus.Collector, db *store.DB) []prometheus.Collector {
	return []prometheus.Collector{
		latency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cowbird_inotify_watches", Help: "inotify watches in use.",
		}, func() float64 { return float64(mon.Stats().Watches) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cowbird_inotify_overflows_total", Help: "inotify queue overflows (each triggers a reconcile).",
		}, func() float64 { return float64(mon.Stats().Overflows) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cowbird_monitor_events_total", Help: "File events delivered to handlers.",
		}, func() float64 { return float64(mon.Stats().Events) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cowbird_monitor_handler_errors_total", Help: "File events whose handler failed.",
		}, func() float64 { return float64(mon.Stats().HandlerErrors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cowbird_monitor_pending_events", Help: "File events waiting in the coalescing window.",
		}, func() float64 { return float64(mon.Stats().Pending) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cowbird_monitor_dropped_events_total", Help: "Waiting file events dropped because the reconcile after an inotify overflow covered them.",
		}, func() float64 { return float64(mon.Stats().Dropped) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cowbird_inotify_watch_limit_errors_total", Help: "Watches refused because fs.inotify.max_user_watches is exhausted.",
		}, func() float64 { return float64(mon.Stats().WatchLimitErrors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cowbird_inotify_max_user_watches", Help: "fs.inotify.max_user_watches read at start (0: unknown); the limit is per user.",
		}, func() float64 { return float64(mon.Stats().MaxWatches) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cowbird_monitor_degraded_watches", Help: "Registrations not fully watched now (missing directory, watch limit); retried periodically.",
		}, func() float64 { return float64(mon.Stats().Degraded) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cowbird_monitor_watch_errors_total", Help: "Failed attempts to watch a registration's tree, retries included.",
		}, func() float64 { return float64(mon.Stats().WatchErrors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cowbird_journal_pending_events", Help: "Journaled webhook events with handlers still to run (retries waiting).",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			recs, err := db.Pending(ctx)
			if err != nil {
				return -1
			}
			return float64(len(recs))
		}),
	}
}
