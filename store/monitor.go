package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/cowbird-go/cowbird/monitor"
)

// The monitor registrations (spec §5.2) are stored keyed by (Handler, Path);
// DB implements monitor.Store.
var _ monitor.Store = (*DB)(nil)

// monitorKey is handler NUL path: keys sort by handler, then path.
func monitorKey(handler, path string) ([]byte, error) {
	switch {
	case handler == "":
		return nil, errors.New("handler is empty")
	case strings.ContainsRune(handler, 0):
		return nil, fmt.Errorf("handler %q contains NUL", handler)
	case path == "":
		return nil, errors.New("path is empty")
	}
	return []byte(handler + "\x00" + path), nil
}

// SaveRegistration implements monitor.Store: it stores m, replacing any
// registration with the same handler and path.
func (db *DB) SaveRegistration(ctx context.Context, m monitor.Registration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put monitor %s %q: %w", m.Handler, m.Path, err)
	}
	key, err := monitorKey(m.Handler, m.Path)
	if err != nil {
		return fmt.Errorf("put monitor: %w", err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("put monitor %s %q: %w", m.Handler, m.Path, err)
	}
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(monitorsBucket).Put(key, data)
	})
	if err != nil {
		return fmt.Errorf("put monitor %s %q: %w", m.Handler, m.Path, err)
	}
	return nil
}

// DeleteRegistration implements monitor.Store: it removes the registration
// of handler on path, if any.
func (db *DB) DeleteRegistration(ctx context.Context, path, handler string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete monitor %s %q: %w", handler, path, err)
	}
	key, err := monitorKey(handler, path)
	if err != nil {
		return fmt.Errorf("delete monitor: %w", err)
	}
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(monitorsBucket).Delete(key)
	})
	if err != nil {
		return fmt.Errorf("delete monitor %s %q: %w", handler, path, err)
	}
	return nil
}

// Registrations implements monitor.Store: the stored registrations sorted by
// handler, then path.
func (db *DB) Registrations(ctx context.Context) ([]monitor.Registration, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list monitors: %w", err)
	}
	var ms []monitor.Registration
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(monitorsBucket).ForEach(func(k, v []byte) error {
			var m monitor.Registration
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode monitor %q: %w", k, err)
			}
			ms = append(ms, m)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list monitors: %w", err)
	}
	return ms, nil
}
