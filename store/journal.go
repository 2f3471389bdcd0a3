package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cowbird-go/cowbird/handlers"
)

// record is the stored form of a handlers.Record. The event stays encoded so
// that Done and Fail rewrite the state without decoding it.
type record struct {
	Received time.Time         `json:"received"`
	Event    json.RawMessage   `json:"event"`
	Pending  []string          `json:"pending,omitempty"`
	Failed   map[string]string `json:"failed,omitempty"`
	Attempts int               `json:"attempts,omitempty"`
	RetryAt  time.Time         `json:"retry_at,omitzero"`
}

// decode turns a stored record into a handlers.Record.
func (r record) decode(id uint64) (handlers.Record, error) {
	ev, err := handlers.DecodeEvent(r.Event)
	if err != nil {
		return handlers.Record{}, err
	}
	return handlers.Record{
		ID: id, Received: r.Received, Event: ev,
		Pending: r.Pending, Failed: r.Failed, Attempts: r.Attempts, RetryAt: r.RetryAt,
	}, nil
}

// getJSON decodes the JSON value stored under key in bucket; a missing key
// is notFound.
func getJSON[T any](tx *bolt.Tx, bucket, key []byte, notFound error) (T, error) {
	data := tx.Bucket(bucket).Get(key)
	if data == nil {
		var zero T
		return zero, notFound
	}
	return decodeJSON[T](bucket, data)
}

// decodeJSON decodes a JSON value read from bucket.
func decodeJSON[T any](bucket, data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("decode %s value: %w", bucket, err)
	}
	return v, nil
}

// putJSON stores v as JSON under key in bucket.
func putJSON(tx *bolt.Tx, bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s value: %w", bucket, err)
	}
	return tx.Bucket(bucket).Put(key, data)
}

// view checks ctx, then returns what read returns in a read transaction.
func view[T any](ctx context.Context, db *DB, read func(*bolt.Tx) (T, error)) (T, error) {
	var v T
	if err := ctx.Err(); err != nil {
		return v, err
	}
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		v, err = read(tx)
		return err
	})
	return v, err
}

// getRecord reads record id from the events bucket.
func getRecord(tx *bolt.Tx, id uint64) (record, error) {
	return getJSON[record](tx, eventsBucket, idKey(id), ErrNotFound)
}

// readRecord reads record id, event decoded.
func readRecord(tx *bolt.Tx, id uint64) (handlers.Record, error) {
	r, err := getRecord(tx, id)
	if err != nil {
		return handlers.Record{}, err
	}
	return r.decode(id)
}

// decodeRecord turns stored data into a handlers.Record.
func decodeRecord(id uint64, data []byte) (handlers.Record, error) {
	r, err := decodeJSON[record](eventsBucket, data)
	if err != nil {
		return handlers.Record{}, err
	}
	return r.decode(id)
}

// indexMark is the value of index entries (pending, failed): non-empty, so
// that Get tells a present entry from an absent one.
var indexMark = []byte{1}

// failedForGood reports whether r has a final failure: a handler with an
// error that is no longer pending (what GET /events lists as failed).
func (r record) failedForGood() bool {
	for h := range r.Failed {
		if !slices.Contains(r.Pending, h) {
			return true
		}
	}
	return false
}

// putRecord writes r and keeps the pending and failed indexes in step with
// it.
func putRecord(tx *bolt.Tx, id uint64, r record) error {
	key := idKey(id)
	if err := putJSON(tx, eventsBucket, key, r); err != nil {
		return err
	}
	if err := setIndex(tx.Bucket(pendingBucket), key, len(r.Pending) > 0); err != nil {
		return fmt.Errorf("update pending index: %w", err)
	}
	if err := setIndex(tx.Bucket(failedBucket), key, r.failedForGood()); err != nil {
		return fmt.Errorf("update failed index: %w", err)
	}
	return nil
}

// setIndex adds key to the index b when in, and removes it otherwise. An
// entry already there is not rewritten; deleting an absent one is a no-op.
func setIndex(b *bolt.Bucket, key []byte, in bool) error {
	if !in {
		return b.Delete(key)
	}
	if b.Get(key) != nil {
		return nil
	}
	return b.Put(key, indexMark)
}

