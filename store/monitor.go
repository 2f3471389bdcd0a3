package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Monitor is a stored watch registration (spec §5.2), keyed by (Handler, Path).
type Monitor struct {
	Path      string `json:"path"`
	Handler   string `json:"handler"`
	Recursive bool   `json:"recursive"`
}

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

// PutMonitor stores m, replacing any registration with the same handler and
// path.
func (db *DB) PutMonitor(ctx context.Context, m Monitor) error {
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

// DeleteMonitor removes the registration of handler on path, if any.
func (db *DB) DeleteMonitor(ctx context.Context, handler, path string) error {
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

// Monitors lists the stored registrations sorted by handler, then path.
func (db *DB) Monitors(ctx context.Context) ([]Monitor, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list monitors: %w", err)
	}
	var ms []Monitor
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(monitorsBucket).ForEach(func(k, v []byte) error {
			var m Monitor
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
