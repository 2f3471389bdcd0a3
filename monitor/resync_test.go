package monitor

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/cowbird-go/cowbird/handlers"
)

// blockingResync is a Resync held until it takes a value from release (or
// its context ends), counting the resyncs in flight.
type blockingResync struct {
	release           chan struct{}
	inFlight, maxSeen atomic.Int32
}

func (b *blockingResync) resync(ctx context.Context, _ Registration) (bool, error) {
	n := b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	for m := b.maxSeen.Load(); n > m && !b.maxSeen.CompareAndSwap(m, n); m = b.maxSeen.Load() {
	}
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return true, nil
}

// Events are delivered while the start-up resync runs (a reconcile can take
// minutes; meanwhile the kernel queue must be drained and new outputs
// linked).
func TestEventsDeliveredDuringResync(t *testing.T) {
	root := t.TempDir()
	b := &blockingResync{release: make(chan struct{})}
	h := start(t, Options{Resync: b.resync}, nil, rec(root, "fs")) // its resync is held
	f := filepath.Join(root, "f")
	write(t, f, "x")
	h.expect([]handlers.FileEvent{fe(created, f, false, "fs")}, fe(modified, f, false, "fs"))
}

// An overflow while a registration's resync runs resyncs it once more after
// that one, never twice at once; a resync held when Run stops ends with it.
func TestOverflowDuringResyncRunsItAgain(t *testing.T) {
	root := t.TempDir()
	b := &blockingResync{release: make(chan struct{})}
	h := start(t, Options{Resync: b.resync}, nil, rec(root, "fs"))
	for range 2 {
		select {
		case h.m.inject <- fsnotify.ErrEventOverflow:
		case <-time.After(hangGuard):
			t.Fatal("event loop did not take the overflow")
		}
	}
	select {
	case r := <-h.resyncs:
		t.Fatalf("resync of %v started while one runs", r)
	default:
	}
	b.release <- struct{}{}
	h.waitResyncs(1) // the one asked meanwhile, once for both overflows
	if m := b.maxSeen.Load(); m != 1 {
		t.Errorf("%d resyncs of one registration at once, want 1", m)
	}
	h.stop() // returns although that resync is held: it ends with Run's context
}
