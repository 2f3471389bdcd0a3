package app

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/geoserver"
	"github.com/cowbird-go/cowbird/handlers"
)

// reconcileTypes are the action types whose run is a reconcile.
var reconcileTypes = []string{"handler.resync", "permissions.reconcile"}

// status is GET /status: what the daemon knows of itself now, from the
// readiness checks, the handlers, the journal, the actions, the monitor
// and the reconcile metrics. It fails only when the state cannot be read.
func (d *daemon) status(ctx context.Context) (api.DaemonStatus, error) {
	st := api.DaemonStatus{CheckedAt: time.Now().UTC(), Started: d.startedAt()}
	if err := d.readiness(); err != nil {
		st.NotReady = reasons(err)
	} else {
		st.Ready = true
	}
	st.Handlers = d.handlerStates()
	var err error
	if st.Journal, err = api.JournalCounts(ctx, d.db); err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	recs, err := d.db.Actions(ctx)
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	st.Reconcile = d.reconcileState(recs)
	st.Watches = d.watchState()
	st.Actions = runningActions(recs)
	return st, nil
}

// startedAt is when the daemon started serving; zero before.
func (d *daemon) startedAt() time.Time {
	if t, ok := d.started.Load().(time.Time); ok {
		return t
	}
	return time.Time{}
}

// reasons splits a readiness error into one reason each.
func reasons(err error) []string {
	var out []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, reasons(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

// handlerStates are the active handlers in dispatch order with their
// readiness and own status, then the inactive ones in config order.
func (d *daemon) handlerStates() []api.HandlerState {
	var out []api.HandlerState
	for _, h := range d.disp.Registry().Active() {
		hs := api.HandlerState{Name: h.Name(), State: api.HandlerActive}
		if r, ok := h.(handlers.Readier); ok {
			hs.State = api.HandlerReady
			if err := r.Ready(); err != nil {
				hs.State, hs.Error = api.HandlerNotReady, err.Error()
			}
		}
		if g, ok := h.(interface{ Status() geoserver.JobsStatus }); ok {
			js := g.Status()
			hs.Detail = fmt.Sprintf("GeoServer jobs: %d pending, %d failed (%d since start)",
				len(js.Pending), len(js.Failed), js.FailedTotal)
		}
		out = append(out, hs)
	}
	for _, hc := range d.cfg.Handlers {
		if !hc.Active {
			out = append(out, api.HandlerState{Name: hc.Name, State: api.HandlerInactive})
		}
	}
	return out
}

// watchState is the monitor's inotify budget and degraded registrations.
func (d *daemon) watchState() api.WatchState {
	ms := d.mon.Stats()
	ws := api.WatchState{Watches: ms.Watches, MaxWatches: ms.MaxWatches, Overflows: ms.Overflows,
		LimitErrors: ms.WatchLimitErrors, Degraded: []api.DegradedWatch{}}
	for _, dg := range d.mon.Degraded() {
		msg := ""
		if dg.Err != nil {
			msg = dg.Err.Error()
		}
		ws.Degraded = append(ws.Degraded, api.DegradedWatch{Handler: dg.Handler, Path: dg.Path, Error: msg,
			Since: dg.Since.UTC(), Failures: dg.Failures})
	}
	return ws
}

// reconcileState counts the FileSystem reconciles since start (from its
// metrics) and finds, in recs, the last reconcile action that ended.
func (d *daemon) reconcileState(recs []actions.Record) api.ReconcileState {
	rs := api.ReconcileState{RunsOK: -1, RunsFailed: -1, Last: lastReconcile(recs)}
	if _, ok := d.disp.Registry().Lookup(filesystem.Name); !ok {
		return rs
	}
	rs.RunsOK, rs.RunsFailed = 0, 0 // none counted before the first one ends
	if fams, err := d.srv.Metrics().Gather(); err == nil {
		for _, f := range fams {
			if f.GetName() != "cowbird_reconcile_runs_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				n := int(m.GetCounter().GetValue())
				for _, l := range m.GetLabel() {
					if l.GetName() != "outcome" {
						continue
					}
					if l.GetValue() == "ok" {
						rs.RunsOK += n
					} else {
						rs.RunsFailed += n
					}
				}
			}
		}
	}
	return rs
}

// lastReconcile is the reconcile action of recs (handler.resync or
// permissions.reconcile, dry runs aside) that ended last, or nil.
func lastReconcile(recs []actions.Record) *api.LastReconcile {
	var last *api.LastReconcile
	for _, r := range recs {
		if !slices.Contains(reconcileTypes, r.Type) || !r.Status.Status.Terminal() || r.Status.CompletionTime == nil {
			continue
		}
		var in struct {
			Handler string `json:"handler"`
			DryRun  bool   `json:"dry_run"`
		}
		_ = json.Unmarshal(r.Input, &in) // validated against the type's schema when it ran
		if in.DryRun {
			continue
		}
		if last != nil && !r.Status.CompletionTime.After(last.Completed) {
			continue
		}
		last = reconcileOf(r, cmp.Or(in.Handler, filesystem.Name))
	}
	return last
}

// reconcileOf is the reconcile action r of handler.
func reconcileOf(r actions.Record, handler string) *api.LastReconcile {
	st := r.Status
	lr := &api.LastReconcile{ActionID: st.ActionID, Type: r.Type, Handler: handler, Label: st.Label,
		Status: st.Status, Started: st.StartTime.UTC(), Completed: st.CompletionTime.UTC()}
	if st.Status == actions.Failed {
		desc, _ := st.Details["description"].(string)
		lr.Error = cmp.Or(desc, st.DisplayStatus)
	}
	if _, ok := st.Details["links_created"]; ok {
		var f api.ReconcileFigures
		if raw, err := json.Marshal(st.Details); err == nil && json.Unmarshal(raw, &f) == nil {
			lr.Figures = &f
		}
	}
	return lr
}

// runningActions are the actions that have not ended, whoever started
// them, oldest first.
func runningActions(recs []actions.Record) []api.RunningAction {
	out := []api.RunningAction{}
	for _, r := range recs {
		st := r.Status
		if st.Status.Terminal() {
			continue
		}
		out = append(out, api.RunningAction{ActionID: st.ActionID, Type: r.Type, Label: st.Label, Status: st.Status,
			DisplayStatus: st.DisplayStatus, Creator: st.CreatorID, Started: st.StartTime.UTC()})
	}
	slices.SortFunc(out, func(a, b api.RunningAction) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ActionID, b.ActionID))
	})
	return out
}
