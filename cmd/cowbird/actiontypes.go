package main

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
	"github.com/cowbird-go/cowbird/hooks"
)

// internalCaller is the principal of the actions the daemon starts itself
// (PUT /handlers/{name}/resync, the periodic reconcile).
var internalCaller = actions.Caller{ID: "cowbird:daemon"}

// internalSeq numbers the actions the daemon starts, for their request_id.
var internalSeq atomic.Uint64

// internalRequestID is a request_id unique to this process's run.
func internalRequestID() string {
	return fmt.Sprintf("cowbird-%d-%d", startTime.UnixNano(), internalSeq.Add(1))
}

// startTime is when the process started.
var startTime = time.Now()

// maxChanges bounds the changes listed in a dry run's details.
const maxChanges = 1000

// actionTypes are the admin actions of spec actions_sessions.md §D1.
func (d *daemon) actionTypes() []actions.Type {
	return []actions.Type{
		{
			Name:        "handler.resync",
			Description: "Bring everything a handler manages back to the desired state (FileSystem: incremental reconcile, optionally for some users, optionally as a dry run returning the diff).",
			InputSchema: json.RawMessage(`{"type": "object", "required": ["handler"], "additionalProperties": false,
				"properties": {"handler": {"type": "string", "minLength": 1},
					"users": {"type": "array", "items": {"type": "string", "minLength": 1}},
					"dry_run": {"type": "boolean"}}}`),
			Lock: func(in json.RawMessage) string {
				var r struct{ Handler string }
				_ = json.Unmarshal(in, &r)
				return "handler:" + r.Handler
			},
			Run: d.runHandlerResync,
		},
		{
			Name:        "user.resync",
			Description: "Rebuild one user's workspace, notebooks symlink, WPS-output hardlinks and GeoServer workspace (idempotent user_created without hooks).",
			InputSchema: json.RawMessage(`{"type": "object", "required": ["user_name"], "additionalProperties": false,
				"properties": {"user_name": {"type": "string", "minLength": 1}}}`),
			Lock: func(in json.RawMessage) string {
				var r struct {
					UserName string `json:"user_name"`
				}
				_ = json.Unmarshal(in, &r)
				return "user:" + r.UserName
			},
			Run: d.runUserResync,
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
		Handler string   `json:"handler"`
		Users   []string `json:"users"`
		DryRun  bool     `json:"dry_run"`
	}
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, err
	}
	if _, ok := d.disp.Registry().Lookup(req.Handler); !ok {
		return nil, &actions.Failure{Code: "UNKNOWN_HANDLER", Err: fmt.Errorf("no active handler %q", req.Handler)}
	}
	if req.Handler != filesystem.Name || d.fs == nil {
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
		what := "everything"
		if sc.User != "" {
			what = "user " + sc.User
		}
		p.Progress(ctx, 100*float64(i)/float64(len(scopes)), fmt.Sprintf("Reconciling %s (%d/%d)", what, i+1, len(scopes)), nil)
		st, err := d.reconcile(ctx, sc, req.DryRun)
		addStats(&total, st)
		if err != nil {
			return statsDetails(req.Handler, total, req.DryRun), err
		}
		p.Log(ctx, "RECONCILED", fmt.Sprintf("%s: %d links created, %d replaced, %d removed, %d modes fixed",
			what, st.LinksCreated, st.LinksReplaced, st.LinksRemoved, st.ModesFixed))
	}
	return statsDetails(req.Handler, total, req.DryRun), nil
}

// reconcile runs the FileSystem reconcile and exports its figures.
func (d *daemon) reconcile(ctx context.Context, sc filesystem.Scope, dryRun bool) (filesystem.Stats, error) {
	st, err := d.fs.Reconcile(ctx, sc, filesystem.ReconcileOptions{DryRun: dryRun})
	if !dryRun {
		d.recon.observe(st, err)
	}
	return st, err
}

func (d *daemon) runUserResync(ctx context.Context, in json.RawMessage, p actions.Progress) (map[string]any, error) {
	var req struct {
		UserName string `json:"user_name"`
	}
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, err
	}
	ev := handlers.UserEvent{Action: handlers.Created, UserName: req.UserName}
	var done []string
	var errs []error
	for _, h := range d.disp.Registry().Active() {
		uh, ok := h.(handlers.UserHandler)
		if !ok || h.Name() == hooks.Name { // hooks are operator scripts, not state to rebuild
			continue
		}
		p.Progress(ctx, 0, "Rebuilding for "+h.Name(), nil)
		if err := uh.UserCreated(ctx, ev); err != nil {
			errs = append(errs, &handlers.HandlerError{Handler: h.Name(), Err: err})
			continue
		}
		done = append(done, h.Name())
	}
	return map[string]any{"user_name": req.UserName, "handlers": done}, errors.Join(errs...)
}

func (d *daemon) runPermissionsReconcile(ctx context.Context, in json.RawMessage, p actions.Progress) (map[string]any, error) {
	var req struct {
		DryRun bool `json:"dry_run"`
	}
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, err
	}
	if d.fs == nil {
		return nil, &actions.Failure{Code: "UNSUPPORTED", Err: errors.New("the FileSystem handler is not active")}
	}
	p.Progress(ctx, 0, "Comparing Magpie permissions with the files", nil)
	st, err := d.reconcile(ctx, filesystem.Scope{}, req.DryRun)
	return statsDetails(filesystem.Name, st, req.DryRun), err
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

func addStats(total *filesystem.Stats, st filesystem.Stats) {
	total.Sources += st.Sources
	total.LinksCreated += st.LinksCreated
	total.LinksReplaced += st.LinksReplaced
	total.LinksRemoved += st.LinksRemoved
	total.ModesFixed += st.ModesFixed
	total.DirsCreated += st.DirsCreated
	total.DirsRemoved += st.DirsRemoved
	total.Symlinks += st.Symlinks
	total.Skipped += st.Skipped
	total.Failed += st.Failed
	total.Duration += st.Duration
	total.Changes = append(total.Changes, st.Changes...)
}

// statsDetails is a reconcile's figures as action details; a dry run lists
// its changes (the diff it would apply), at most maxChanges of them.
func statsDetails(handler string, st filesystem.Stats, dryRun bool) map[string]any {
	details := map[string]any{
		"handler": handler, "dry_run": dryRun, "sources": st.Sources,
		"links_created": st.LinksCreated, "links_replaced": st.LinksReplaced, "links_removed": st.LinksRemoved,
		"modes_fixed": st.ModesFixed, "dirs_created": st.DirsCreated, "dirs_removed": st.DirsRemoved,
		"symlinks": st.Symlinks, "skipped": st.Skipped, "failed": st.Failed, "seconds": st.Duration.Seconds(),
	}
	if dryRun {
		diff := st.Changes
		if len(diff) > maxChanges {
			diff = diff[:maxChanges]
			details["diff_truncated"] = true
		}
		details["diff"] = diff
	}
	return details
}
