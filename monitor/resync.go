package monitor

import (
	"context"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// resyncs runs the registrations' resyncs beside the event loop, so that
// events keep being read (and the kernel queue drained) while a long
// reconcile runs, at most one per registration at a time: one asked while
// another runs is run once more after it. The loop alone calls start and
// finish, with its context, which ends before Run waits for wg.
type resyncs struct {
	wg   sync.WaitGroup
	done chan resyncDone
	runs map[regKey]*resyncRun
}

type resyncRun struct{ again bool }

// resyncDone is the outcome of one resync, started at start.
type resyncDone struct {
	r       Registration
	covered bool
	start   time.Time
}

func newResyncs() *resyncs {
	return &resyncs{done: make(chan resyncDone), runs: map[regKey]*resyncRun{}}
}

// start resyncs r now, or once its resync in progress ends.
func (rs *resyncs) start(ctx context.Context, m *Monitor, r Registration) {
	k := regKey{r.Path, r.Handler}
	if run := rs.runs[k]; run != nil {
		run.again = true
		return
	}
	rs.runs[k] = &resyncRun{}
	rs.wg.Go(func() {
		d := resyncDone{r: r, start: time.Now()}
		d.covered = m.resync(ctx, r)
		select {
		case rs.done <- d:
		case <-ctx.Done():
		}
	})
}

// finish takes the outcome of a resync: the events of its registration
// seen before it started and still waiting are dropped when it covered
// them, and it runs again when asked meanwhile.
func (rs *resyncs) finish(ctx context.Context, m *Monitor, d resyncDone, q *coalescer) {
	k := regKey{d.r.Path, d.r.Handler}
	run := rs.runs[k]
	delete(rs.runs, k)
	if d.covered {
		m.dropped.Add(uint64(q.dropSeenBefore(d.r.Handler, d.r.Path, d.start)))
	}
	if run != nil && run.again {
		rs.start(ctx, m, d.r)
	}
}

// resync runs the registration's resync and reports whether it covered the
// registration's waiting events.
func (m *Monitor) resync(ctx context.Context, r Registration) bool {
	if m.opts.Resync == nil {
		return false
	}
	covered, err := m.opts.Resync(ctx, r)
	if err != nil {
		m.handlerErrors.Add(1)
		m.log.WithError(err).WithFields(logrus.Fields{"path": r.Path, "handler": r.Handler}).Error("resync")
		return false
	}
	return covered
}
