package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/handlers"
)

// internalCaller is the principal of the actions the daemon starts itself
// (PUT /handlers/{name}/resync, the periodic reconcile, hook runs).
var internalCaller = actions.Caller{ID: "cowbird:daemon"}

// internalSeq numbers the actions the daemon starts, for their request_id.
var internalSeq atomic.Uint64

// startTime is when the process started.
var startTime = time.Now()

// internalRequestID is a request_id unique to this process's run.
func internalRequestID() string {
	return fmt.Sprintf("cowbird-%d-%d", startTime.UnixNano(), internalSeq.Add(1))
}

// reconciler is a handler whose resync can be scoped to users and run dry
// (FileSystem).
type reconciler interface {
	handlers.Handler
	Reconcile(ctx context.Context, scope filesystem.Scope, opts filesystem.ReconcileOptions) (filesystem.Stats, error)
}

// lockOn is an action type's Lock: the key named field of its input has,
// with prefix.
func lockOn(prefix, field string) func(json.RawMessage) string {
	return func(in json.RawMessage) string {
		var m map[string]any
		_ = json.Unmarshal(in, &m)
		s, _ := m[field].(string)
		return prefix + s
	}
}

// actionTypes are the admin actions (handler.resync, user.resync,
// permissions.reconcile, events.replay).
func (d *daemon) actionTypes() []actions.Type {
	return []actions.Type{
		{
			Name:        "handler.resync",
			Description: "Bring everything a handler manages back to the desired state (FileSystem: incremental reconcile, optionally for some users, optionally as a dry run returning the diff).",
			InputSchema: json.RawMessage(`{"type": "object", "required": ["handler"], "additionalProperties": false,
				"properties": {"handler": {"type": "string", "minLength": 1},
					"users": {"type": "array", "items": {"type": "string", "minLength": 1}},
					"dry_run": {"type": "boolean"},
					"reuse_answers": {"type": "boolean", "description": "Reuse Magpie's answers of earlier runs for users without a permission event since (at most 1 h old); the periodic reconcile sets it."}}}`),
			Lock: lockOn("handler:", "handler"),
			Run:  d.runHandlerResync,
		},
		{
			Name:        "user.resync",
			Description: "Rebuild one user's workspace, notebooks symlink, WPS-output hardlinks and GeoServer workspace (idempotent user_created without hooks).",
			InputSchema: json.RawMessage(`{"type": "object", "required": ["user_name"], "additionalProperties": false,
				"properties": {"user_name": {"type": "string", "minLength": 1}}}`),
			Lock: lockOn("user:", "user_name"),
			Run:  d.runUserResync,
		},
		{
			Name:        "permissions.reconcile",
			Description: "Compare Magpie's secure-data-proxy permissions with the WPS-output files and hardlinks; report (dry_run) or fix the difference.",
			InputSchema: json.RawMessage(`{"type": "object", "additionalProperties": false,
				"properties": {"dry_run": {"type": "boolean"}}}`),
			Lock: func(json.RawMessage) string { return "handler:" + filesystem.Name },
			Run:  d.runPermissionsReconcile,
		},
		{
			Name:        "events.replay",
			Description: "Dispatch a journaled webhook event again to the handlers for which it failed.",
			InputSchema: json.RawMessage(`{"type": "object", "required": ["event_id"], "additionalProperties": false,
				"properties": {"event_id": {"type": "integer", "minimum": 1},
					"handlers": {"type": "array", "items": {"type": "string", "minLength": 1}}}}`),
			Run: d.runEventsReplay,
		},
	}
}

func (d *daemon) runHandlerResync(ctx context.Context, in json.RawMessage, p actions.Progress) (map[string]any, error) {
	var req struct {
		Handler      string   `json:"handler"`
		Users        []string `json:"users"`
		DryRun       bool     `json:"dry_run"`
		ReuseAnswers bool     `json:"reuse_answers"`
	}
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, err
	}
	h, ok := d.disp.Registry().Lookup(req.Handler)
	if !ok {
		return nil, &actions.Failure{Code: "UNKNOWN_HANDLER", Err: fmt.Errorf("no active handler %q", req.Handler)}
	}
	r, ok := h.(reconciler)
	if !ok {
		if req.DryRun || len(req.Users) > 0 {
			return nil, &actions.Failure{Code: "UNSUPPORTED", Err: fmt.Errorf("%s: users and dry_run apply to FileSystem only", req.Handler)}
		}
		p.Progress(ctx, 0, "Resyncing "+req.Handler, nil)
		return map[string]any{"handler": req.Handler}, d.disp.Resync(ctx, req.Handler)
	}
	scopes := []filesystem.Scope{{}}
	if len(req.Users) > 0 {
		scopes = scopes[:0]
		for _, u := range req.Users {
			scopes = append(scopes, filesystem.Scope{User: u})
		}
	}
	var total filesystem.Stats
	for i, sc := range scopes {
		p.Progress(ctx, 100*float64(i)/float64(len(scopes)), fmt.Sprintf("Reconciling %s (%d/%d)", sc, i+1, len(scopes)), nil)
		st, err := r.Reconcile(ctx, sc, filesystem.ReconcileOptions{DryRun: req.DryRun, ReuseAnswers: req.ReuseAnswers})
		total.Add(st)
		if err != nil {
			return total.Details(req.Handler, req.DryRun), err
		}
		p.Log(ctx, "RECONCILED", fmt.Sprintf("%s: %d links created, %d replaced, %d removed, %d modes fixed",
			sc, st.LinksCreated, st.LinksReplaced, st.LinksRemoved, st.ModesFixed))
	}
	return total.Details(req.Handler, req.DryRun), nil
}

