package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cowbird-go/cowbird/handlers"
)

// mixedJournal writes 40 records in every state (done, failed for good,
// failed then recovered, retrying, failed for good with another handler
// pending), prunes the oldest finished ones, so that the IDs start with
// gaps, and writes a few more.
func mixedJournal(t *testing.T, db *DB) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(i int) {
		id := mustAppend(t, db, userEvent(fmt.Sprint("u", i)), "x", "y").ID
		switch i % 6 {
		case 0: // done
			must(db.Done(ctx, id, "x"))
			must(db.Done(ctx, id, "y"))
		case 1: // failed for good
			must(db.Done(ctx, id, "y"))
			must(db.Fail(ctx, id, "x", "for good", noRetry))
		case 2: // failed for good, then replayed: recovered
			must(db.Fail(ctx, id, "x", "for good", noRetry))
			must(db.Done(ctx, id, "x"))
			must(db.Done(ctx, id, "y"))
		case 3: // retrying
			must(db.Fail(ctx, id, "x", "retry", now().Add(time.Hour)))
		case 4: // failed for good, y still pending
			must(db.Fail(ctx, id, "x", "for good", noRetry))
		}
	}
	for i := range 40 {
		write(i)
	}
	if n, err := db.Prune(ctx, now(), 0, 30); err != nil || n != 10 {
		t.Fatalf("Prune = %d, %v; want 10 removed", n, err)
	}
	for i := 40; i < 46; i++ {
		write(i)
	}
}

// finalFailure reports whether rec failed for good, from its fields.
func finalFailure(rec handlers.Record) bool {
	for h := range rec.Failed {
		if !slices.Contains(rec.Pending, h) {
			return true
		}
	}
	return false
}

// newestBelow is what a backward listing should answer: the records of
// all (by ID) below before (all of them for 0), newest first, at most limit.
func newestBelow(all []handlers.Record, before uint64, limit int) []handlers.Record {
	var want []handlers.Record
	for _, rec := range slices.Backward(all) {
		if len(want) == limit {
			break
		}
		if before == 0 || rec.ID < before {
			want = append(want, rec)
		}
	}
	return want
}