// ensureFailedIndex creates the failed index if the database has none (it
// was created by a version without it) and fills it from the records, once.
func ensureFailedIndex(tx *bolt.Tx) error {
	if tx.Bucket(failedBucket) != nil {
		return nil
	}
	failed, err := tx.CreateBucket(failedBucket)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", failedBucket, err)
	}
	return tx.Bucket(eventsBucket).ForEach(func(k, v []byte) error {
		var r struct {
			Pending []string          `json:"pending"`
			Failed  map[string]string `json:"failed"`
		}
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("index failed events: decode event %d: %w", binary.BigEndian.Uint64(k), err)
		}
		if !(record{Pending: r.Pending, Failed: r.Failed}).failedForGood() {
			return nil
		}
		if err := failed.Put(bytes.Clone(k), indexMark); err != nil {
			return fmt.Errorf("index failed events: %w", err)
		}
		return nil
	})
}

// Append implements handlers.Journal. It records ev as received now (UTC)
// with hs pending, and assigns the next ID.
func (db *DB) Append(ctx context.Context, ev handlers.Event, hs []string) (handlers.Record, error) {
	if err := ctx.Err(); err != nil {
		return handlers.Record{}, fmt.Errorf("append event: %w", err)
	}
	if ev == nil {
		return handlers.Record{}, errors.New("append event: event is nil")
	}
	body, err := handlers.EncodeEvent(ev)
	if err != nil {
		return handlers.Record{}, fmt.Errorf("append %s event: %w", ev.Name(), err)
	}
	var rec handlers.Record
	err = db.commit(func(tx *bolt.Tx) error {
		id, err := tx.Bucket(eventsBucket).NextSequence()
		if err != nil {
			return err
		}
		// Taken inside the transaction, so that IDs and times agree in order.
		r := record{Received: time.Now().UTC(), Event: body, Pending: slices.Clone(hs)}
		rec = handlers.Record{ID: id, Received: r.Received, Event: ev, Pending: slices.Clone(hs)}
		return putRecord(tx, id, r)
	})
	if err != nil {
		return handlers.Record{}, fmt.Errorf("append %s event: %w", ev.Name(), err)
	}
	return rec, nil
}

// Done implements handlers.Journal. It is idempotent. A handler done after
// failures (a retry, or an events.replay of a final failure) is no longer
// listed as failed.
func (db *DB) Done(ctx context.Context, id uint64, handler string) error {
	err := db.settle(ctx, id, handler, func(r *record) bool {
		_, failed := r.Failed[handler]
		return failed || slices.Contains(r.Pending, handler)
	}, func(r *record) {
		r.Pending = slices.DeleteFunc(r.Pending, func(h string) bool { return h == handler })
		delete(r.Failed, handler) // recovered: only final failures stay listed
	})
	if err != nil {
		return fmt.Errorf("mark event %d done for %s: %w", id, handler, err)
	}
	return nil
}

// Fail implements handlers.Journal. It counts the attempt and records cause;
// a zero retryAt ends handler as failed, a non-zero one schedules the record's
// next attempt. A handler that is no longer pending is left as it is.
func (db *DB) Fail(ctx context.Context, id uint64, handler, cause string, retryAt time.Time) error {
	err := db.settle(ctx, id, handler, func(r *record) bool { return slices.Contains(r.Pending, handler) }, func(r *record) {
		if r.Failed == nil {
			r.Failed = map[string]string{}
		}
		r.Failed[handler] = cause
		r.Attempts++
		if retryAt.IsZero() {
			r.Pending = slices.DeleteFunc(r.Pending, func(h string) bool { return h == handler })
			return
		}
		r.RetryAt = retryAt.UTC()
	})
	if err != nil {
		return fmt.Errorf("mark event %d failed for %s: %w", id, handler, err)
	}
	return nil
}

// settle applies change to record id when applies says it concerns handler. It
// shares a commit (and its fsync) with concurrent journal writes.
func (db *DB) settle(ctx context.Context, id uint64, handler string, applies func(*record) bool, change func(*record)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var missing error
	err := db.commit(func(tx *bolt.Tx) error {
		missing = nil // fn runs again when its transaction is retried
		r, err := getRecord(tx, id)
		if errors.Is(err, ErrNotFound) {
			// Nothing was written: an answer for this caller, not a reason
			// to roll back the writes it shares a transaction with.
			missing = err
			return nil
		}
		if err != nil {
			return err
		}
		if !applies(&r) {
			return nil
		}
		change(&r)
		return putRecord(tx, id, r)
	})
	if err != nil {
		return err
	}
	return missing
}

