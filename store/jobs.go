package store

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// jobsBucket holds the Geoserver handler's durable jobs: id -> opaque JSON.
var jobsBucket = []byte("jobs")

// PutJob stores data under job id, replacing what was there.
func (db *DB) PutJob(ctx context.Context, id string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put job %q: %w", id, err)
	}
	if id == "" {
		return errors.New("put job: id is empty")
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(jobsBucket).Put([]byte(id), data)
	})
	if err != nil {
		return fmt.Errorf("put job %q: %w", id, err)
	}
	return nil
}

// DeleteJob removes job id, if any.
func (db *DB) DeleteJob(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete job %q: %w", id, err)
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(jobsBucket).Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete job %q: %w", id, err)
	}
	return nil
}

// Jobs returns every stored job's data, sorted by id.
func (db *DB) Jobs(ctx context.Context) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	var out [][]byte
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(jobsBucket).ForEach(func(_, v []byte) error {
			out = append(out, append([]byte(nil), v...))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}
