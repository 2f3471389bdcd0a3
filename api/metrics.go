package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cowbird-go/cowbird/handlers"
)

// metrics are the collectors served on /metrics, in a registry private to
// one Server.
type metrics struct {
	reg      *prometheus.Registry
	received *prometheus.CounterVec
	rejected *prometheus.CounterVec
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	requests *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cowbird_events_received_total", Help: "Valid webhook events received, by event name.",
		}, []string{"event"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cowbird_events_rejected_total", Help: "Webhook requests rejected before dispatch, by route and status code.",
		}, []string{"route", "code"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cowbird_handler_calls_total", Help: "Handler calls, by handler, event and outcome (ok or error).",
		}, []string{"handler", "event", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cowbird_dispatch_duration_seconds", Help: "Duration of handler calls, by handler.",
			Buckets: prometheus.DefBuckets,
		}, []string{"handler"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cowbird_http_requests_total", Help: "HTTP requests, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.received, m.rejected, m.calls, m.duration, m.requests,
	)
	return m
}

// ObserveDispatch records one handler call; it has the signature of
// handlers.Options.Observe, to which the daemon wires it.
func (s *Server) ObserveDispatch(handler string, ev handlers.Event, took time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	s.metrics.calls.WithLabelValues(handler, ev.Name(), outcome).Inc()
	s.metrics.duration.WithLabelValues(handler).Observe(took.Seconds())
}
