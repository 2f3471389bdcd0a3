// Package store keeps cowbird's durable state in a bbolt file: the event
// journal (handlers.Journal), the monitor registrations, the actions, the
// GeoServer jobs and the FileSystem handler's link index.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the database file inside the data directory.
const FileName = "cowbird.db"

// lockTimeout bounds the wait for the file lock, so that a second daemon on
// the same data directory fails fast instead of hanging.
const lockTimeout = time.Second

// batchDelay is how long a write batched with bbolt's Batch (the actions')
// waits for others to share its commit; bbolt's default, 10ms, adds that
// much latency to every write of a lone client. The journal's writes are
// committed in groups of their own (groupCommit), without a delay.
const batchDelay = time.Millisecond

// ErrNotFound is returned (wrapped) for an unknown event ID.
var ErrNotFound = errors.New("not found")

// Bucket names.
var (
	eventsBucket   = []byte("events")   // id -> record JSON
	pendingBucket  = []byte("pending")  // id -> mark, for records with pending handlers
	failedBucket   = []byte("failed")   // id -> mark, for records with a final failure (see record.failedForGood)
	monitorsBucket = []byte("monitors") // handler NUL path -> Monitor JSON
)

// DB is cowbird's state database. It is safe for concurrent use.
type DB struct {
	bolt    *bolt.DB
	journal *groupCommit // the journal's queued writes
}

// Open opens (creating if needed) dir/cowbird.db, creating dir with mode 0700
// if it is absent. It fails after about a second if another process holds
// the database.
func Open(dir string) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: database is locked by another process (is another cowbird running?): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{eventsBucket, pendingBucket, monitorsBucket, actionsBucket, actionRequestsBucket, actionLogsBucket, jobsBucket, linkIndexBucket} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return ensureFailedIndex(tx)
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open %s: %w", path, err), bdb.Close())
	}
	bdb.MaxBatchDelay = batchDelay
	return &DB{bolt: bdb, journal: &groupCommit{}}, nil
}

// Close closes the database file.
func (db *DB) Close() error {
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("close %s: %w", db.Path(), err)
	}
	return nil
}

// Path is the database file's path.
func (db *DB) Path() string { return db.bolt.Path() }

// idKey encodes an event ID as a big-endian key, so keys sort by ID.
func idKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }
