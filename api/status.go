package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/handlers"
)

// StatusType is the name under which Auth.RunnableBy lists who may call
// GET /status; by default AdminGroup and every admin token.
const StatusType = "status"

// StatusPath is the route of the daemon's status (cowbird status).
const StatusPath = "/status"

// DaemonStatus is the answer of GET /status: what the daemon knows of its
// own state, read when asked. The daemon (package app) fills it; the server
// sets Version and APIVersion.
type DaemonStatus struct {
	// Version is the daemon's build version, APIVersion the Cowbird API
	// version it serves (as GET /version).
	Version    string `json:"version"`
	APIVersion string `json:"api_version"`
	// Started is when the daemon started serving (zero while starting).
	Started time.Time `json:"started,omitzero"`
	// CheckedAt is when the status was read.
	CheckedAt time.Time `json:"checked_at"`
	// Ready is what GET /readyz answers; NotReady lists why not, one
	// reason each (a handler's reason starts with its name).
	Ready    bool     `json:"ready"`
	NotReady []string `json:"not_ready"`
	// Handlers are the configured handlers: the active ones in dispatch
	// order, then the inactive ones.
	Handlers []HandlerState `json:"handlers"`
	// Journal is the event journal's backlog and failures.
	Journal JournalState `json:"journal"`
	// Reconcile is the reconciles' outcome since start and the last
	// reconcile run as an action.
	Reconcile ReconcileState `json:"reconcile"`
	// Watches is the file monitor's inotify budget and degraded watches.
	Watches WatchState `json:"watches"`
	// Actions are the actions running or waiting (ACTIVE, INACTIVE),
	// oldest first, whoever started them.
	Actions []RunningAction `json:"actions"`
}

// Handler states of HandlerState.State.
const (
	// HandlerReady: the handler's readiness check passes (Magpie accepted
	// the sign-in).
	HandlerReady = "ready"
	// HandlerNotReady: its readiness check fails; Error says why.
	HandlerNotReady = "not ready"
	// HandlerActive: active, and it has no readiness check.
	HandlerActive = "active"
	// HandlerInactive: configured with active: false.
	HandlerInactive = "inactive"
)

// HandlerState is one configured handler.
type HandlerState struct {
	Name string `json:"name"`
	// State is ready, not ready, active (no readiness check) or inactive.
	State string `json:"state"`
	// Error is why a handler is not ready.
	Error string `json:"error,omitempty"`
	// Detail is what the handler reports of its own work (the Geoserver
	// handler: its GeoServer jobs).
	Detail string `json:"detail,omitempty"`
}

// JournalState counts the journaled webhook events as GET /events
// classifies them.
type JournalState struct {
	// Events is the number of events the journal holds (within
	// journal_retention and journal_max_events).
	Events int `json:"events"`
	// Pending counts the events with a handler still to run; OldestPending
	// is when the oldest of them was received, NextRetry when the next
	// waiting handler runs again (the time of the reading when one is due
	// now; absent when nothing is pending).
	Pending       int        `json:"pending"`
	OldestPending *time.Time `json:"oldest_pending,omitempty"`
	NextRetry     *time.Time `json:"next_retry,omitempty"`
	// Failed counts the events with a handler that failed for good;
	// LastFailed is the newest one's ID (0: none).
	Failed     int    `json:"failed"`
	LastFailed uint64 `json:"last_failed,omitempty"`
}

// ReconcileState is what the reconciles did.
type ReconcileState struct {
	// RunsOK and RunsFailed count the FileSystem reconciles since start
	// (start-up, overflow, resync, periodic: cowbird_reconcile_runs_total);
	// both -1 when the FileSystem handler is not active.
	RunsOK     int `json:"runs_ok"`
	RunsFailed int `json:"runs_failed"`
	// Last is the reconcile action (handler.resync or
	// permissions.reconcile, dry runs excepted) that ended last; nil when
	// none is kept.
	Last *LastReconcile `json:"last"`
}

// LastReconcile is a finished reconcile action and its figures.
type LastReconcile struct {
	ActionID string `json:"action_id"`
	Type     string `json:"type"`
	Handler  string `json:"handler"`
	Label    string `json:"label,omitempty"`
	// Status is SUCCEEDED or FAILED; Error is the failure's description.
	Status actions.State `json:"status"`
	Error  string        `json:"error,omitempty"`
	// Started and Completed are the action's times.
	Started   time.Time `json:"started"`
	Completed time.Time `json:"completed"`
	// Figures are the changes a FileSystem reconcile counted (nil for the
	// other handlers' resyncs).
	Figures *ReconcileFigures `json:"figures,omitempty"`
}

// ReconcileFigures are the counts of a FileSystem reconcile (its action's
// details).
type ReconcileFigures struct {
	Sources       int     `json:"sources"`
	LinksCreated  int     `json:"links_created"`
	LinksReplaced int     `json:"links_replaced"`
	LinksRemoved  int     `json:"links_removed"`
	ModesFixed    int     `json:"modes_fixed"`
	DirsCreated   int     `json:"dirs_created"`
	DirsRemoved   int     `json:"dirs_removed"`
	Symlinks      int     `json:"symlinks"`
	Skipped       int     `json:"skipped"`
	Failed        int     `json:"failed"`
	Seconds       float64 `json:"seconds"`
}

