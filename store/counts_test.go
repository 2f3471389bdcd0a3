package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cowbird-go/cowbird/handlers"
)

// scanned is what a scan of every record finds: the counts, and the IDs
// the failed index should hold.
type scanned struct {
	counts handlers.JournalCounts
	failed []uint64
}

// scanJournal reads every record, a page at a time as GET /events does,
// and counts them the way GET /events classifies them: a record failed for
// good when a handler with an error is no longer pending.
func scanJournal(t testing.TB, db *DB) scanned {
	t.Helper()
	var s scanned
	for after := uint64(0); ; {
		recs, err := db.Events(context.Background(), after, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			after = rec.ID
			s.add(rec)
		}
		if len(recs) < 500 {
			return s
		}
	}
}

// add counts rec.
func (s *scanned) add(rec handlers.Record) {
	c := &s.counts
	c.Events++
	for h := range rec.Failed {
		if !slices.Contains(rec.Pending, h) {
			c.Failed++
			c.LastFailed = rec.ID
			s.failed = append(s.failed, rec.ID)
			break
		}
	}
	if len(rec.Pending) == 0 {
		return
	}
	c.Pending++
	if c.Pending == 1 || rec.Received.Before(c.OldestPending) {
		c.OldestPending = rec.Received
	}
	if c.Pending == 1 || rec.RetryAt.Before(c.NextRetry) {
		c.NextRetry = rec.RetryAt
	}
}

// failedIndex lists the IDs in the failed index.
func failedIndex(t testing.TB, db *DB) []uint64 {
	t.Helper()
	var ids []uint64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(failedBucket).ForEach(func(k, _ []byte) error {
			ids = append(ids, binary.BigEndian.Uint64(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// checkCounts checks the failed index and Counts against a full scan.
func checkCounts(t testing.TB, db *DB, when string) handlers.JournalCounts {
	t.Helper()
	want := scanJournal(t, db)
	if ids := failedIndex(t, db); !slices.Equal(ids, want.failed) {
		t.Fatalf("%s: failed index = %v, a scan finds %v", when, ids, want.failed)
	}
	got, err := db.Counts(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	w := want.counts
	if got.Events != w.Events || got.Pending != w.Pending || got.Failed != w.Failed || got.LastFailed != w.LastFailed ||
		!got.OldestPending.Equal(w.OldestPending) || !got.NextRetry.Equal(w.NextRetry) {
		t.Fatalf("%s: Counts = %+v, a scan finds %+v", when, got, w)
	}
	return got
}

// TestFailedIndex keeps the failed index in step through retrying and
// final failures, recoveries, Prune and a reopen.
func TestFailedIndex(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	later := now().Add(time.Hour)
	a := mustAppend(t, db, userEvent("a"), "x", "y").ID // final failure of x, y still pending
	must(db.Fail(ctx, a, "x", "retry", later))
	checkCounts(t, db, "a: x retrying")
	must(db.Fail(ctx, a, "x", "for good", noRetry))
	b := mustAppend(t, db, userEvent("b"), "x").ID // failed, then replayed
	must(db.Fail(ctx, b, "x", "for good", noRetry))
	if c := checkCounts(t, db, "b failed"); c.Failed != 2 || c.LastFailed != b || c.Pending != 1 {
		t.Fatalf("b failed: Counts = %+v, want 2 failed (last %d), 1 pending", c, b)
	}
	must(db.Done(ctx, b, "x"))
	if c := checkCounts(t, db, "b replayed"); c.Failed != 1 || c.LastFailed != a {
		t.Fatalf("b replayed: Counts = %+v, want 1 failed (last %d)", c, a)
	}
	c := mustAppend(t, db, userEvent("c"), "x").ID // retried, then done
	must(db.Fail(ctx, c, "x", "retry", later))
	must(db.Done(ctx, c, "x"))
	d := mustAppend(t, db, userEvent("d"), "x").ID // failed for good, stays so
	must(db.Fail(ctx, d, "x", "for good", noRetry))
	mustAppend(t, db, userEvent("e"), "x") // never tried
	if c := checkCounts(t, db, "all written"); c.Failed != 2 || c.LastFailed != d || c.Pending != 2 || !c.NextRetry.IsZero() {
		t.Fatalf("all written: Counts = %+v, want 2 failed (last %d), 2 pending, one due now", c, d)
	}
	must(db.Close())
	db = openDB(t, dir)
	checkCounts(t, db, "reopened")
	// Every finished record (b, c, d) goes; a and e are pending.
	if n, err := db.Prune(ctx, now().Add(time.Hour), time.Minute, 0); err != nil || n != 3 {
		t.Fatalf("Prune = %d, %v; want 3 removed", n, err)
	}
	if c := checkCounts(t, db, "pruned"); c.Events != 2 || c.Failed != 1 || c.LastFailed != a {
		t.Fatalf("pruned: Counts = %+v, want 2 events, 1 failed (last %d)", c, a)
	}
}

// TestFailedIndexFilledAtOpen: a database made by a version without the
// failed index gets one, filled from its records, when it is opened.
func TestFailedIndexFilledAtOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	var want []uint64
	for i := range 6 {
		id := mustAppend(t, db, userEvent(fmt.Sprint("u", i)), "x", "y").ID
		var err error
		switch i % 3 {
		case 0: // failed for good, y still pending
			err = db.Fail(ctx, id, "x", "for good", noRetry)
			want = append(want, id)
		case 1: // retrying: not failed
			err = db.Fail(ctx, id, "x", "retry", now().Add(time.Hour))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(failedBucket) })
	if err = errors.Join(err, bdb.Close()); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir)
	if ids := failedIndex(t, db); !slices.Equal(ids, want) {
		t.Fatalf("failed index after Open = %v, want %v", ids, want)
	}
	checkCounts(t, db, "filled at Open")
}

// TestCountsRandomized compares Counts with a full scan after each of a
// few hundred random journal writes, prunes and reopens.
func TestCountsRandomized(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, seed))
			dir := t.TempDir()
			db := openDB(t, dir)
			hs := []string{"x", "y", "z"}
			var ids []uint64
			var failed, pending, pruned, reopened, recovered bool // the mix the seed gave
			prev := handlers.JournalCounts{}
			for op := range 300 {
				before := db
				if err := randomOp(t, r, &db, dir, hs, &ids); err != nil {
					t.Fatalf("op %d: %v", op, err)
				}
				c := checkCounts(t, db, fmt.Sprint("op ", op))
				failed, pending = failed || c.Failed > 0, pending || c.Pending > 0
				pruned = pruned || c.Events < prev.Events
				recovered = recovered || (c.Events == prev.Events && c.Failed < prev.Failed)
				reopened = reopened || db != before
				prev = c
			}
			if !failed || !pending || !pruned || !reopened || !recovered {
				t.Errorf("the seed missed part of the mix: failed %v, pending %v, pruned %v, reopened %v, recovered %v",
					failed, pending, pruned, reopened, recovered)
			}
		})
	}
}

