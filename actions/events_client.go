package actions

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// EventsPath is the daemon's admin route over its event journal: GET
// EventsPath lists journaled events, GET EventsPath/{id} shows one
// (api.Server serves both).
const EventsPath = "/events"

// ReplayType is the action type that dispatches a journaled event again.
const ReplayType = "events.replay"

// The overall state of a journaled event (JournalEvent.Status) and of one
// handler's work on it (HandlerOutcome.Outcome).
const (
	// EventFailed: a handler failed for good (others may be pending).
	EventFailed = "failed"
	// EventPending: a handler is still to run, at RetryAt or now, and none
	// failed for good.
	EventPending = "pending"
	// EventDone: nothing is pending and no handler failed.
	EventDone = "done"
)

// JournalEvent is one journaled event as the events routes show it, its
// secrets (the token of callback_url) masked.
type JournalEvent struct {
	ID uint64 `json:"id"`
	// Received is when the event was journaled (UTC).
	Received time.Time `json:"received"`
	// Source is the kind of event: "user" or "permission" (a Magpie
	// webhook, or a user.resync action for user_created), "file".
	Source string `json:"source"`
	// Event is the original's event name, e.g. "user_created".
	Event string `json:"event"`
	// Key groups the events that apply in order, e.g. "user:alice".
	Key string `json:"key"`
	// User is the Magpie user the event is about ("" for a group
	// permission or a file event).
	User string `json:"user,omitempty"`
	// Status is EventFailed, EventPending or EventDone, in that order of
	// precedence.
	Status string `json:"status"`
	// Attempts counts the failed handler calls so far.
	Attempts int `json:"attempts"`
	// RetryAt is when the pending handlers run again; nil when none is
	// pending or when they are due now.
	RetryAt *time.Time `json:"retry_at,omitempty"`
	// Payload is the journaled event, secrets masked.
	Payload map[string]any `json:"payload"`
	// Handlers are the handlers the journal keeps a state for: the pending
	// ones (in dispatch order), then those that failed (by name). The
	// journal does not list the handlers that succeeded the first time.
	Handlers []HandlerOutcome `json:"handlers"`
	// Replay is the events.replay action that runs the failed handlers
	// again; nil when none failed or the daemon has no such action.
	Replay *ReplayHint `json:"replay,omitempty"`
}

// HandlerOutcome is what one handler did with a journaled event.
type HandlerOutcome struct {
	Handler string `json:"handler"`
	// Outcome is EventPending or EventFailed.
	Outcome string `json:"outcome"`
	// Error is the handler's last error (masked): the final one when
	// failed, the last transient one when pending.
	Error string `json:"error,omitempty"`
	// RetryAt is when a pending handler runs again (nil: now).
	RetryAt *time.Time `json:"retry_at,omitempty"`
}

// ReplayHint is the action that replays an event's failed handlers.
type ReplayHint struct {
	// Type is ReplayType.
	Type string `json:"type"`
	// Body is the action's input.
	Body ReplayBody `json:"body"`
}

// ReplayBody is the input of an events.replay action.
type ReplayBody struct {
	EventID  uint64   `json:"event_id"`
	Handlers []string `json:"handlers,omitempty"`
}

// EventPage is one page of GET /events: events newest first.
type EventPage struct {
	// Limit is the page size applied.
	Limit int `json:"limit"`
	// HasNextPage says that older events match too: ask again with Marker.
	HasNextPage bool `json:"has_next_page"`
	// Marker is the ID of the last (oldest) event listed ("" when none).
	Marker string `json:"marker"`
	// Events are the matching events, newest first.
	Events []JournalEvent `json:"events"`
}

// EventFilter selects the events of GET /events.
type EventFilter struct {
	// Status keeps the events with a handler failed for good
	// (EventFailed), with a pending handler (EventPending), or that are
	// done (EventDone); "" keeps all.
	Status string
	// User keeps the events about this Magpie user.
	User string
	// Limit bounds the page (0: the daemon's default).
	Limit int
	// Marker continues a listing: only events older than the event with
	// this ID ("": from the newest).
	Marker string
}

// Events returns a page of the daemon's journaled events (GET /events); it
// needs an admin's credentials.
func (c *Client) Events(ctx context.Context, f EventFilter) (EventPage, error) {
	q := url.Values{}
	if f.Status != "" {
		q.Set("status", f.Status)
	}
	if f.User != "" {
		q.Set("user", f.User)
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Marker != "" {
		q.Set("marker", f.Marker)
	}
	p := EventsPath
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var page EventPage
	err := c.do(ctx, http.MethodGet, p, nil, &page)
	return page, err
}

// Event returns journaled event id (GET /events/{id}); an unknown ID is an
// ErrNotFound. It needs an admin's credentials.
func (c *Client) Event(ctx context.Context, id uint64) (JournalEvent, error) {
	if id == 0 {
		return JournalEvent{}, &ArgumentError{fmt.Errorf("invalid event ID 0")}
	}
	var ev JournalEvent
	err := c.do(ctx, http.MethodGet, EventsPath+"/"+strconv.FormatUint(id, 10), nil, &ev)
	return ev, err
}
