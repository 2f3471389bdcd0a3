package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/store"
)

const eventsToken = "ev3nts-admin"

// callbackURL is a Magpie callback URL: its path and query are a token.
const callbackURL = "https://magpie.example.org/tmp/5f3c9e2a7b1d4e60?token=0ddba11c0ffee"

// callbackSecrets are the parts of callbackURL no answer may show.
var callbackSecrets = []string{"5f3c9e2a7b1d4e60", "0ddba11c0ffee"}

// journaled are the IDs of the events seedJournal writes.
type journaled struct {
	failed  uint64 // user_created alice: FileSystem done, Magpie failed for good
	retry   uint64 // permission_created alice: FileSystem pending, retry in an hour
	done    uint64 // user_created bob: done
	group   uint64 // permission_created for group users: two handlers pending, not tried yet
	retryAt time.Time
}

// seedJournal writes four events through the store's journal API.
func seedJournal(t *testing.T, db *store.DB) journaled {
	t.Helper()
	ctx := t.Context()
	var j journaled
	appendEv := func(ev handlers.Event, hs ...string) uint64 {
		rec, err := db.Append(ctx, ev, hs)
		if err != nil {
			t.Fatal(err)
		}
		return rec.ID
	}
	must := func(err error) {
		if err != nil {
			t.Helper()
			t.Fatal(err)
		}
	}
	j.failed = appendEv(handlers.UserEvent{Action: handlers.Created, UserName: "alice", CallbackURL: callbackURL}, "FileSystem", "Magpie")
	must(db.Done(ctx, j.failed, "FileSystem"))
	must(db.Fail(ctx, j.failed, "Magpie", "POST "+callbackURL+": 500 Internal Server Error", time.Time{}))
	j.retry = appendEv(handlers.PermissionEvent{Action: handlers.Created, ServiceName: "secure-data-proxy", ServiceType: "api",
		ResourceID: 42, ResourceFullName: "/secure-data-proxy/wpsoutputs/weaver/users/1/out.nc", PermName: "read",
		Access: "allow", Scope: "match", User: "alice"}, "FileSystem")
	j.retryAt = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	must(db.Fail(ctx, j.retry, "FileSystem", "magpie: 503 Service Unavailable", j.retryAt))
	j.done = appendEv(handlers.UserEvent{Action: handlers.Created, UserName: "bob"}, "FileSystem")
	must(db.Done(ctx, j.done, "FileSystem"))
	j.group = appendEv(handlers.PermissionEvent{Action: handlers.Deleted, ServiceType: "api", ResourceID: 7,
		ResourceFullName: "/secure-data-proxy/wpsoutputs", PermName: "read", Access: "allow", Scope: "recursive",
		Group: "users"}, "FileSystem", "Magpie")
	return j
}

// openStore opens a real store in a temporary directory.
func openStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