// Pending implements handlers.Journal. Its cost grows with the number of
// pending records, not with the journal.
func (db *DB) Pending(ctx context.Context) ([]handlers.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list pending events: %w", err)
	}
	var recs []handlers.Record
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(pendingBucket).ForEach(func(k, _ []byte) error {
			id := binary.BigEndian.Uint64(k)
			rec, err := readRecord(tx, id)
			if err != nil {
				return fmt.Errorf("event %d: %w", id, err)
			}
			recs = append(recs, rec)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list pending events: %w", err)
	}
	return recs, nil
}

// Event returns the record with the given ID, or an error wrapping
// ErrNotFound.
func (db *DB) Event(ctx context.Context, id uint64) (handlers.Record, error) {
	rec, err := view(ctx, db, func(tx *bolt.Tx) (handlers.Record, error) { return readRecord(tx, id) })
	if err != nil {
		return handlers.Record{}, fmt.Errorf("get event %d: %w", id, err)
	}
	return rec, nil
}

// Events lists up to limit records with an ID greater than after, by ID.
func (db *DB) Events(ctx context.Context, after uint64, limit int) ([]handlers.Record, error) {
	recs, err := listRecords(ctx, db, eventsBucket, limit, forward(after))
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return recs, nil
}

// EventsBefore lists up to limit records with an ID lower than before,
// newest first; a zero before lists from the newest record. It reads one
// transaction and decodes only the records it returns.
func (db *DB) EventsBefore(ctx context.Context, before uint64, limit int) ([]handlers.Record, error) {
	recs, err := listRecords(ctx, db, eventsBucket, limit, backward(before))
	if err != nil {
		return nil, fmt.Errorf("list events before %d: %w", before, err)
	}
	return recs, nil
}

// FailedBefore is EventsBefore over the records failed for good (a handler
// with an error that is no longer pending), read from the failed index.
func (db *DB) FailedBefore(ctx context.Context, before uint64, limit int) ([]handlers.Record, error) {
	recs, err := listRecords(ctx, db, failedBucket, limit, backward(before))
	if err != nil {
		return nil, fmt.Errorf("list failed events before %d: %w", before, err)
	}
	return recs, nil
}

// walk is the order in which a listing visits a bucket's keys: start
// positions the cursor on the first key listed, step moves it to the next.
type walk struct {
	start func(*bolt.Cursor) ([]byte, []byte)
	step  func(*bolt.Cursor) ([]byte, []byte)
}

// forward visits the keys after the ID after, in ascending order.
func forward(after uint64) walk {
	start := func(c *bolt.Cursor) ([]byte, []byte) {
		k, v := c.Seek(idKey(after))
		if k != nil && binary.BigEndian.Uint64(k) == after {
			return c.Next()
		}
		return k, v
	}
	return walk{start: start, step: (*bolt.Cursor).Next}
}

// backward visits the keys below the ID before (all of them when before is
// 0), in descending order.
func backward(before uint64) walk {
	start := func(c *bolt.Cursor) ([]byte, []byte) {
		if before == 0 {
			return c.Last()
		}
		if k, _ := c.Seek(idKey(before)); k == nil { // every key is below
			return c.Last()
		}
		return c.Prev()
	}
	return walk{start: start, step: (*bolt.Cursor).Prev}
}

// listRecords decodes up to limit records in one read transaction, in the
// order w visits the keys of bucket: the events bucket itself, or one of
// its indexes (pending, failed), whose records are then read from it.
func listRecords(ctx context.Context, db *DB, bucket []byte, limit int, w walk) ([]handlers.Record, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("limit must be positive, got %d", limit)
	}
	index := !bytes.Equal(bucket, eventsBucket)
	return view(ctx, db, func(tx *bolt.Tx) ([]handlers.Record, error) {
		events := tx.Bucket(eventsBucket)
		c := tx.Bucket(bucket).Cursor()
		var recs []handlers.Record
		for k, v := w.start(c); k != nil && len(recs) < limit; k, v = w.step(c) {
			id := binary.BigEndian.Uint64(k)
			if index {
				if v = events.Get(k); v == nil {
					return nil, fmt.Errorf("event %d, listed in the %s index: %w", id, bucket, ErrNotFound)
				}
			}
			rec, err := decodeRecord(id, v)
			if err != nil {
				return nil, fmt.Errorf("event %d: %w", id, err)
			}
			recs = append(recs, rec)
		}
		return recs, nil
	})
}

