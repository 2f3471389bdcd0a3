package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/cowbird-go/cowbird/actions"
)

// Action bucket names.
var (
	actionsBucket        = []byte("actions")         // action ID -> actions.Record JSON
	actionRequestsBucket = []byte("action_requests") // creator NUL request ID -> action ID
	actionLogsBucket     = []byte("action_logs")     // action ID NUL sequence -> actions.LogEntry JSON
)

// requestKey is creator NUL request ID: request IDs live in each creator's
// namespace.
func requestKey(r actions.Record) ([]byte, error) {
	switch {
	case r.Status.ActionID == "":
		return nil, errors.New("action ID is empty")
	case r.Status.CreatorID == "":
		return nil, errors.New("creator is empty")
	case strings.ContainsRune(r.Status.CreatorID, 0):
		return nil, fmt.Errorf("creator %q contains NUL", r.Status.CreatorID)
	case r.RequestID == "":
		return nil, errors.New("request ID is empty")
	}
	return []byte(r.Status.CreatorID + "\x00" + r.RequestID), nil
}

// logPrefix is the key prefix of action id's log entries.
func logPrefix(id string) []byte { return []byte(id + "\x00") }

func getAction(tx *bolt.Tx, id string) (actions.Record, error) {
	return getJSON[actions.Record](tx, actionsBucket, []byte(id), actions.ErrNotFound)
}

func putAction(tx *bolt.Tx, r actions.Record) error {
	return putJSON(tx, actionsBucket, []byte(r.Status.ActionID), r)
}

// CreateAction implements actions.Store. It stores r, unless r's creator
// already used r's request ID: then it returns that action and false.
func (db *DB) CreateAction(ctx context.Context, r actions.Record) (actions.Record, bool, error) {
	if err := ctx.Err(); err != nil {
		return actions.Record{}, false, fmt.Errorf("create action: %w", err)
	}
	key, err := requestKey(r)
	if err != nil {
		return actions.Record{}, false, fmt.Errorf("create action: %w", err)
	}
	got, created := r, false
	err = db.bolt.Update(func(tx *bolt.Tx) (err error) {
		reqs := tx.Bucket(actionRequestsBucket)
		if id := reqs.Get(key); id != nil {
			got, err = getAction(tx, string(id))
			return err
		}
		if tx.Bucket(actionsBucket).Get([]byte(r.Status.ActionID)) != nil {
			return errors.New("action ID already in use")
		}
		created = true
		if err := reqs.Put(key, []byte(r.Status.ActionID)); err != nil {
			return err
		}
		return putAction(tx, r)
	})
	if err != nil {
		return actions.Record{}, false, fmt.Errorf("create action %s: %w", r.Status.ActionID, err)
	}
	return got, created, nil
}

// Action implements actions.Store.
func (db *DB) Action(ctx context.Context, id string) (actions.Record, error) {
	r, err := view(ctx, db, func(tx *bolt.Tx) (actions.Record, error) { return getAction(tx, id) })
	if err != nil {
		return actions.Record{}, fmt.Errorf("get action %s: %w", id, err)
	}
	return r, nil
}

// Actions implements actions.Store. It lists the actions by ID.
func (db *DB) Actions(ctx context.Context) ([]actions.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list actions: %w", err)
	}
	var rs []actions.Record
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(actionsBucket).ForEach(func(k, v []byte) error {
			r, err := decodeJSON[actions.Record](actionsBucket, v)
			if err != nil {
				return fmt.Errorf("action %s: %w", k, err)
			}
			rs = append(rs, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list actions: %w", err)
	}
	return rs, nil
}

// UpdateAction implements actions.Store: change runs inside the write
// transaction, and an error from it aborts the update.
func (db *DB) UpdateAction(ctx context.Context, id string, change func(*actions.Record) error) (actions.Record, error) {
	if err := ctx.Err(); err != nil {
		return actions.Record{}, fmt.Errorf("update action %s: %w", id, err)
	}
	var r actions.Record
	err := db.bolt.Update(func(tx *bolt.Tx) (err error) {
		if r, err = getAction(tx, id); err != nil {
			return err
		}
		if err := change(&r); err != nil {
			return err
		}
		if r.Status.ActionID != id {
			return errors.New("change altered the action ID")
		}
		return putAction(tx, r)
	})
	if err != nil {
		return actions.Record{}, fmt.Errorf("update action %s: %w", id, err)
	}
	return r, nil
}

// DeleteAction implements actions.Store: when check accepts the action, it
// deletes it with its request ID and its log, and returns it.
func (db *DB) DeleteAction(ctx context.Context, id string, check func(actions.Record) error) (actions.Record, error) {
	if err := ctx.Err(); err != nil {
		return actions.Record{}, fmt.Errorf("delete action %s: %w", id, err)
	}
	var r actions.Record
	err := db.bolt.Update(func(tx *bolt.Tx) (err error) {
		if r, err = getAction(tx, id); err != nil {
			return err
		}
		if err := check(r); err != nil {
			return err
		}
		if err := tx.Bucket(actionsBucket).Delete([]byte(id)); err != nil {
			return err
		}
		key, err := requestKey(r)
		if err != nil {
			return err
		}
		if reqs := tx.Bucket(actionRequestsBucket); bytes.Equal(reqs.Get(key), []byte(id)) {
			if err := reqs.Delete(key); err != nil {
				return err
			}
		}
		prefix := logPrefix(id)
		c := tx.Bucket(actionLogsBucket).Cursor()
		// Deleting through the cursor moves it to the next key.
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return actions.Record{}, fmt.Errorf("delete action %s: %w", id, err)
	}
	return r, nil
}

// AppendActionLog implements actions.Store. Entries of a released (or
// unknown) action are refused with actions.ErrNotFound.
func (db *DB) AppendActionLog(ctx context.Context, id string, e actions.LogEntry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("append to log of action %s: %w", id, err)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("append to log of action %s: %w", id, err)
	}
	err = db.bolt.Batch(func(tx *bolt.Tx) error {
		if tx.Bucket(actionsBucket).Get([]byte(id)) == nil {
			return actions.ErrNotFound
		}
		logs := tx.Bucket(actionLogsBucket)
		seq, err := logs.NextSequence()
		if err != nil {
			return err
		}
		return logs.Put(binary.BigEndian.AppendUint64(logPrefix(id), seq), data)
	})
	if err != nil {
		return fmt.Errorf("append to log of action %s: %w", id, err)
	}
	return nil
}

// ActionLog implements actions.Store: up to limit entries of action id's log
// from the offset-th (0 first), oldest first, and whether more follow.
func (db *DB) ActionLog(ctx context.Context, id string, offset, limit int) ([]actions.LogEntry, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("read log of action %s: %w", id, err)
	}
	if offset < 0 || limit <= 0 {
		return nil, false, fmt.Errorf("read log of action %s: offset %d, limit %d: want offset >= 0 and limit > 0", id, offset, limit)
	}
	var (
		entries []actions.LogEntry
		more    bool
	)
	err := db.bolt.View(func(tx *bolt.Tx) error {
		prefix := logPrefix(id)
		c := tx.Bucket(actionLogsBucket).Cursor()
		i := 0
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			switch {
			case i < offset:
			case len(entries) == limit:
				more = true
				return nil
			default:
				e, err := decodeJSON[actions.LogEntry](actionLogsBucket, v)
				if err != nil {
					return fmt.Errorf("log entry %d: %w", i, err)
				}
				entries = append(entries, e)
			}
			i++
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("read log of action %s: %w", id, err)
	}
	return entries, more, nil
}

var _ actions.Store = (*DB)(nil)