// randomOp applies one random write to *db: an append, a done, a retrying
// or final failure (on any ID appended, pruned ones included), and rarely
// a prune or a reopen.
func randomOp(t *testing.T, r *rand.Rand, db **DB, dir string, hs []string, ids *[]uint64) error {
	ctx := context.Background()
	n := r.IntN(100)
	if len(*ids) == 0 || n < 25 {
		k := 1 + r.IntN(len(hs))
		rec := mustAppend(t, *db, userEvent("u"), hs[:k]...)
		*ids = append(*ids, rec.ID)
		return nil
	}
	id, h := (*ids)[r.IntN(len(*ids))], hs[r.IntN(len(hs))]
	var err error
	switch {
	case n < 55:
		err = (*db).Done(ctx, id, h)
	case n < 75: // a retry due in the past, now or later
		err = (*db).Fail(ctx, id, h, "retry", now().Add(time.Duration(r.IntN(120)-60)*time.Minute))
	case n < 95:
		err = (*db).Fail(ctx, id, h, "for good", noRetry)
	case n < 98:
		_, err = (*db).Prune(ctx, now(), 0, 1+r.IntN(20))
	default:
		if err := (*db).Close(); err != nil {
			return err
		}
		*db = openDB(t, dir)
	}
	if errors.Is(err, ErrNotFound) { // pruned
		return nil
	}
	return err
}

// BenchmarkCounts counts a journal of 100 000 done events and 10 pending
// ones: from the indexes (Counts), and by decoding every record as GET
// /status did before them (scan).
func BenchmarkCounts(b *testing.B) {
	db := openDB(b, b.TempDir())
	body, err := handlers.EncodeEvent(userEvent("alice"))
	if err != nil {
		b.Fatal(err)
	}
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		for i := range 100_010 {
			r := record{Received: now(), Event: body}
			if i%10_001 == 0 { // 10 of them, spread out
				r.Pending = []string{"x"}
			}
			id, err := tx.Bucket(eventsBucket).NextSequence()
			if err == nil {
				err = putRecord(tx, id, r)
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
	b.Run("index", func(b *testing.B) {
		for b.Loop() {
			if c, err := db.Counts(context.Background()); err != nil || c.Events != 100_010 || c.Pending != 10 {
				b.Fatalf("Counts = %+v, %v", c, err)
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if c := scanJournal(b, db).counts; c.Events != 100_010 || c.Pending != 10 {
				b.Fatalf("scan = %+v", c)
			}
		}
	})
}
