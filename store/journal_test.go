package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/handlers"
)

var noRetry time.Time

func now() time.Time { return time.Now().UTC() }

func userEvent(name string) handlers.UserEvent {
	return handlers.UserEvent{Action: handlers.Created, UserName: name}
}

// mustAppend appends ev for hs and fails the test on error.
func mustAppend(t testing.TB, db *DB, ev handlers.Event, hs ...string) handlers.Record {
	t.Helper()
	rec, err := db.Append(context.Background(), ev, hs)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func mustEvent(t testing.TB, db *DB, id uint64) handlers.Record {
	t.Helper()
	rec, err := db.Event(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// pendingIDs lists the IDs Pending returns.
func pendingIDs(t testing.TB, db *DB) []uint64 {
	t.Helper()
	recs, err := db.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestAppendRoundTripsEveryKind(t *testing.T) {
	db := openDB(t, t.TempDir())
	events := []handlers.Event{
		userEvent("alice"),
		handlers.PermissionEvent{
			Action: handlers.Deleted, ServiceName: "thredds", ServiceType: "thredds", ResourceID: 42,
			ResourceFullName: "thredds/birdhouse/file.nc", PermName: "read", Access: "allow", Scope: "recursive", User: "alice",
		},
		handlers.FileEvent{Op: handlers.FileCreated, Path: "/wps/out.nc", Handler: "FileSystem"},
	}
	var prev handlers.Record
	for _, ev := range events {
		before := now()
		rec := mustAppend(t, db, ev, "FileSystem", "Magpie")
		after := now()
		if rec.ID <= prev.ID {
			t.Errorf("ID %d after %d: not increasing", rec.ID, prev.ID)
		}
		if rec.Received.Location() != time.UTC || rec.Received.Before(before) || rec.Received.After(after) {
			t.Errorf("Received = %v, want UTC in [%v, %v]", rec.Received, before, after)
		}
		if got := mustEvent(t, db, rec.ID); !reflect.DeepEqual(got, rec) {
			t.Errorf("Event(%d) = %+v, want %+v", rec.ID, got, rec)
		}
		prev = rec
	}
}

func TestAppendRejectsNilEvent(t *testing.T) {
	db := openDB(t, t.TempDir())
	if _, err := db.Append(context.Background(), nil, []string{"a"}); err == nil || !strings.Contains(err.Error(), "event is nil") {
		t.Errorf("err = %v, want one naming the nil event", err)
	}
}

func TestDoneAndFail(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	rec := mustAppend(t, db, userEvent("alice"), "a", "b", "c")
	retryAt := time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))

	steps := []struct {
		name string
		do   func() error
		want handlers.Record // Pending, Failed, Attempts, RetryAt
	}{
		{"done b", func() error { return db.Done(ctx, rec.ID, "b") },
			handlers.Record{Pending: []string{"a", "c"}}},
		{"done b again is a no-op", func() error { return db.Done(ctx, rec.ID, "b") },
			handlers.Record{Pending: []string{"a", "c"}}},
		{"transient failure of a stays pending", func() error { return db.Fail(ctx, rec.ID, "a", "magpie down", retryAt) },
			handlers.Record{Pending: []string{"a", "c"}, Failed: map[string]string{"a": "magpie down"}, Attempts: 1, RetryAt: retryAt.UTC()}},
		{"final failure of c ends it", func() error { return db.Fail(ctx, rec.ID, "c", "bad name", noRetry) },
			handlers.Record{Pending: []string{"a"}, Failed: map[string]string{"a": "magpie down", "c": "bad name"}, Attempts: 2, RetryAt: retryAt.UTC()}},
		{"failure of a settled handler is a no-op", func() error { return db.Fail(ctx, rec.ID, "b", "late", noRetry) },
			handlers.Record{Pending: []string{"a"}, Failed: map[string]string{"a": "magpie down", "c": "bad name"}, Attempts: 2, RetryAt: retryAt.UTC()}},
		{"done a forgets its recovered failure", func() error { return db.Done(ctx, rec.ID, "a") },
			handlers.Record{Failed: map[string]string{"c": "bad name"}, Attempts: 2, RetryAt: retryAt.UTC()}},
		{"a replay of c that succeeds clears its failure", func() error { return db.Done(ctx, rec.ID, "c") },
			handlers.Record{Attempts: 2, RetryAt: retryAt.UTC()}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got := mustEvent(t, db, rec.ID)
		want := rec
		want.Pending, want.Failed, want.Attempts, want.RetryAt = st.want.Pending, st.want.Failed, st.want.Attempts, st.want.RetryAt
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: record = %+v, want %+v", st.name, got, want)
		}
		wantPending := []uint64(nil)
		if len(st.want.Pending) > 0 {
			wantPending = []uint64{rec.ID}
		}
		if ids := pendingIDs(t, db); !slices.Equal(ids, wantPending) {
			t.Fatalf("%s: pending IDs = %v, want %v", st.name, ids, wantPending)
		}
	}
}

func TestUnknownEventIsNotFound(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	mustAppend(t, db, userEvent("alice"), "a")
	calls := map[string]func() error{
		"Done":  func() error { return db.Done(ctx, 99, "a") },
		"Fail":  func() error { return db.Fail(ctx, 99, "a", "x", noRetry) },
		"Event": func() error { _, err := db.Event(ctx, 99); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "99") {
				t.Errorf("err = %v, want ErrNotFound naming event 99", err)
			}
		})
	}
}

func TestPendingOrderAndReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	var recs []handlers.Record
	for i := range 6 {
		recs = append(recs, mustAppend(t, db, userEvent(fmt.Sprint("u", i)), "a", "b"))
	}
	none := mustAppend(t, db, userEvent("nobody")) // no handler: never pending
	for _, i := range []int{0, 3} {
		for _, h := range []string{"a", "b"} {
			if err := db.Done(ctx, recs[i].ID, h); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Done(ctx, recs[4].ID, "a"); err != nil {
		t.Fatal(err)
	}
	if err := db.Fail(ctx, recs[5].ID, "b", "down", now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	want := []uint64{recs[1].ID, recs[2].ID, recs[4].ID, recs[5].ID}
	if ids := pendingIDs(t, db); !slices.Equal(ids, want) {
		t.Fatalf("pending IDs = %v, want %v", ids, want)
	}
	before, err := db.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir)
	after, err := db.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after, before) {
		t.Errorf("pending after reopen = %+v, want %+v", after, before)
	}
	if next := mustAppend(t, db, userEvent("later"), "a"); next.ID <= none.ID {
		t.Errorf("ID after reopen = %d, want > %d", next.ID, none.ID)
	}
}

func TestEvents(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	var all []uint64
	for i := range 5 {
		all = append(all, mustAppend(t, db, userEvent(fmt.Sprint("u", i)), "a").ID)
	}
	tests := []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 2, all[:2]},
		{all[1], 10, all[2:]},
		{all[4], 10, nil},
		{^uint64(0), 1, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("after %d limit %d", tt.after, tt.limit), func(t *testing.T) {
			recs, err := db.Events(ctx, tt.after, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var ids []uint64
			for _, r := range recs {
				ids = append(ids, r.ID)
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("IDs = %v, want %v", ids, tt.want)
			}
		})
	}
	if _, err := db.Events(ctx, 0, 0); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("Events with limit 0: err = %v, want one naming the limit", err)
	}
}

