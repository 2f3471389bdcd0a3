package handlers

import (
	"context"
	"time"
)

// Journal durably records webhook events and what each handler did with
// them, so that a crash or a transient failure is repaired by replaying only
// what is unfinished. store.DB implements it.
type Journal interface {
	// Append records ev as received now, to be run by handlers (in order),
	// and assigns it an increasing ID.
	Append(ctx context.Context, ev Event, handlers []string) (Record, error)
	// Done records that handler finished the event: it is no longer pending.
	Done(ctx context.Context, id uint64, handler string) error
	// Fail records cause for handler. A non-zero retryAt keeps the handler
	// pending and schedules the next attempt; a zero one ends it as failed.
	Fail(ctx context.Context, id uint64, handler, cause string, retryAt time.Time) error
	// Pending lists the records that still have pending handlers, by ID.
	Pending(ctx context.Context) ([]Record, error)
}

// Record is one journaled event and its per-handler state.
type Record struct {
	ID       uint64
	Received time.Time
	Event    Event
	// Pending are the handlers still to run, in dispatch order.
	Pending []string
	// Failed maps a handler to its last error; the failure is final when
	// the handler is no longer pending.
	Failed map[string]string
	// Attempts counts the failed attempts so far.
	Attempts int
	// RetryAt is when the pending handlers are due again (zero: now).
	RetryAt time.Time
}

// JournalCounts counts a journal's records by state, as GET /events
// classifies them (store.DB.Counts).
type JournalCounts struct {
	// Events is the number of records the journal holds.
	Events int
	// Pending is the number of records with a handler still to run.
	// OldestPending is the earliest Received among them; NextRetry the
	// earliest RetryAt, zero when one of them has none (due now). Both are
	// zero when nothing is pending.
	Pending       int
	OldestPending time.Time
	NextRetry     time.Time
	// Failed is the number of records with a final failure (a handler with
	// an error that is no longer pending); LastFailed is the highest of
	// their IDs (0: none).
	Failed     int
	LastFailed uint64
}
