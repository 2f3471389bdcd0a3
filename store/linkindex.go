package store

import (
	"context"
	"fmt"
	"maps"
	"slices"

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
	// bbolt inserts in key order far faster than at random (one 90 000-entry
	// save: 11 s at random here).
	keys := slices.Sorted(maps.Keys(put))
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(linkIndexBucket)
		b.FillPercent = 0.9 // mostly sequential inserts: fuller pages, fewer splits
		for _, k := range slices.Sorted(slices.Values(del)) {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for _, k := range keys {
			if err := b.Put([]byte(k), put[k]); err != nil {
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