func TestPrune(t *testing.T) {
	// Five records, oldest first; the second one is still pending.
	setup := func(t *testing.T) (*DB, []handlers.Record) {
		db := openDB(t, t.TempDir())
		var recs []handlers.Record
		for i := range 5 {
			rec := mustAppend(t, db, userEvent(fmt.Sprint("u", i)), "a")
			if i != 1 {
				if err := db.Done(context.Background(), rec.ID, "a"); err != nil {
					t.Fatal(err)
				}
			}
			recs = append(recs, rec)
		}
		return db, recs
	}
	const hour = time.Hour
	tests := []struct {
		name      string
		maxEvents int
		cutoffAt  int // records before recs[cutoffAt] are too old; -1: age rule off
		keep      []int
	}{
		{name: "no rule", cutoffAt: -1, keep: []int{0, 1, 2, 3, 4}},
		{name: "age", cutoffAt: 3, keep: []int{1, 3, 4}},
		{name: "age keeps pending", cutoffAt: 2, keep: []int{1, 2, 3, 4}},
		{name: "count", maxEvents: 2, cutoffAt: -1, keep: []int{1, 4}},
		{name: "count keeps pending", maxEvents: 1, cutoffAt: -1, keep: []int{1}},
		{name: "count below limit", maxEvents: 5, cutoffAt: -1, keep: []int{0, 1, 2, 3, 4}},
		{name: "age and count", maxEvents: 3, cutoffAt: 2, keep: []int{1, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, recs := setup(t)
			at, maxAge := now(), time.Duration(0)
			if tt.cutoffAt >= 0 {
				at, maxAge = recs[tt.cutoffAt].Received.Add(hour), hour
			}
			n, err := db.Prune(context.Background(), at, maxAge, tt.maxEvents)
			if err != nil {
				t.Fatal(err)
			}
			if want := len(recs) - len(tt.keep); n != want {
				t.Errorf("Prune removed %d, want %d", n, want)
			}
			left, err := db.Events(context.Background(), 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var got, want []uint64
			for _, r := range left {
				got = append(got, r.ID)
			}
			for _, i := range tt.keep {
				want = append(want, recs[i].ID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("left IDs = %v, want %v", got, want)
			}
			if ids := pendingIDs(t, db); !slices.Equal(ids, []uint64{recs[1].ID}) {
				t.Errorf("pending IDs = %v, want [%d]", ids, recs[1].ID)
			}
		})
	}
	t.Run("bad input", func(t *testing.T) {
		db, _ := setup(t)
		if _, err := db.Prune(context.Background(), now(), -hour, 0); err == nil || !strings.Contains(err.Error(), "max age") {
			t.Errorf("negative max age: err = %v, want one naming max age", err)
		}
		if _, err := db.Prune(context.Background(), now(), 0, -1); err == nil || !strings.Contains(err.Error(), "max events") {
			t.Errorf("negative max events: err = %v, want one naming max events", err)
		}
	})
}

// TestConcurrentDoneFail settles many records from many goroutines at once,
// as the dispatcher does, and checks that no outcome is lost.
func TestConcurrentDoneFail(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	const events = 50
	recs := make([]handlers.Record, events)
	var wg sync.WaitGroup
	errs := make(chan error, events*5)
	for i := range events {
		wg.Go(func() {
			rec, err := db.Append(ctx, userEvent(fmt.Sprint("u", i)), []string{"ok1", "ok2", "retried", "broken"})
			recs[i] = rec
			errs <- err
		})
	}
	wg.Wait()
	for i := range events {
		rec := recs[i]
		wg.Go(func() { errs <- db.Done(ctx, rec.ID, "ok1") })
		wg.Go(func() { errs <- db.Done(ctx, rec.ID, "ok2") })
		wg.Go(func() { errs <- db.Fail(ctx, rec.ID, "broken", "bad", noRetry) })
		wg.Go(func() {
			if err := db.Fail(ctx, rec.ID, "retried", "down", now().Add(time.Minute)); err != nil {
				errs <- err
				return
			}
			errs <- db.Done(ctx, rec.ID, "retried")
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]bool{}
	for _, rec := range recs {
		if seen[rec.ID] {
			t.Fatalf("ID %d assigned twice", rec.ID)
		}
		seen[rec.ID] = true
		got := mustEvent(t, db, rec.ID)
		wantFailed := map[string]string{"broken": "bad"} // retried recovered
		if len(got.Pending) != 0 || got.Attempts != 2 || !reflect.DeepEqual(got.Failed, wantFailed) {
			t.Errorf("event %d: Pending %v, Attempts %d, Failed %v; want none, 2, %v", rec.ID, got.Pending, got.Attempts, got.Failed, wantFailed)
		}
	}
	if ids := pendingIDs(t, db); len(ids) != 0 {
		t.Errorf("pending IDs = %v, want none", ids)
	}
}

// BenchmarkAppendDone measures the journal cost of one event run by three
// handlers, with parallel clients sharing commits.
func BenchmarkAppendDone(b *testing.B) {
	ctx := context.Background()
	db := openDB(b, b.TempDir())
	hs := []string{"FileSystem", "Magpie", "Geoserver"}
	b.SetParallelism(50) // GOMAXPROCS*50 clients, like many webhook senders
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec, err := db.Append(ctx, userEvent("alice"), hs)
			if err != nil {
				b.Error(err)
				return
			}
			for _, h := range hs {
				if err := db.Done(ctx, rec.ID, h); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
}

// BenchmarkAppendDoneOneClient measures the same with a single client: the
// latency of a lone webhook's journal writes, commit and fsync included.
func BenchmarkAppendDoneOneClient(b *testing.B) {
	ctx := context.Background()
	db := openDB(b, b.TempDir())
	hs := []string{"FileSystem", "Magpie", "Geoserver"}
	for b.Loop() {
		rec, err := db.Append(ctx, userEvent("alice"), hs)
		if err != nil {
			b.Fatal(err)
		}
		for _, h := range hs {
			if err := db.Done(ctx, rec.ID, h); err != nil {
				b.Fatal(err)
			}
		}
	}
}
