package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/handlers"
)

// EventsType is the name under which Auth.RunnableBy lists who may read the
// event journal (GET /events); by default AdminGroup and every admin token.
const EventsType = "events.inspect"

// Journal is the event journal the events routes read; *store.DB
// implements it.
type Journal interface {
	// Events lists up to limit records with an ID greater than after, by ID.
	Events(ctx context.Context, after uint64, limit int) ([]handlers.Record, error)
	// EventsBefore lists up to limit records with an ID lower than before,
	// newest first; a zero before lists from the newest record.
	EventsBefore(ctx context.Context, before uint64, limit int) ([]handlers.Record, error)
	// FailedBefore is EventsBefore over the records failed for good.
	FailedBefore(ctx context.Context, before uint64, limit int) ([]handlers.Record, error)
	// Pending lists the records that still have pending handlers, by ID.
	Pending(ctx context.Context) ([]handlers.Record, error)
}

// Limits of GET /events.
const (
	defaultEventLimit = 20
	maxEventLimit     = 1000
)

// eventScanPage is the most records a listing reads per transaction (a
// variable for the tests).
var eventScanPage = 500

// Answers of the events routes ({"code", "detail"}, as /state/snapshot).
const (
	detailUnauthorized = "UnauthorizedRequest: missing or invalid credentials."
	detailForbidden    = "Forbidden."
	detailAuthDown     = "ServiceUnavailable: Magpie cannot tell who the caller is."
	detailBadEventID   = "Invalid event ID: must be a positive integer."
	detailNoSuchEvent  = "Event not found."
	detailEventFilter  = "Invalid query: status must be failed, pending or done; limit an integer from 1 to 1000; marker an event ID."
)

// secretMask replaces the secret part of a value, as hook output shows it.
const secretMask = "********"

// eventRoutes is GET /events and GET /events/{id} when the server has a
// journal.
func (s *Server) eventRoutes() []route {
	if s.opts.Journal == nil {
		return nil
	}
	errs := map[int]string{http.StatusUnauthorized: detailUnauthorized, http.StatusForbidden: detailForbidden,
		http.StatusServiceUnavailable: detailAuthDown, http.StatusInternalServerError: detailServerError}
	return []route{
		{method: http.MethodGet, path: actions.EventsPath, name: "events_list", tag: tagAPI, plain: true,
			summary: "Journaled events, newest first (?status=failed|pending|done&user=&limit=&marker=), for admins; secrets masked.",
			responses: with(with(errs, http.StatusUnprocessableEntity, detailEventFilter), http.StatusOK,
				"Page {limit, has_next_page, marker, events}."),
			handle: s.getEvents},
		{method: http.MethodGet, path: actions.EventsPath + "/:id", name: "event_detail", tag: tagAPI, plain: true,
			summary: "One journaled event: payload (secrets masked), per-handler outcome, and the events.replay action for its failed handlers.",
			responses: with(with(with(errs, http.StatusBadRequest, detailBadEventID), http.StatusNotFound, detailNoSuchEvent),
				http.StatusOK, "The event."),
			handle: s.getEvent},
	}
}

// plainAnswer writes the {"code", "detail"} answer of an admin route.
func plainAnswer(c echo.Context, code int, detail string) error {
	return c.JSON(code, map[string]any{"code": code, "detail": detail})
}

// admitEvents answers 401, 403 or 503 unless the request's caller may read
// the journal; it returns whether the caller may.
func (s *Server) admitEvents(c echo.Context) (bool, error) {
	caller, err := s.auth.caller(c.Request())
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return false, plainAnswer(c, http.StatusUnauthorized, detailUnauthorized)
	case err != nil: // Magpie could not be asked: deny, never anonymous
		s.opts.Log.WithError(err).Warn("events: authentication through Magpie failed")
		return false, plainAnswer(c, http.StatusServiceUnavailable, detailAuthDown)
	case !s.auth.mayRun(caller, EventsType):
		return false, plainAnswer(c, http.StatusForbidden, detailForbidden)
	}
	return true, nil
}

// eventFilter is the parsed query of GET /events.
type eventFilter struct {
	status, user string
	limit        int
	before       uint64 // 0: no marker
}

