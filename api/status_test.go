package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/handlers"
)

// fixedStatus answers a status with only what the daemon fills, or err.
func fixedStatus(err error) func(context.Context) (DaemonStatus, error) {
	return func(context.Context) (DaemonStatus, error) {
		return DaemonStatus{Ready: true, Journal: JournalState{Events: 3}}, err
	}
}

// TestStatusRouteAdminOnly: GET /status answers admins only (401, 403,
// 503 as the events routes), as plain JSON with the server's versions and
// empty lists rather than null; a status that cannot be read is a 500.
func TestStatusRouteAdminOnly(t *testing.T) {
	serve := func(opts Options) string {
		opts.DaemonVersion = "9.9.9"
		if opts.Status == nil {
			opts.Status = fixedStatus(nil)
		}
		if opts.Auth.AdminTokens == nil {
			opts.Auth.AdminTokens = map[string]string{"ops": eventsToken}
		}
		ts := httptest.NewServer(New(opts).Handler())
		t.Cleanup(ts.Close)
		return ts.URL
	}
	for _, path := range []string{"/status", "/cowbird/status"} {
		url := serve(Options{Auth: Auth{Magpie: fakeMagpie{caller: actions.Caller{ID: "magpie:user:bob",
			Groups: []string{"magpie:group:users"}}}}})
		expectAdminOnly(t, url+path)
		code, body := get(t, url+path, eventsToken, "")
		var raw map[string]any
		if err := json.Unmarshal([]byte(body), &raw); err != nil {
			t.Fatal(err)
		}
		if code != http.StatusOK || raw["version"] != "9.9.9" || raw["api_version"] != DefaultVersion || raw["ready"] != true {
			t.Errorf("%s = %d %s", path, code, body)
		}
		for _, list := range []string{`"not_ready":[]`, `"handlers":[]`, `"degraded":[]`, `"actions":[]`, `"events":3`} {
			if !strings.Contains(body, list) {
				t.Errorf("%s: %s lacks %s", path, body, list)
			}
		}
		if strings.Contains(body, `"started"`) {
			t.Errorf("%s: a zero start time is shown: %s", path, body)
		}
	}
	admin := serve(Options{Auth: Auth{Magpie: fakeMagpie{caller: actions.Caller{ID: "magpie:user:root", Groups: []string{AdminGroup}}}}})
	if code, body := get(t, admin+"/status", "", "c"); code != http.StatusOK {
		t.Errorf("magpie administrator: %d %s", code, body)
	}
	down := serve(Options{Auth: Auth{Magpie: fakeMagpie{err: errors.New("magpie: connection refused")}}})
	if code, body := get(t, down+"/status", "", "c"); code != http.StatusServiceUnavailable {
		t.Errorf("magpie down: %d %s, want 503", code, body)
	}
	narrowed := serve(Options{Auth: Auth{AdminTokens: map[string]string{"ops": eventsToken, "other": "x"},
		RunnableBy: map[string][]string{StatusType: {"token:other"}}}})
	if code, _ := get(t, narrowed+"/status", eventsToken, ""); code != http.StatusForbidden {
		t.Errorf("token not in runnable_by[%s]: %d, want 403", StatusType, code)
	}
	broken := serve(Options{Status: fixedStatus(errors.New("database closed"))})
	if code, body := get(t, broken+"/status", eventsToken, ""); code != http.StatusInternalServerError ||
		!strings.Contains(body, detailStatusDown) || strings.Contains(body, "database closed") {
		t.Errorf("unreadable status: %d %s", code, body)
	}
}

// TestStatusRouteOnlyWithStatus: without a status source there is no
// route; with one, /json documents it.
func TestStatusRouteOnlyWithStatus(t *testing.T) {
	for _, with := range []bool{true, false} {
		opts := Options{Auth: Auth{AdminTokens: map[string]string{"ops": eventsToken}}}
		if with {
			opts.Status = fixedStatus(nil)
		}
		ts := httptest.NewServer(New(opts).Handler())
		code, _ := get(t, ts.URL+"/status", eventsToken, "")
		if want := map[bool]int{true: http.StatusOK, false: http.StatusNotFound}[with]; code != want {
			t.Errorf("status source %v: GET /status = %d, want %d", with, code, want)
		}
		paths := documentedPaths(t, ts.URL)
		ts.Close()
		if _, ok := paths["/status"]["get"]; ok != with {
			t.Errorf("status source %v: GET /status documented = %v", with, ok)
		}
	}
}