// WatchState is the file monitor's inotify budget.
type WatchState struct {
	// Watches are the inotify watches in use; MaxWatches is
	// fs.inotify.max_user_watches read at start (0: unknown), a per-user
	// limit shared with the host's other processes.
	Watches    int `json:"watches"`
	MaxWatches int `json:"max_watches"`
	// Overflows counts inotify queue overflows since start, LimitErrors
	// the watches refused because the limit was reached.
	Overflows   uint64 `json:"overflows"`
	LimitErrors uint64 `json:"limit_errors"`
	// Degraded lists the registrations not fully watched now.
	Degraded []DegradedWatch `json:"degraded"`
}

// DegradedWatch is a registered directory the monitor cannot fully watch
// now; it retries every 30 s.
type DegradedWatch struct {
	Handler  string    `json:"handler"`
	Path     string    `json:"path"`
	Error    string    `json:"error"`
	Since    time.Time `json:"since"`
	Failures int       `json:"failures"`
}

// RunningAction is an action that has not ended.
type RunningAction struct {
	ActionID string        `json:"action_id"`
	Type     string        `json:"type"`
	Label    string        `json:"label,omitempty"`
	Status   actions.State `json:"status"`
	// DisplayStatus is its progress text (or WAITING_FOR_LOCK's).
	DisplayStatus string    `json:"display_status,omitempty"`
	Creator       string    `json:"creator"`
	Started       time.Time `json:"started"`
}

// detailStatusDown answers GET /status when the status cannot be read.
const detailStatusDown = "The daemon's status could not be read."

// statusRoutes is GET /status when the server has a status source.
func (s *Server) statusRoutes() []route {
	if s.opts.Status == nil {
		return nil
	}
	return []route{{method: http.MethodGet, path: StatusPath, name: "status", tag: tagAPI, plain: true,
		summary: "The daemon's state for admins (cowbird status): version, readiness and why not, handlers, journal " +
			"backlog and failures, reconciles, inotify watches, running actions.",
		responses: map[int]string{http.StatusOK: "The status: {version, api_version, started, checked_at, ready, not_ready, " +
			"handlers, journal, reconcile, watches, actions}.",
			http.StatusUnauthorized: detailUnauthorized, http.StatusForbidden: detailForbidden,
			http.StatusServiceUnavailable: detailAuthDown, http.StatusInternalServerError: detailStatusDown},
		handle: s.getStatus}}
}

// getStatus answers an admin's GET /status.
func (s *Server) getStatus(c echo.Context) error {
	caller, err := s.auth.caller(c.Request())
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return plainAnswer(c, http.StatusUnauthorized, detailUnauthorized)
	case err != nil: // Magpie could not be asked: deny, never anonymous
		s.opts.Log.WithError(err).Warn("status: authentication through Magpie failed")
		return plainAnswer(c, http.StatusServiceUnavailable, detailAuthDown)
	case !s.auth.mayRun(caller, StatusType):
		return plainAnswer(c, http.StatusForbidden, detailForbidden)
	}
	st, err := s.opts.Status(c.Request().Context())
	if err != nil {
		s.opts.Log.WithError(err).Error("status")
		return plainAnswer(c, http.StatusInternalServerError, detailStatusDown)
	}
	st.Version, st.APIVersion = s.opts.DaemonVersion, s.opts.Version
	if st.NotReady == nil {
		st.NotReady = []string{}
	}
	if st.Handlers == nil {
		st.Handlers = []HandlerState{}
	}
	if st.Watches.Degraded == nil {
		st.Watches.Degraded = []DegradedWatch{}
	}
	if st.Actions == nil {
		st.Actions = []RunningAction{}
	}
	return c.JSON(http.StatusOK, st)
}

// JournalCounter counts the journal's records by state from its indexes;
// *store.DB is one.
type JournalCounter interface {
	Counts(ctx context.Context) (handlers.JournalCounts, error)
}

// JournalCounts counts the journal's events as GET /events?status=
// classifies them, from j's indexes: its cost grows with the pending and
// failed events, not with the journal.
func JournalCounts(ctx context.Context, j JournalCounter) (JournalState, error) {
	c, err := j.Counts(ctx)
	if err != nil {
		return JournalState{}, err
	}
	st := JournalState{Events: c.Events, Pending: c.Pending, Failed: c.Failed, LastFailed: c.LastFailed}
	if c.Pending > 0 {
		oldest := c.OldestPending.UTC()
		retry := c.NextRetry.UTC()
		if now := time.Now().UTC(); retry.Before(now) { // zero or past: due now
			retry = now
		}
		st.OldestPending, st.NextRetry = &oldest, &retry
	}
	return st, nil
}