// parseEventFilter reads the query of GET /events.
func parseEventFilter(q url.Values) (eventFilter, bool) {
	f := eventFilter{status: q.Get("status"), user: q.Get("user"), limit: defaultEventLimit}
	switch f.status {
	case "", actions.EventFailed, actions.EventPending, actions.EventDone:
	default:
		return f, false
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxEventLimit {
			return f, false
		}
		f.limit = n
	}
	if v := q.Get("marker"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return f, false
		}
		f.before = n
	}
	return f, true
}

// match reports whether rec passes f (the marker aside).
func (f eventFilter) match(rec handlers.Record) bool {
	if f.user != "" && eventUser(rec.Event) != f.user {
		return false
	}
	switch f.status {
	case actions.EventFailed:
		return len(finalFailures(rec)) > 0
	case actions.EventPending:
		return len(rec.Pending) > 0
	case actions.EventDone:
		return len(rec.Pending) == 0 && len(finalFailures(rec)) == 0
	}
	return true
}

// getEvents answers a page of the journal, newest first.
func (s *Server) getEvents(c echo.Context) error {
	if ok, err := s.admitEvents(c); !ok {
		return err
	}
	f, ok := parseEventFilter(c.QueryParams())
	if !ok {
		return plainAnswer(c, http.StatusUnprocessableEntity, detailEventFilter)
	}
	recs, err := s.findEvents(c.Request().Context(), f)
	if err != nil {
		return serverError(exceptionName(err), err)
	}
	page := actions.EventPage{Limit: f.limit, Events: []actions.JournalEvent{}}
	if len(recs) > f.limit {
		page.HasNextPage, recs = true, recs[:f.limit]
	}
	replay := s.replayable()
	for _, rec := range recs {
		page.Events = append(page.Events, eventView(rec, replay))
	}
	if len(recs) > 0 {
		page.Marker = strconv.FormatUint(recs[len(recs)-1].ID, 10)
	}
	return c.JSON(http.StatusOK, page)
}

// findEvents returns up to f.limit+1 records that match f, newest first
// (one past f.limit tells that a next page exists). It reads newest first
// from the marker and stops once it has them, so that its cost grows with
// the page and the records skipped by the filter, not with the journal:
// pending records come from the pending index, failed ones from the failed
// index, the others from the journal itself.
func (s *Server) findEvents(ctx context.Context, f eventFilter) ([]handlers.Record, error) {
	keep := f.limit + 1
	if f.status == actions.EventPending {
		return s.findPending(ctx, f, keep)
	}
	list := s.opts.Journal.EventsBefore
	if f.status == actions.EventFailed {
		list = s.opts.Journal.FailedBefore
	}
	var found []handlers.Record
	// The first read is the size of the page; a filter that skips records
	// makes the next ones larger, up to eventScanPage.
	for before, n := f.before, min(keep, eventScanPage); ; n = min(2*n, eventScanPage) {
		recs, err := list(ctx, before, n)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if f.match(rec) {
				if found = append(found, rec); len(found) == keep {
					return found, nil
				}
			}
			before = rec.ID
		}
		if len(recs) < n { // the start of the journal
			return found, nil
		}
	}
}

// findPending returns up to keep pending records that match f, newest
// first, from the pending index (listed by ID).
func (s *Server) findPending(ctx context.Context, f eventFilter, keep int) ([]handlers.Record, error) {
	recs, err := s.opts.Journal.Pending(ctx)
	if err != nil {
		return nil, err
	}
	var found []handlers.Record
	for i := len(recs) - 1; i >= 0 && len(found) < keep; i-- {
		if rec := recs[i]; (f.before == 0 || rec.ID < f.before) && f.match(rec) {
			found = append(found, rec)
		}
	}
	return found, nil
}

// getEvent answers one journaled event.
func (s *Server) getEvent(c echo.Context) error {
	if ok, err := s.admitEvents(c); !ok {
		return err
	}
	id, err := strconv.ParseUint(c.Param("id"), 10, 64)
	if err != nil || id == 0 {
		return plainAnswer(c, http.StatusBadRequest, detailBadEventID)
	}
	// The first record after id-1 is id itself when id exists.
	recs, err := s.opts.Journal.Events(c.Request().Context(), id-1, 1)
	if err != nil {
		return serverError(exceptionName(err), err)
	}
	if len(recs) == 0 || recs[0].ID != id {
		return plainAnswer(c, http.StatusNotFound, detailNoSuchEvent)
	}
	return c.JSON(http.StatusOK, eventView(recs[0], s.replayable()))
}