// Prune deletes finished records (those with no pending handler) received
// before now-maxAge, and the oldest finished ones while the journal holds
// more than maxEvents records. A zero maxAge or maxEvents disables that rule.
// Records with pending handlers are never deleted. It returns how many
// records it deleted.
func (db *DB) Prune(ctx context.Context, now time.Time, maxAge time.Duration, maxEvents int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	if maxAge < 0 {
		return 0, fmt.Errorf("prune events: max age must not be negative, got %s", maxAge)
	}
	if maxEvents < 0 {
		return 0, fmt.Errorf("prune events: max events must not be negative, got %d", maxEvents)
	}
	cutoff := now.Add(-maxAge)
	var removed int
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		events, pending, failed := tx.Bucket(eventsBucket), tx.Bucket(pendingBucket), tx.Bucket(failedBucket)
		excess := 0
		if maxEvents > 0 {
			excess = events.Stats().KeyN - maxEvents
		}
		var doomed [][]byte
		c := events.Cursor()
		// Records are in ID order, which is the order they were received.
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if pending.Get(k) != nil {
				continue
			}
			old := false
			if maxAge > 0 {
				var r struct {
					Received time.Time `json:"received"`
				}
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
				}
				old = r.Received.Before(cutoff)
			}
			if !old && excess <= 0 {
				break
			}
			doomed = append(doomed, bytes.Clone(k))
			excess--
		}
		for _, k := range doomed {
			if err := events.Delete(k); err != nil {
				return err
			}
			if err := failed.Delete(k); err != nil { // a no-op unless it failed for good
				return fmt.Errorf("update failed index: %w", err)
			}
		}
		removed = len(doomed)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune events: %w", err)
	}
	return removed, nil
}

var _ handlers.Journal = (*DB)(nil)

// Group commit. Every journal write (Append, Done, Fail) returns only once
// its transaction is committed and fsynced. Writes that arrive while a
// commit is running wait for it to end and then share the next one, so that
// n concurrent writers cost about two commits instead of n, and a lone
// writer waits for nothing but its own commit (bbolt's DB.Batch waits
// MaxBatchDelay first, and serializes batches of one delay's worth of
// callers behind each other's fsyncs).

// maxGroup bounds the writes committed in one transaction.
const maxGroup = 1000

// groupCommit queues the writes of one database.
type groupCommit struct {
	mu      sync.Mutex
	queue   []*groupCall
	running bool // a committer goroutine is draining queue
	waiting int  // calls not answered yet (tests)
}

// groupCall is one queued write and where its outcome goes.
type groupCall struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// errSolo tells a caller whose fn failed inside a shared transaction to run
// it in a transaction of its own, so that its error is its alone.
var errSolo = errors.New("run alone")

// group returns the groupCommit of db.
func (db *DB) group() *groupCommit { return db.journal }

// commit runs fn in a read-write transaction shared with the journal writes
// queued meanwhile, and returns once that transaction is durable (or
// failed). fn may run more than once (when another write of its group fails
// and the group is retried without it); it must set its results afresh each
// time and return an error only for what should roll its writes back.
func (db *DB) commit(fn func(*bolt.Tx) error) error {
	g := db.group()
	c := &groupCall{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	g.waiting++
	if !g.running {
		g.running = true
		go g.run(db.bolt)
	}
	g.mu.Unlock()
	err := <-c.done
	if err == errSolo {
		err = db.bolt.Update(fn)
	}
	g.mu.Lock()
	g.waiting--
	g.mu.Unlock()
	return err
}

// run commits the queued writes, as many per transaction as have queued up,
// until the queue is empty.
func (g *groupCommit) run(bdb *bolt.DB) {
	for {
		g.mu.Lock()
		n := min(len(g.queue), maxGroup)
		if n == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		calls := slices.Clone(g.queue[:n])
		g.queue = slices.Delete(g.queue, 0, n)
		g.mu.Unlock()
		commitGroup(bdb, calls)
	}
}

// commitGroup runs calls in one transaction. When one fn fails, the
// transaction is rolled back, that caller is told to run alone, and the
// others are retried together.
func commitGroup(bdb *bolt.DB, calls []*groupCall) {
	for len(calls) > 0 {
		failed := -1
		err := bdb.Update(func(tx *bolt.Tx) error {
			for i, c := range calls {
				if err := callSafely(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, c := range calls {
				c.done <- err
			}
			return
		}
		calls[failed].done <- errSolo
		calls = slices.Delete(calls, failed, failed+1)
	}
}

// callSafely runs fn, turning a panic into an error (the caller then runs
// fn alone, where the panic is its own).
func callSafely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in journal write: %v", p)
		}
	}()
	return fn(tx)
}