// replayService is an action service with an events.replay type.
func replayService(t *testing.T, db *store.DB) *actions.Service {
	t.Helper()
	l := logrus.New()
	l.SetOutput(io.Discard)
	svc, err := actions.New(actions.Options{Store: db, Log: logrus.NewEntry(l), Types: []actions.Type{{
		Name: actions.ReplayType, InputSchema: json.RawMessage(`{"type": "object"}`),
		Run: func(context.Context, json.RawMessage, actions.Progress) (map[string]any, error) { return nil, nil },
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return svc
}

// eventsServer serves opts (the journal and an admin token added).
func eventsServer(t *testing.T, db *store.DB, opts Options) string {
	t.Helper()
	opts.Journal = db
	if opts.Auth.AdminTokens == nil {
		opts.Auth.AdminTokens = map[string]string{"ops": eventsToken}
	}
	ts := httptest.NewServer(New(opts).Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// get sends GET url with the bearer token and the Magpie cookie (each
// unless empty) and returns the status and the body.
func get(t *testing.T, url, token, cookie string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: MagpieCookie, Value: cookie})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET %s: Content-Type %q, want JSON", url, ct)
	}
	return resp.StatusCode, string(body)
}

// page lists url as the admin and decodes the page.
func page(t *testing.T, url string) actions.EventPage {
	t.Helper()
	code, body := get(t, url, eventsToken, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %s", url, code, body)
	}
	var p actions.EventPage
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// recIDs lists the IDs of recs.
func recIDs(recs []handlers.Record) []uint64 {
	out := []uint64{}
	for _, rec := range recs {
		out = append(out, rec.ID)
	}
	return out
}

func ids(p actions.EventPage) []uint64 {
	out := []uint64{}
	for _, ev := range p.Events {
		out = append(out, ev.ID)
	}
	return out
}

// fakeMagpie signs every cookie in as caller, or fails with err.
type fakeMagpie struct {
	caller actions.Caller
	err    error
}

func (f fakeMagpie) Principal(context.Context, string) (actions.Caller, error) {
	return f.caller, f.err
}

// TestEventsRoutesAdminOnly: both routes answer admins only: 401 without
// or with bad credentials, 403 for a Magpie user outside the
// administrators, 503 when Magpie cannot tell, 200 for an admin token and
// a Magpie administrator.
func TestEventsRoutesAdminOnly(t *testing.T) {
	db := openStore(t)
	j := seedJournal(t, db)
	for _, path := range []string{"/events", "/events/" + itoa(j.failed), "/cowbird/events?status=failed"} {
		t.Run(path, func(t *testing.T) {
			url := eventsServer(t, db, Options{Auth: Auth{Magpie: fakeMagpie{caller: actions.Caller{ID: "magpie:user:bob",
				Groups: []string{"magpie:group:users"}}}}})
			expectAdminOnly(t, url+path)
			admin := eventsServer(t, db, Options{Auth: Auth{Magpie: fakeMagpie{caller: actions.Caller{ID: "magpie:user:root",
				Groups: []string{AdminGroup}}}}})
			if code, body := get(t, admin+path, "", "c"); code != http.StatusOK {
				t.Errorf("magpie administrator: %d %s", code, body)
			}
			down := eventsServer(t, db, Options{Auth: Auth{Magpie: fakeMagpie{err: errors.New("magpie: connection refused")}}})
			if code, body := get(t, down+path, "", "c"); code != http.StatusServiceUnavailable {
				t.Errorf("magpie down: %d %s, want 503", code, body)
			}
			narrowed := eventsServer(t, db, Options{Auth: Auth{AdminTokens: map[string]string{"ops": eventsToken, "other": "x"},
				RunnableBy: map[string][]string{EventsType: {"token:other"}}}})
			if code, _ := get(t, narrowed+path, eventsToken, ""); code != http.StatusForbidden {
				t.Errorf("token not in runnable_by[%s]: %d, want 403", EventsType, code)
			}
		})
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestEventsListFilters: GET /events lists newest first, filtered by
// status and user, a page at a time with limit and marker; a bad query is
// 422.
func TestEventsListFilters(t *testing.T) {
	db := openStore(t)
	j := seedJournal(t, db)
	url := eventsServer(t, db, Options{})
	for _, tc := range []struct {
		query string
		want  []uint64
		next  bool
	}{
		{"", []uint64{j.group, j.done, j.retry, j.failed}, false},
		{"?status=failed", []uint64{j.failed}, false},
		{"?status=pending", []uint64{j.group, j.retry}, false},
		{"?status=done", []uint64{j.done}, false},
		{"?user=alice", []uint64{j.retry, j.failed}, false},
		{"?user=alice&status=pending", []uint64{j.retry}, false},
		{"?user=users", []uint64{}, false}, // a group is not a user
		{"?user=nobody", []uint64{}, false},
		{"?limit=2", []uint64{j.group, j.done}, true},
		{"?limit=2&marker=" + itoa(j.done), []uint64{j.retry, j.failed}, false},
		{"?status=pending&limit=1", []uint64{j.group}, true},
		{"?status=pending&limit=1&marker=" + itoa(j.group), []uint64{j.retry}, false},
	} {
		p := page(t, url+"/events"+tc.query)
		if got := ids(p); !reflect.DeepEqual(got, tc.want) || p.HasNextPage != tc.next {
			t.Errorf("%q: %v next %v, want %v next %v", tc.query, got, p.HasNextPage, tc.want, tc.next)
		}
		if len(tc.want) > 0 && p.Marker != itoa(tc.want[len(tc.want)-1]) {
			t.Errorf("%q: marker %q, want the last ID listed", tc.query, p.Marker)
		}
	}
	if p := page(t, url+"/events"); p.Limit != 20 {
		t.Errorf("default limit = %d, want 20", p.Limit)
	}
	for _, q := range []string{"status=bogus", "limit=0", "limit=1001", "limit=x", "marker=0", "marker=-1", "marker=x"} {
		if code, body := get(t, url+"/events?"+q, eventsToken, ""); code != http.StatusUnprocessableEntity {
			t.Errorf("%s: %d %s, want 422", q, code, body)
		}
	}
}

// TestEventsListPagesAcrossScans: a listing reads the journal in pages and
// keeps the newest matches, whatever the page size.
func TestEventsListPagesAcrossScans(t *testing.T) {
	db := openStore(t)
	ctx := t.Context()
	var all, failed []uint64
	for i := range 11 {
		rec, err := db.Append(ctx, handlers.UserEvent{Action: handlers.Deleted, UserName: "u" + itoa(uint64(i))}, []string{"FileSystem"})
		if err != nil {
			t.Fatal(err)
		}
		all = append([]uint64{rec.ID}, all...)
		if i%3 == 0 {
			failed = append([]uint64{rec.ID}, failed...)
			err = db.Fail(ctx, rec.ID, "FileSystem", "boom", time.Time{})
		} else {
			err = db.Done(ctx, rec.ID, "FileSystem")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	old := eventScanPage
	t.Cleanup(func() { eventScanPage = old })
	url := eventsServer(t, db, Options{})
	for _, scan := range []int{1, 2, 3, 500} {
		eventScanPage = scan
		if got := ids(page(t, url+"/events?limit=3")); !reflect.DeepEqual(got, all[:3]) {
			t.Errorf("scan %d: newest 3 = %v, want %v", scan, got, all[:3])
		}
		if got := ids(page(t, url+"/events?status=failed&limit=2&marker="+itoa(failed[0]))); !reflect.DeepEqual(got, failed[1:3]) {
			t.Errorf("scan %d: failed after the first = %v, want %v", scan, got, failed[1:3])
		}
		if got := ids(page(t, url+"/events?limit=1000")); !reflect.DeepEqual(got, all) {
			t.Errorf("scan %d: all = %v, want %v", scan, got, all)
		}
	}
}

// TestEventShow: GET /events/{id} shows the payload, each handler's
// outcome with its error and next retry, and the events.replay action for
// the failed handlers when the daemon runs that action; unknown IDs are
// 404, bad ones 400.
func TestEventShow(t *testing.T) {
	db := openStore(t)
	j := seedJournal(t, db)
	url := eventsServer(t, db, Options{Actions: replayService(t, db)})
	show := func(id uint64) actions.JournalEvent {
		t.Helper()
		code, body := get(t, url+"/events/"+itoa(id), eventsToken, "")
		if code != http.StatusOK {
			t.Fatalf("GET /events/%d = %d %s", id, code, body)
		}
		var ev actions.JournalEvent
		if err := json.Unmarshal([]byte(body), &ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}

	ev := show(j.failed)
	if ev.ID != j.failed || ev.Source != "user" || ev.Event != "user_created" || ev.Key != "user:alice" || ev.User != "alice" ||
		ev.Status != actions.EventFailed || ev.Attempts != 1 || ev.RetryAt != nil || time.Since(ev.Received) > time.Minute {
		t.Errorf("failed event = %+v", ev)
	}
	wantPayload := map[string]any{"action": "created", "user_name": "alice", "callback_url": "https://magpie.example.org/********"}
	if !reflect.DeepEqual(ev.Payload, wantPayload) {
		t.Errorf("payload = %v, want %v", ev.Payload, wantPayload)
	}
	wantHandlers := []actions.HandlerOutcome{{Handler: "Magpie", Outcome: actions.EventFailed,
		Error: "POST https://magpie.example.org/********: 500 Internal Server Error"}}
	if !reflect.DeepEqual(ev.Handlers, wantHandlers) {
		t.Errorf("handlers = %+v, want %+v", ev.Handlers, wantHandlers)
	}
	wantReplay := &actions.ReplayHint{Type: "events.replay", Body: actions.ReplayBody{EventID: j.failed, Handlers: []string{"Magpie"}}}
	if !reflect.DeepEqual(ev.Replay, wantReplay) {
		t.Errorf("replay = %+v, want %+v", ev.Replay, wantReplay)
	}

	ev = show(j.retry)
	if ev.Status != actions.EventPending || ev.Attempts != 1 || ev.RetryAt == nil || !ev.RetryAt.Equal(j.retryAt) || ev.Replay != nil ||
		ev.Source != "permission" || ev.Event != "permission_created" || ev.User != "alice" || ev.Key != "perm:alice//42/read" {
		t.Errorf("retrying event = %+v", ev)
	}
	if len(ev.Handlers) != 1 || ev.Handlers[0].Outcome != actions.EventPending || ev.Handlers[0].Error != "magpie: 503 Service Unavailable" ||
		ev.Handlers[0].RetryAt == nil || !ev.Handlers[0].RetryAt.Equal(j.retryAt) {
		t.Errorf("retrying handlers = %+v", ev.Handlers)
	}
	if ev.Payload["resource_id"] != float64(42) || ev.Payload["resource_full_name"] != "/secure-data-proxy/wpsoutputs/weaver/users/1/out.nc" {
		t.Errorf("permission payload = %v", ev.Payload)
	}

	ev = show(j.group)
	if ev.Status != actions.EventPending || ev.Attempts != 0 || ev.RetryAt != nil || ev.User != "" || len(ev.Handlers) != 2 ||
		ev.Handlers[0].Handler != "FileSystem" || ev.Handlers[1].Handler != "Magpie" || ev.Handlers[0].RetryAt != nil {
		t.Errorf("group event = %+v", ev)
	}
	ev = show(j.done)
	if ev.Status != actions.EventDone || len(ev.Handlers) != 0 || ev.Replay != nil || ev.Payload["callback_url"] != nil {
		t.Errorf("done event = %+v", ev)
	}

	for path, want := range map[string]int{"/events/999": 404, "/events/0": 400, "/events/x": 400, "/events/-1": 400} {
		if code, body := get(t, url+path, eventsToken, ""); code != want {
			t.Errorf("GET %s = %d %s, want %d", path, code, body, want)
		}
	}
	// Without an events.replay action, no replay is offered.
	bare := eventsServer(t, db, Options{})
	if code, body := get(t, bare+"/events/"+itoa(j.failed), eventsToken, ""); code != 200 || strings.Contains(body, "replay") {
		t.Errorf("without actions: %d %s", code, body)
	}
}

// TestEventsMaskSecrets: the token in a callback_url (path and query) is
// in no answer of the events routes, payload and errors alike.
func TestEventsMaskSecrets(t *testing.T) {
	db := openStore(t)
	j := seedJournal(t, db)
	url := eventsServer(t, db, Options{Actions: replayService(t, db)})
	for _, path := range []string{"/events", "/events?status=failed", "/events?user=alice", "/events/" + itoa(j.failed)} {
		code, body := get(t, url+path, eventsToken, "")
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d", path, code)
		}
		for _, s := range callbackSecrets {
			if strings.Contains(body, s) {
				t.Errorf("GET %s shows %q: %s", path, s, body)
			}
		}
		if !strings.Contains(body, "https://magpie.example.org/********") {
			t.Errorf("GET %s does not show the masked callback_url: %s", path, body)
		}
	}
	for raw, want := range map[string]string{
		"https://user:pw@magpie.example.org:8443/tmp/t0ken?x=1": "https://magpie.example.org:8443/********",
		"not a url": "********",
		"":          "********",
	} {
		if got := maskURL(raw); got != want {
			t.Errorf("maskURL(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestEventsRoutesDocumented: /json documents both routes when the server
// has a journal, and neither without.
func TestEventsRoutesDocumented(t *testing.T) {
	db := openStore(t)
	for _, withJournal := range []bool{true, false} {
		opts := Options{}
		if withJournal {
			opts.Journal = db
		}
		ts := httptest.NewServer(New(opts).Handler())
		paths := documentedPaths(t, ts.URL)
		ts.Close()
		for _, p := range []string{"/events", "/events/{id}"} {
			if _, ok := paths[p]["get"]; ok != withJournal {
				t.Errorf("journal %v: GET %s documented = %v", withJournal, p, ok)
			}
		}
	}
}

// randomJournal writes 90 events about alice, bob, carol or a group, each
// left done, failed for good (with the other handler done or still
// pending), retrying, untried, or failed then replayed (the first three
// done); after the first 60 it prunes the oldest finished ones, so that
// the IDs have gaps, the first ones included.
func randomJournal(t *testing.T, r *rand.Rand, db *store.DB) {
	t.Helper()
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	users, hs := []string{"alice", "bob", "carol"}, []string{"FileSystem", "Magpie"}
	for i := range 90 {
		var ev handlers.Event = handlers.UserEvent{Action: handlers.Created, UserName: users[r.IntN(3)]}
		if r.IntN(2) == 0 {
			p := handlers.PermissionEvent{Action: handlers.Created, ServiceType: "api", ResourceID: i,
				ResourceFullName: "/svc/r", PermName: "read", Access: "allow", Scope: "match", User: users[r.IntN(3)]}
			if r.IntN(3) == 0 {
				p.User, p.Group = "", "users"
			}
			ev = p
		}
		rec, err := db.Append(ctx, ev, hs)
		must(err)
		k := r.IntN(2)
		id, h, other := rec.ID, hs[k], hs[1-k]
		state := r.IntN(6)
		if i < 3 { // done, so that the prune leaves a gap at the start
			state = 0
		}
		switch state {
		case 0: // done
			must(errors.Join(db.Done(ctx, id, h), db.Done(ctx, id, other)))
		case 1: // failed for good, the other done
			must(errors.Join(db.Fail(ctx, id, h, "boom", time.Time{}), db.Done(ctx, id, other)))
		case 2: // failed for good, the other pending
			must(db.Fail(ctx, id, h, "boom", time.Time{}))
		case 3: // retrying
			must(db.Fail(ctx, id, h, "busy", time.Now().Add(time.Hour)))
		case 4: // failed for good, then replayed
			must(errors.Join(db.Fail(ctx, id, h, "boom", time.Time{}), db.Done(ctx, id, h), db.Done(ctx, id, other)))
		} // 5: untried
		if i == 59 {
			_, err := db.Prune(ctx, time.Now(), 0, 40)
			must(err)
		}
	}
}

// listQuery is a GET /events query; limit 0 leaves it out (the default).
type listQuery struct {
	status, user string
	limit        int
	marker       uint64
}

func (q listQuery) String() string {
	s := "limit=" + strconv.Itoa(q.limit)
	if q.limit == 0 {
		s = ""
	}
	if q.status != "" {
		s += "&status=" + q.status
	}
	if q.user != "" {
		s += "&user=" + q.user
	}
	if q.marker != 0 {
		s += "&marker=" + itoa(q.marker)
	}
	return s
}

// bruteEvents lists, newest first, the IDs of the records of all that q
// selects, by its own reading of the filters.
func bruteEvents(all []handlers.Record, q listQuery) []uint64 {
	out := []uint64{}
	for _, rec := range slices.Backward(all) {
		user := ""
		switch ev := rec.Event.(type) {
		case handlers.UserEvent:
			user = ev.UserName
		case handlers.PermissionEvent:
			user = ev.User
		}
		failed := false
		for h := range rec.Failed {
			failed = failed || !slices.Contains(rec.Pending, h)
		}
		pending := len(rec.Pending) > 0
		status := map[string]bool{"": true, actions.EventFailed: failed, actions.EventPending: pending,
			actions.EventDone: !failed && !pending}[q.status]
		if status && (q.user == "" || q.user == user) && (q.marker == 0 || rec.ID < q.marker) {
			out = append(out, rec.ID)
		}
	}
	return out
}

// TestEventsListRandomized: for random filters, limits and first markers
// over a journal in every state, walking the pages with the marker lists
// exactly what a filter over every record finds, newest first, with
// has_next_page and the marker right on each page, whatever the scan page.
func TestEventsListRandomized(t *testing.T) {
	old := eventScanPage
	t.Cleanup(func() { eventScanPage = old })
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, seed))
			db := openStore(t)
			randomJournal(t, r, db)
			all, err := db.Events(t.Context(), 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if all[0].ID == 1 || len(all) == int(all[len(all)-1].ID) {
				t.Fatalf("IDs %v: want the prune to leave gaps, at the start too", recIDs(all))
			}
			url := eventsServer(t, db, Options{})
			statuses := []string{"", actions.EventFailed, actions.EventPending, actions.EventDone}
			users := []string{"", "", "alice", "bob", "carol", "nobody"}
			listed, walked := map[string]bool{}, 0 // the mix the seed gave
			for range 60 {
				eventScanPage = []int{1, 2, 3, 5, 500}[r.IntN(5)]
				q := listQuery{status: statuses[r.IntN(4)], user: users[r.IntN(6)], limit: []int{0, 1, 2, 3, 7, 1000}[r.IntN(6)]}
				if r.IntN(2) == 0 {
					q.marker = 1 + uint64(r.IntN(int(all[len(all)-1].ID)+3))
				}
				want := bruteEvents(all, q)
				listed[q.status] = listed[q.status] || len(want) > 0
				walked = max(walked, walkPages(t, url, q, want))
			}
			if len(listed) != 4 || slices.Contains(slices.Collect(maps.Values(listed)), false) || walked < 3 {
				t.Errorf("the seed missed part of the mix: statuses listed %v, at most %d pages walked", listed, walked)
			}
		})
	}
}

// walkPages lists q and the pages after it, by their markers, checks that
// they cut want into pages of q's limit, and returns how many it read.
func walkPages(t *testing.T, url string, q listQuery, want []uint64) int {
	t.Helper()
	limit := cmp.Or(q.limit, defaultEventLimit)
	for n := 0; ; n++ {
		p := page(t, url+"/events?"+q.String())
		wantPage := want[:min(limit, len(want))]
		wantMarker := ""
		if len(wantPage) > 0 {
			wantMarker = itoa(wantPage[len(wantPage)-1])
		}
		if got := ids(p); !slices.Equal(got, wantPage) || p.HasNextPage != (len(want) > limit) || p.Marker != wantMarker ||
			p.Limit != limit {
			t.Fatalf("page %d of %v (scan %d): %v next %v marker %q limit %d, want %v next %v marker %q",
				n, q, eventScanPage, got, p.HasNextPage, p.Marker, p.Limit, wantPage, len(want) > limit, wantMarker)
		}
		if !p.HasNextPage {
			return n + 1
		}
		want = want[limit:]
		q.marker = wantPage[len(wantPage)-1]
	}
}

// expectAdminOnly checks the answers of url, served with bob (a Magpie user
// in group users) behind the cookie "c" and eventsToken as an admin token:
// 401 without credentials or with a wrong token, 403 for bob, 200 for the
// token; an error body names its code.
func expectAdminOnly(t *testing.T, url string) {
	t.Helper()
	for _, tc := range []struct {
		name, token, cookie string
		want                int
	}{
		{"anonymous", "", "", http.StatusUnauthorized},
		{"wrong token", "wrong", "", http.StatusUnauthorized},
		{"bad token with a cookie", "wrong", "c", http.StatusUnauthorized},
		{"magpie user", "", "c", http.StatusForbidden},
		{"admin token", eventsToken, "", http.StatusOK},
	} {
		code, body := get(t, url, tc.token, tc.cookie)
		if code != tc.want {
			t.Errorf("%s %s: %d %s, want %d", url, tc.name, code, body, tc.want)
		}
		if code != http.StatusOK && !strings.Contains(body, `"code":`+itoa(uint64(code))) {
			t.Errorf("%s %s: body %s lacks the code", url, tc.name, body)
		}
	}
}

// documentedPaths returns the paths of the server's /json document, each
// with its methods.
func documentedPaths(t *testing.T, base string) map[string]map[string]json.RawMessage {
	t.Helper()
	resp, err := http.Get(base + "/json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Paths map[string]map[string]json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc.Paths
}
