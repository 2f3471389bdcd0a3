package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// linkIndexBucket holds the FileSystem handler's index of leaf directories
// found in sync: source directory -> encoded entry (opaque here).
var linkIndexBucket = []byte("linkindex")

// LinkIndex returns every stored entry of the link index.
func (db *DB) LinkIndex(ctx context.Context) (map[string][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load link index: %w", err)
	}
	out := map[string][]byte{}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(linkIndexBucket).ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load link index: %w", err)
	}
	return out, nil
}

// UpdateLinkIndex stores put and deletes del from the link index, in one
// transaction.
func (db *DB) UpdateLinkIndex(ctx context.Context, put map[string][]byte, del []string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("update link index: %w", err)
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(linkIndexBucket)
		for _, k := range del {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for k, v := range put {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update link index (%d entries, %d deletions): %w", len(put), len(del), err)
	}
	return nil
}
