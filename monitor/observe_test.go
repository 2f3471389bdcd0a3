package monitor

import (
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/handlers"
)

// delivery is one event delivered to the sink and what Observe was told
// about it.
type delivery struct {
	ev       handlers.FileEvent
	sunk     time.Time // while the sink ran
	observed handlers.FileEvent
	handler  string
	latency  time.Duration
	err      error
}

// observer records the sink calls and the Observe calls of a monitor.
type observer struct {
	mu   sync.Mutex
	sunk []time.Time
	obs  []delivery
}

// startObserved is start with the sink and Observe calls recorded. collect
// stops the monitor and returns every delivery in order: the events the
// test read (read), then those it left, each with its sink and Observe call.
func startObserved(t *testing.T, opts Options, fail func(handlers.FileEvent) error, regs ...Registration) (
	h *harness, collect func(read []handlers.FileEvent) []delivery) {
	t.Helper()
	o := &observer{}
	opts.Observe = func(ev handlers.FileEvent, latency time.Duration, err error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.obs = append(o.obs, delivery{observed: ev, handler: ev.Handler, latency: latency, err: err})
	}
	h = start(t, opts, func(ev handlers.FileEvent) error {
		o.mu.Lock()
		o.sunk = append(o.sunk, time.Now())
		o.mu.Unlock()
		if fail != nil {
			return fail(ev)
		}
		return nil
	}, regs...)
	return h, func(read []handlers.FileEvent) []delivery {
		t.Helper()
		h.stop()
		for len(h.events) > 0 {
			read = append(read, <-h.events)
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if len(o.obs) != len(read) || len(o.sunk) != len(read) {
			t.Fatalf("%d events delivered, %d sink calls, %d Observe calls: want one each per event",
				len(read), len(o.sunk), len(o.obs))
		}
		if n := h.m.Stats().Events; n != uint64(len(read)) {
			t.Fatalf("stats count %d events, %d delivered", n, len(read))
		}
		out := o.obs
		for i, ev := range read {
			out[i].ev, out[i].sunk = ev, o.sunk[i]
			if out[i].observed != ev {
				t.Fatalf("delivery %d: %v observed, %v delivered", i, out[i].observed, ev)
			}
		}
		return out
	}
}

// TestObserveLatency checks that Observe is called once per delivered
// event, with its handler and a latency that includes the time the event
// waited in the coalescing window. The first write of f is read before the
// creation of g, and the sink gets g after that: so f's first modification
// was seen before g reached the sink, and its latency is at least the time
// from there to its own sink call (one window, unless g came last).
func TestObserveLatency(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	h, collect := startObserved(t, Options{Debounce: 200 * time.Millisecond}, nil,
		rec(root, "fs"), Registration{Path: root, Handler: "top"})

	write(t, p("f"), "x") // created at once; the write waits in the window
	mkdir(t, p("g"))      // created at once
	write(t, p("f"), "y") // merged into f's waiting modification
	var want []handlers.FileEvent
	for _, name := range []string{"fs", "top"} {
		want = append(want, fe(created, p("f"), false, name), fe(created, p("g"), true, name),
			fe(modified, p("f"), false, name))
	}
	got := collect(h.expect(want))

	for i, d := range got {
		if d.handler != d.ev.Handler || d.latency < 0 || d.err != nil {
			t.Errorf("delivery %d: %v observed as handler %q, latency %s, error %v", i, d.ev, d.handler, d.latency, d.err)
		}
	}
	for _, name := range []string{"fs", "top"} {
		g := got[firstDelivery(got, fe(created, p("g"), true, name))]
		f := got[firstDelivery(got, fe(modified, p("f"), false, name))]
		waited := f.sunk.Sub(g.sunk)
		if f.latency < waited {
			t.Errorf("%v: latency %s, want at least the %s since %v reached the sink", f.ev, f.latency, waited, g.ev)
		}
		t.Logf("%s: f's modification delivered %s after g, latency %s", name, waited, f.latency)
	}
}

// firstDelivery returns the index of the first delivery of ev (which the
// test expected).
func firstDelivery(ds []delivery, ev handlers.FileEvent) int {
	return slices.IndexFunc(ds, func(d delivery) bool { return d.ev == ev })
}

// TestObserveSinkError checks that Observe gets the sink's error.
func TestObserveSinkError(t *testing.T) {
	root := t.TempDir()
	bad := filepath.Join(root, "bad")
	errBad := errors.New("handler failed")
	h, collect := startObserved(t, Options{}, func(ev handlers.FileEvent) error {
		if ev.Path == bad {
			return errBad
		}
		return nil
	}, rec(root, "fs"))

	mkdir(t, bad)
	mkdir(t, filepath.Join(root, "good"))
	got := collect(h.expect([]handlers.FileEvent{fe(created, bad, true, "fs"), fe(created, filepath.Join(root, "good"), true, "fs")}))
	for _, d := range got {
		var want error
		if d.ev.Path == bad {
			want = errBad
		}
		if d.err != want || d.handler != "fs" {
			t.Errorf("%v observed with handler %q, error %v; want fs, %v", d.ev, d.handler, d.err, want)
		}
	}
	if st := h.m.Stats(); st.HandlerErrors != 1 {
		t.Errorf("stats %+v, want 1 handler error", st)
	}
}