// TestJournalCounts counts the seeded journal as GET /events classifies
// it, and a replayed failure no longer counts as failed.
func TestJournalCounts(t *testing.T) {
	db := openStore(t)
	j := seedJournal(t, db)
	recs, err := db.Events(t.Context(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	received := map[uint64]time.Time{}
	for _, r := range recs {
		received[r.ID] = r.Received.UTC()
	}
	before := time.Now().UTC()
	st, err := JournalCounts(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	// failed: alice's user_created; pending: the retry (in an hour) and
	// the group event, never tried, so due now.
	if st.Events != 4 || st.Failed != 1 || st.LastFailed != j.failed || st.Pending != 2 {
		t.Errorf("counts = %+v", st)
	}
	if st.OldestPending == nil || !st.OldestPending.Equal(received[j.retry]) {
		t.Errorf("oldest pending = %v, want %v", st.OldestPending, received[j.retry])
	}
	if st.NextRetry == nil || st.NextRetry.Before(before) || st.NextRetry.After(time.Now()) {
		t.Errorf("next retry = %v, want now (the group event is due)", st.NextRetry)
	}
	if err := db.Done(t.Context(), j.failed, "Magpie"); err != nil { // an events.replay that succeeds
		t.Fatal(err)
	}
	if st, err := JournalCounts(t.Context(), db); err != nil || st.Failed != 0 || st.LastFailed != 0 || st.Events != 4 {
		t.Errorf("after the replay: counts = %+v, %v; want none failed", st, err)
	}
	empty, err := JournalCounts(t.Context(), openStore(t))
	if err != nil || empty != (JournalState{}) {
		t.Errorf("empty journal = %+v, %v", empty, err)
	}
}

// fixedCounts is a JournalCounter that answers c, or err.
type fixedCounts struct {
	c   handlers.JournalCounts
	err error
}

func (f fixedCounts) Counts(context.Context) (handlers.JournalCounts, error) { return f.c, f.err }

// TestJournalCountsTimes: a pending event's retry in the past or never
// set is due now, a later one is kept; with nothing pending both times are
// absent; an error is passed on.
func TestJournalCountsTimes(t *testing.T) {
	oldest := time.Date(2020, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	later := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name  string
		retry time.Time
		due   bool
	}{{"never set", time.Time{}, true}, {"past", oldest, true}, {"later", later, false}} {
		before := time.Now().UTC()
		st, err := JournalCounts(t.Context(), fixedCounts{c: handlers.JournalCounts{Events: 5, Pending: 1,
			OldestPending: oldest, NextRetry: tc.retry, Failed: 2, LastFailed: 4}})
		if err != nil || st.Events != 5 || st.Pending != 1 || st.Failed != 2 || st.LastFailed != 4 {
			t.Fatalf("%s: %+v, %v", tc.name, st, err)
		}
		if st.OldestPending == nil || !st.OldestPending.Equal(oldest) || st.OldestPending.Location() != time.UTC {
			t.Errorf("%s: oldest pending = %v, want %v in UTC", tc.name, st.OldestPending, oldest)
		}
		if st.NextRetry == nil || st.NextRetry.Location() != time.UTC {
			t.Fatalf("%s: next retry = %v, want a UTC time", tc.name, st.NextRetry)
		}
		if due := !st.NextRetry.Before(before) && !st.NextRetry.After(time.Now()); due != tc.due ||
			(!tc.due && !st.NextRetry.Equal(tc.retry)) {
			t.Errorf("%s: next retry = %v, want due now: %v", tc.name, st.NextRetry, tc.due)
		}
	}
	st, err := JournalCounts(t.Context(), fixedCounts{c: handlers.JournalCounts{Events: 3, Failed: 1, LastFailed: 2}})
	if err != nil || st != (JournalState{Events: 3, Failed: 1, LastFailed: 2}) {
		t.Errorf("nothing pending: %+v, %v", st, err)
	}
	if _, err := JournalCounts(t.Context(), fixedCounts{err: errors.New("database closed")}); err == nil {
		t.Error("the counter's error is lost")
	}
}
