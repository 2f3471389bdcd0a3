package filesystem_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/handlers"
)

// metricValues gathers the handler's metrics: each counter by name and
// labels (`name{label="value"}`), each histogram by name as its count.
func metricValues(t *testing.T, h *filesystem.Handler) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.Collectors()...)
	families, err := reg.Gather()
	must(t, err)
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=\"" + l.GetValue() + "\"}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// Reconcile counts every run but dry runs, by outcome and change kind.
func TestReconcileMetrics(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	e.file("weaver/public/a.nc", 0o644)
	e.file(e.userFile("weaver", "alice", "b.nc"), 0o660)

	if _, err := e.h.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{DryRun: true}); err != nil {
		t.Fatal(err)
	}
	st := e.reconcile(filesystem.Scope{})
	e.mg.FailNext("GET /users", 1, http.StatusServiceUnavailable)
	if _, err := e.h.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{}); err == nil {
		t.Fatal("reconcile with Magpie down: no error")
	}

	got := metricValues(t, e.h)
	want := map[string]float64{
		`cowbird_reconcile_runs_total{outcome="ok"}`:            1,
		`cowbird_reconcile_runs_total{outcome="error"}`:         1,
		`cowbird_reconcile_duration_seconds`:                    2,
		`cowbird_reconcile_changes_total{kind="link_created"}`:  float64(st.LinksCreated),
		`cowbird_reconcile_changes_total{kind="mode_fixed"}`:    float64(st.ModesFixed),
		`cowbird_reconcile_changes_total{kind="dir_created"}`:   float64(st.DirsCreated),
		`cowbird_reconcile_changes_total{kind="symlink_fixed"}`: float64(st.Symlinks),
		`cowbird_reconcile_changes_total{kind="link_replaced"}`: 0,
		`cowbird_reconcile_changes_total{kind="link_removed"}`:  0,
		`cowbird_reconcile_changes_total{kind="dir_removed"}`:   0,
		`cowbird_reconcile_changes_total{kind="failed"}`:        0,
		`cowbird_reconcile_running`:                             0,
	}
	if st.LinksCreated != 2 || st.ModesFixed != 1 || st.Symlinks != 1 {
		t.Fatalf("unexpected reconcile: %+v", st)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("metrics %v, want %v", got, want)
	}
}

func TestResyncPath(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	src := e.file("weaver/public/a.nc", 0o644)
	root := filepath.Join(e.wps, "weaver")

	e.mg.FailNext("GET /users", 1, http.StatusServiceUnavailable)
	covered, err := e.h.ResyncPath(ctx(t), root)
	if covered || !handlers.IsTransient(err) {
		t.Fatalf("with Magpie down: covered %v, err %v; want false and a transient error", covered, err)
	}
	assertAbsent(t, e.pub("weaver/public/a.nc"))

	covered, err = e.h.ResyncPath(ctx(t), root)
	if !covered || err != nil {
		t.Fatalf("covered %v, err %v; want true, nil", covered, err)
	}
	assertLinked(t, src, e.pub("weaver/public/a.nc"))
	if got := metricValues(t, e.h); got[`cowbird_reconcile_runs_total{outcome="ok"}`] != 1 ||
		got[`cowbird_reconcile_runs_total{outcome="error"}`] != 1 {
		t.Errorf("runs counted: %v", got)
	}
}

// Periodic calls run after each wait of the interval plus at most 10%,
// logs run's errors unless the context ended, and returns when it ends.
func TestPeriodic(t *testing.T) {
	e := newEnv(t, nil)
	logger, hook := logtest.NewNullLogger()
	h, err := filesystem.New(e.cfg, e.sessions, nil, logrus.NewEntry(logger), filesystem.Options{})
	must(t, err)
	t.Cleanup(func() { _ = h.Close() })
	const every = time.Hour
	if err := h.Periodic(ctx(t), 0, nil); err == nil {
		t.Error("a zero interval is accepted")
	}

	waits := make(chan time.Duration, 10) // Periodic also waits once more after the end
	tick := make(chan time.Time)
	filesystem.SetAfter(h, func(d time.Duration) <-chan time.Time {
		waits <- d
		return tick
	})
	c, cancel := context.WithCancel(ctx(t))
	defer cancel()
	runs := make(chan int, 2)
	n := 0
	run := func(context.Context) error {
		n++
		runs <- n
		if n == 2 {
			cancel() // shutting down: that error is not logged
		}
		return errors.New("magpie down")
	}
	ended := make(chan error, 1)
	go func() { ended <- h.Periodic(c, every, run) }()

	deadline := ctx(t)
	recv := func(what string, ch <-chan time.Duration) time.Duration {
		t.Helper()
		select {
		case d := <-ch:
			return d
		case <-deadline.Done():
			t.Fatalf("no %s", what)
			return 0
		}
	}
	for i := 1; i <= 2; i++ {
		if d := recv("wait", waits); d < every || d > every+every/10 {
			t.Errorf("wait %v, want %v to %v", d, every, every+every/10)
		}
		tick <- time.Now()
		select {
		case got := <-runs:
			if got != i {
				t.Fatalf("run %d, want %d", got, i)
			}
		case <-deadline.Done():
			t.Fatalf("run %d not called", i)
		}
	}
	select {
	case err := <-ended:
		must(t, err)
	case <-deadline.Done():
		t.Fatal("Periodic did not return when its context ended")
	}
	if entries := hook.AllEntries(); len(entries) != 1 || entries[0].Level != logrus.WarnLevel ||
		entries[0].Message != "periodic reconcile" || entries[0].Data[logrus.ErrorKey] == nil {
		t.Errorf("log %v, want one warning for the first run's error", entries)
	}
}

// cowbird_reconcile_running is 1 while a reconcile runs (here held in
// Magpie's answer), 0 once it ended.
func TestReconcileRunningGauge(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	e.file(e.userFile("weaver", "alice", "job/a.nc"), 0o664)
	h, reconciled, release := e.heldReconcile(t, "alice", filesystem.Options{Workers: 2})
	if v := metricValues(t, h)["cowbird_reconcile_running"]; v != 1 {
		t.Errorf("cowbird_reconcile_running = %v during a reconcile, want 1", v)
	}
	release()
	must(t, <-reconciled)
	if v := metricValues(t, h)["cowbird_reconcile_running"]; v != 0 {
		t.Errorf("cowbird_reconcile_running = %v after the reconcile, want 0", v)
	}
}