// runUserResync submits user_created for the user through the dispatcher,
// as a webhook would be (same per-user lock, journaled, retried), to every
// handler that keeps state (not the Hooks handler's commands).
func (d *daemon) runUserResync(ctx context.Context, in json.RawMessage, p actions.Progress) (map[string]any, error) {
	var req struct {
		UserName string `json:"user_name"`
	}
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, err
	}
	keep := func(h handlers.Handler) bool {
		k, _ := Lookup(d.kinds, h.Name())
		return !k.RunsCommands
	}
	var names []string
	for _, h := range d.disp.Registry().Active() {
		if _, ok := h.(handlers.UserHandler); ok && keep(h) {
			names = append(names, h.Name())
		}
	}
	p.Progress(ctx, 0, "Rebuilding for "+req.UserName, nil)
	id, err := d.disp.SubmitTo(ctx, handlers.UserEvent{Action: handlers.Created, UserName: req.UserName}, keep)
	return map[string]any{"user_name": req.UserName, "handlers": names, "event_id": id}, err
}

func (d *daemon) runPermissionsReconcile(ctx context.Context, in json.RawMessage, p actions.Progress) (map[string]any, error) {
	var req struct {
		DryRun bool `json:"dry_run"`
	}
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, err
	}
	h, _ := d.disp.Registry().Lookup(filesystem.Name)
	r, ok := h.(reconciler)
	if !ok {
		return nil, &actions.Failure{Code: "UNSUPPORTED", Err: errors.New("the FileSystem handler is not active")}
	}
	p.Progress(ctx, 0, "Comparing Magpie permissions with the files", nil)
	st, err := r.Reconcile(ctx, filesystem.Scope{}, filesystem.ReconcileOptions{DryRun: req.DryRun})
	return st.Details(filesystem.Name, req.DryRun), err
}

func (d *daemon) runEventsReplay(ctx context.Context, in json.RawMessage, p actions.Progress) (map[string]any, error) {
	var req struct {
		EventID  uint64   `json:"event_id"`
		Handlers []string `json:"handlers"`
	}
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, err
	}
	rec, err := d.db.Event(ctx, req.EventID)
	if err != nil {
		return nil, &actions.Failure{Code: "UNKNOWN_EVENT", Err: err}
	}
	names := req.Handlers
	if len(names) == 0 {
		names = slices.Sorted(maps.Keys(rec.Failed))
	}
	if len(names) == 0 {
		return map[string]any{"event_id": rec.ID, "handlers": names}, nil
	}
	p.Progress(ctx, 0, "Replaying "+rec.Event.Name(), nil)
	return map[string]any{"event_id": rec.ID, "event": rec.Event.Name(), "handlers": names}, d.disp.Retry(ctx, rec, names)
}

// runAction runs an action as the daemon and waits until it ends.
func (d *daemon) runAction(ctx context.Context, label, typ string, body map[string]any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	st, _, err := d.actions.Run(ctx, internalCaller, typ, d.internalRequest(label, raw))
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

// startHookRun starts the hook.run action that relays one hook run.
func (d *daemon) startHookRun(ctx context.Context, label string, body json.RawMessage) error {
	_, _, err := d.actions.Run(ctx, internalCaller, "hook.run", d.internalRequest(label, body))
	return err
}

// internalRequest is the request of an action the daemon starts: the
// admins monitor and manage it.
func (d *daemon) internalRequest(label string, body json.RawMessage) actions.RunRequest {
	return actions.RunRequest{RequestID: internalRequestID(), Label: label, MonitorBy: d.admins, ManageBy: d.admins, Body: body}
}

// apiDispatcher is the dispatcher the API calls: PUT /handlers/{name}/resync
// runs a handler.resync action and waits for it, and a webhook's answer
// leaves out the failures of the handlers that run commands (Hooks).
type apiDispatcher struct {
	*handlers.Dispatcher
	d *daemon
}

// Resync implements api.Dispatcher.
func (a apiDispatcher) Resync(ctx context.Context, name string) error {
	return a.d.runAction(ctx, "PUT /handlers/"+name+"/resync", "handler.resync", map[string]any{"handler": name})
}

// Submit implements api.Dispatcher: it submits ev as the dispatcher does,
// then drops from the returned error the failures of handlers whose
// descriptor has RunsCommands. A refused or failed hook is that handler's
// failure only: the journal, the handler metrics, the hook.run action and
// the log line below record it, but the webhook is answered as the other
// handlers' work went, and Magpie's failure callback is not called for it.
func (a apiDispatcher) Submit(ctx context.Context, ev handlers.Event) (uint64, error) {
	id, err := a.Dispatcher.Submit(ctx, ev)
	if err == nil {
		return id, nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var kept []error
	for _, e := range errs {
		var he *handlers.HandlerError
		if errors.As(e, &he) {
			if k, _ := Lookup(a.d.kinds, he.Handler); k.RunsCommands {
				a.d.log.WithField("handler", he.Handler).WithField("event", ev.Name()).WithField("event_id", id).
					WithError(he.Err).Warn("handler failed; the webhook answer does not report it")
				continue
			}
		}
		kept = append(kept, e)
	}
	return id, errors.Join(kept...)
}