// TestEventsBefore compares EventsBefore and FailedBefore with a forward
// scan for every marker from 0 to past the newest ID (the pruned gap, the
// oldest ID and the largest ID included) and limits up to more than the
// journal holds.
func TestEventsBefore(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	mixedJournal(t, db)
	all, err := db.Events(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	failed := slices.DeleteFunc(slices.Clone(all), func(rec handlers.Record) bool { return !finalFailure(rec) })
	oldest, newest := all[0].ID, all[len(all)-1].ID
	if oldest == 1 || len(failed) == 0 || len(failed) == len(all) {
		t.Fatalf("journal of %d records from %d, %d failed: want a gap at the start and a mix", len(all), oldest, len(failed))
	}
	befores := []uint64{0, ^uint64(0)}
	for id := uint64(1); id <= newest+2; id++ {
		befores = append(befores, id)
	}
	for _, before := range befores {
		for _, limit := range []int{1, 2, 3, 7, len(all), len(all) + 5} {
			for _, l := range []struct {
				name string
				list func(context.Context, uint64, int) ([]handlers.Record, error)
				all  []handlers.Record
			}{{"EventsBefore", db.EventsBefore, all}, {"FailedBefore", db.FailedBefore, failed}} {
				got, err := l.list(ctx, before, limit)
				if err != nil {
					t.Fatalf("%s(%d, %d): %v", l.name, before, limit, err)
				}
				if want := newestBelow(l.all, before, limit); !reflect.DeepEqual(got, want) {
					t.Fatalf("%s(%d, %d) = %v, want %v", l.name, before, limit, recIDs(got), recIDs(want))
				}
			}
		}
	}
	if recs, err := db.EventsBefore(ctx, oldest, 10); err != nil || len(recs) != 0 {
		t.Errorf("EventsBefore(oldest %d) = %v, %v; want none", oldest, recIDs(recs), err)
	}
	for _, list := range []func(context.Context, uint64, int) ([]handlers.Record, error){db.EventsBefore, db.FailedBefore} {
		if _, err := list(ctx, 0, 0); err == nil || !strings.Contains(err.Error(), "limit") {
			t.Errorf("limit 0: err = %v, want one naming the limit", err)
		}
	}
}

// recIDs lists the IDs of recs.
func recIDs(recs []handlers.Record) []uint64 {
	ids := []uint64{}
	for _, rec := range recs {
		ids = append(ids, rec.ID)
	}
	return ids
}

// TestEventsBeforeDecodesItsPageOnly: a record that cannot be decoded
// fails a listing that returns it, and no other (a listing reads no
// record past its page, and FailedBefore none outside the failed index).
func TestEventsBeforeDecodesItsPageOnly(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	var ids []uint64
	for i := range 5 {
		ids = append(ids, mustAppend(t, db, userEvent(fmt.Sprint("u", i)), "x").ID)
	}
	if err := db.Fail(ctx, ids[4], "x", "for good", noRetry); err != nil {
		t.Fatal(err)
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error { return tx.Bucket(eventsBucket).Put(idKey(ids[1]), []byte("{garbage")) })
	if err != nil {
		t.Fatal(err)
	}
	if recs, err := db.EventsBefore(ctx, 0, 3); err != nil || !slices.Equal(recIDs(recs), []uint64{ids[4], ids[3], ids[2]}) {
		t.Errorf("EventsBefore(0, 3) = %v, %v; want the newest 3", recIDs(recs), err)
	}
	if recs, err := db.FailedBefore(ctx, 0, 10); err != nil || !slices.Equal(recIDs(recs), []uint64{ids[4]}) {
		t.Errorf("FailedBefore(0, 10) = %v, %v; want %d", recIDs(recs), err, ids[4])
	}
	_, err = db.EventsBefore(ctx, 0, 4)
	if want := fmt.Sprintf("event %d", ids[1]); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("EventsBefore(0, 4) over the bad record: err = %v, want one naming %q", err, want)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.FailedBefore(canceled, 0, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("FailedBefore on a canceled context: %v", err)
	}
}

// BenchmarkEventsPage lists the newest 20 records (21: GET /events asks
// one more to tell a next page) of a journal of 100 000 done events:
// walking back from the newest (before), from a marker halfway (marker),
// and by a forward scan of the whole journal keeping the newest, as GET
// /events did before EventsBefore (scan).
func BenchmarkEventsPage(b *testing.B) {
	const n, page = 100_000, 21
	db := openDB(b, b.TempDir())
	body, err := handlers.EncodeEvent(userEvent("alice"))
	if err != nil {
		b.Fatal(err)
	}
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		for range n {
			id, err := tx.Bucket(eventsBucket).NextSequence()
			if err == nil {
				err = putRecord(tx, id, record{Received: now(), Event: body})
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, bc := range []struct {
		name   string
		before uint64
	}{{"before", 0}, {"marker", n / 2}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if recs, err := db.EventsBefore(ctx, bc.before, page); err != nil || len(recs) != page {
					b.Fatalf("EventsBefore = %d records, %v", len(recs), err)
				}
			}
		})
	}
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if recs := newestByScan(b, db, page); len(recs) != page || recs[0].ID != n {
				b.Fatalf("scan = %d records", len(recs))
			}
		}
	})
}

// newestByScan is the former GET /events listing: every record read
// forward, 500 a transaction, keeping a window of the newest keep.
func newestByScan(b *testing.B, db *DB, keep int) []handlers.Record {
	var window []handlers.Record
	for after := uint64(0); ; {
		recs, err := db.Events(context.Background(), after, 500)
		if err != nil {
			b.Fatal(err)
		}
		for _, rec := range recs {
			if window = append(window, rec); len(window) >= 2*keep {
				window = append(window[:0], window[len(window)-keep:]...)
			}
			after = rec.ID
		}
		if len(recs) < 500 {
			window = window[max(0, len(window)-keep):]
			slices.Reverse(window)
			return window
		}
	}
}
