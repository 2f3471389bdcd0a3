package store

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// TestRunRetention prunes at once, then stops when its context ends.
func TestRunRetention(t *testing.T) {
	db := openDB(t, t.TempDir())
	for i := range 4 {
		rec := mustAppend(t, db, userEvent(fmt.Sprint("u", i)), "a")
		if err := db.Done(context.Background(), rec.ID, "a"); err != nil {
			t.Fatal(err)
		}
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- db.RunRetention(ctx, time.Hour, 1, logrus.NewEntry(log)) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, err := db.Events(context.Background(), 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events kept, want 1", len(recs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunRetention = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunRetention did not stop with its context")
	}
}
