package actions_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/store"
)

// TestClientEvents: Events and Event read the daemon's journal routes with
// the filter in the query; an unknown event is ErrNotFound, a missing token
// an APIError 401, event 0 an ArgumentError.
func TestClientEvents(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := t.Context()
	var recs []handlers.Record
	for _, name := range []string{"alice", "bob", "carol"} {
		rec, err := db.Append(ctx, handlers.UserEvent{Action: handlers.Created, UserName: name}, []string{"FileSystem"})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if err := db.Fail(ctx, recs[1].ID, "FileSystem", "disk full", time.Time{}); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(api.New(api.Options{Journal: db,
		Auth: api.Auth{AdminTokens: map[string]string{"admin": clientToken}}}).Handler())
	t.Cleanup(ts.Close)
	c := &actions.Client{URL: ts.URL + "/", Token: clientToken, Timeout: hangGuard}

	page, err := c.Events(ctx, actions.EventFilter{Limit: 2})
	if err != nil || len(page.Events) != 2 || page.Events[0].ID != recs[2].ID || !page.HasNextPage || page.Limit != 2 {
		t.Fatalf("Events(limit 2) = %+v, %v", page, err)
	}
	page, err = c.Events(ctx, actions.EventFilter{Limit: 2, Marker: page.Marker})
	if err != nil || len(page.Events) != 1 || page.Events[0].ID != recs[0].ID || page.HasNextPage {
		t.Errorf("Events(next page) = %+v, %v", page, err)
	}
	page, err = c.Events(ctx, actions.EventFilter{Status: actions.EventFailed, User: "bob"})
	if err != nil || len(page.Events) != 1 || page.Events[0].ID != recs[1].ID {
		t.Errorf("Events(failed, bob) = %+v, %v", page, err)
	}
	page, err = c.Events(ctx, actions.EventFilter{Status: actions.EventPending, User: "bob"})
	if err != nil || len(page.Events) != 0 || page.Events == nil {
		t.Errorf("Events(pending, bob) = %+v, %v; want an empty list", page, err)
	}

	ev, err := c.Event(ctx, recs[1].ID)
	if err != nil || ev.Status != actions.EventFailed || len(ev.Handlers) != 1 || ev.Handlers[0].Error != "disk full" {
		t.Errorf("Event(%d) = %+v, %v", recs[1].ID, ev, err)
	}
	if _, err := c.Event(ctx, 99); !errors.Is(err, actions.ErrNotFound) {
		t.Errorf("Event(99) error = %v, want ErrNotFound", err)
	}
	var ae *actions.ArgumentError
	if _, err := c.Event(ctx, 0); !errors.As(err, &ae) {
		t.Errorf("Event(0) error = %v, want an ArgumentError", err)
	}
	anon := &actions.Client{URL: ts.URL, Timeout: hangGuard}
	_, err = anon.Events(ctx, actions.EventFilter{})
	wantAPIError(t, "anonymous Events", err, http.StatusUnauthorized, "")
	_, err = c.Events(ctx, actions.EventFilter{Status: "bogus"})
	wantAPIError(t, "bad status", err, http.StatusUnprocessableEntity, "")
}
