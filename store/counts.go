package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cowbird-go/cowbird/handlers"
)

// Counts counts the journal in one read transaction, from its indexes: it
// decodes the pending records only (their times), never the done or failed
// ones, so its cost grows with the backlog, not with the journal.
func (db *DB) Counts(ctx context.Context) (handlers.JournalCounts, error) {
	c, err := view(ctx, db, countJournal)
	if err != nil {
		return handlers.JournalCounts{}, fmt.Errorf("count events: %w", err)
	}
	return c, nil
}

// countJournal counts the journal in tx.
func countJournal(tx *bolt.Tx) (handlers.JournalCounts, error) {
	var c handlers.JournalCounts
	events, failed := tx.Bucket(eventsBucket), tx.Bucket(failedBucket)
	// bbolt keeps no key count. Stats walks the bucket's pages and reads
	// their element headers, decoding no value; an exact counter of our own
	// would be one more invariant for every writer of the events bucket to
	// keep, older versions of cowbird included.
	c.Events = events.Stats().KeyN
	c.Failed = failed.Stats().KeyN
	if k, _ := failed.Cursor().Last(); k != nil {
		c.LastFailed = binary.BigEndian.Uint64(k)
	}
	err := tx.Bucket(pendingBucket).ForEach(func(k, _ []byte) error {
		id := binary.BigEndian.Uint64(k)
		data := events.Get(k)
		if data == nil {
			return fmt.Errorf("pending event %d: %w", id, ErrNotFound)
		}
		var r struct {
			Received time.Time `json:"received"`
			RetryAt  time.Time `json:"retry_at"`
		}
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("decode event %d: %w", id, err)
		}
		c.Pending++
		if c.Pending == 1 || r.Received.Before(c.OldestPending) {
			c.OldestPending = r.Received.UTC()
		}
		if c.Pending == 1 || r.RetryAt.Before(c.NextRetry) {
			c.NextRetry = r.RetryAt.UTC()
		}
		return nil
	})
	return c, err
}