// replayable reports whether the daemon runs events.replay actions.
func (s *Server) replayable() bool {
	if s.opts.Actions == nil {
		return false
	}
	_, err := s.opts.Actions.Introspect(actions.ReplayType)
	return err == nil
}

// eventUser is the Magpie user ev is about, or "".
func eventUser(ev handlers.Event) string {
	switch ev := ev.(type) {
	case handlers.UserEvent:
		return ev.UserName
	case handlers.PermissionEvent:
		return ev.User
	}
	return ""
}

// finalFailures lists, by name, the handlers that failed rec for good:
// those with an error that are no longer pending.
func finalFailures(rec handlers.Record) []string {
	var names []string
	for _, h := range slices.Sorted(maps.Keys(rec.Failed)) {
		if !slices.Contains(rec.Pending, h) {
			names = append(names, h)
		}
	}
	return names
}

// eventView is rec as the events routes show it, secrets masked; with
// replay, it names the events.replay action for its failed handlers.
func eventView(rec handlers.Record, replay bool) actions.JournalEvent {
	mask := masker(rec.Event)
	v := actions.JournalEvent{
		ID: rec.ID, Received: rec.Received.UTC(), Source: string(rec.Event.Kind()),
		Event: rec.Event.Name(), Key: mask.Replace(rec.Event.Key()), User: eventUser(rec.Event),
		Attempts: rec.Attempts, Payload: payload(rec.Event), Handlers: []actions.HandlerOutcome{},
	}
	var retryAt *time.Time
	if len(rec.Pending) > 0 && !rec.RetryAt.IsZero() {
		t := rec.RetryAt.UTC()
		retryAt = &t
		v.RetryAt = retryAt
	}
	for _, h := range rec.Pending {
		v.Handlers = append(v.Handlers, actions.HandlerOutcome{Handler: h, Outcome: actions.EventPending,
			Error: mask.Replace(rec.Failed[h]), RetryAt: retryAt})
	}
	failed := finalFailures(rec)
	for _, h := range failed {
		v.Handlers = append(v.Handlers, actions.HandlerOutcome{Handler: h, Outcome: actions.EventFailed,
			Error: mask.Replace(rec.Failed[h])})
	}
	switch {
	case len(failed) > 0:
		v.Status = actions.EventFailed
		if replay {
			v.Replay = &actions.ReplayHint{Type: actions.ReplayType,
				Body: actions.ReplayBody{EventID: rec.ID, Handlers: failed}}
		}
	case len(rec.Pending) > 0:
		v.Status = actions.EventPending
	default:
		v.Status = actions.EventDone
	}
	return v
}

// payload is ev's journaled fields, callback_url masked.
func payload(ev handlers.Event) map[string]any {
	m := map[string]any{}
	data, err := json.Marshal(ev)
	if err != nil {
		return m
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // resource_id stays an exact integer
	if dec.Decode(&m) != nil {
		return map[string]any{}
	}
	if u, ok := ev.(handlers.UserEvent); ok && u.CallbackURL != "" {
		m["callback_url"] = maskURL(u.CallbackURL)
	}
	return m
}

// maskURL keeps the scheme and host of a URL whose path and query hold a
// token (Magpie's callback_url), and masks the rest.
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return secretMask
	}
	return u.Scheme + "://" + u.Host + "/" + secretMask
}

// masker masks ev's secrets (the callback URL, its path and its query) in
// texts about ev, such as handler errors.
func masker(ev handlers.Event) *strings.Replacer {
	u, ok := ev.(handlers.UserEvent)
	if !ok || u.CallbackURL == "" {
		return strings.NewReplacer()
	}
	pairs := []string{u.CallbackURL, maskURL(u.CallbackURL)}
	if p, err := url.Parse(u.CallbackURL); err == nil {
		// Pieces short enough to be common words are left alone.
		for _, piece := range []string{p.RequestURI(), p.EscapedPath(), p.Path, p.RawQuery, p.User.String()} {
			if len(piece) >= 8 {
				pairs = append(pairs, piece, secretMask)
			}
		}
	}
	return strings.NewReplacer(pairs...)
}
