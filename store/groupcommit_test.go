package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cowbird-go/cowbird/handlers"
)

const hangGuard = 30 * time.Second

// waitFor polls cond until it holds, failing after hangGuard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waiting is the number of journal writes of db not answered yet.
func waiting(db *DB) int {
	g := db.group()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

// blockWrites holds bbolt's write lock until the returned release is
// called, and returns the ID of the transaction that held it.
func blockWrites(t *testing.T, db *DB) (release func() uint64) {
	t.Helper()
	started, unblock, done := make(chan uint64, 1), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- db.bolt.Update(func(tx *bolt.Tx) error {
			started <- uint64(tx.ID())
			<-unblock
			return nil
		})
	}()
	var id uint64
	select {
	case id = <-started:
	case <-time.After(hangGuard):
		t.Fatal("blocking transaction did not start")
	}
	return func() uint64 {
		close(unblock)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return id
	}
}

// lastTxID is the ID of the last committed write transaction.
func lastTxID(t *testing.T, db *DB) uint64 {
	t.Helper()
	var id uint64
	if err := db.bolt.View(func(tx *bolt.Tx) error { id = uint64(tx.ID()); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestConcurrentAppendsDurable appends from many goroutines at once and
// checks that every append got a unique ID, increasing in each goroutine's
// order and agreeing with the receive times, and that all of them are in the
// database after it is closed and opened again.
func TestConcurrentAppendsDurable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 20, 50
	got := make([][]handlers.Record, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				rec, err := db.Append(ctx, userEvent(fmt.Sprintf("w%d-%d", w, i)), []string{"h"})
				if err != nil {
					errs <- err
					return
				}
				got[w] = append(got[w], rec)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, dir)
	byID := map[uint64]string{}
	for w, recs := range got {
		for i, rec := range recs {
			if i > 0 && rec.ID <= recs[i-1].ID {
				t.Errorf("writer %d: ID %d after %d", w, rec.ID, recs[i-1].ID)
			}
			if prev, dup := byID[rec.ID]; dup {
				t.Fatalf("ID %d given to %s and %s", rec.ID, prev, rec.Event.(handlers.UserEvent).UserName)
			}
			byID[rec.ID] = rec.Event.(handlers.UserEvent).UserName
		}
	}
	stored, err := db.Events(ctx, 0, 2*writers*each)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != writers*each {
		t.Fatalf("%d events stored, want %d", len(stored), writers*each)
	}
	for i, rec := range stored {
		if name := rec.Event.(handlers.UserEvent).UserName; byID[rec.ID] != name {
			t.Errorf("event %d is %q, Append returned %q", rec.ID, name, byID[rec.ID])
		}
		if i > 0 && rec.Received.Before(stored[i-1].Received) {
			t.Errorf("event %d received at %s, before event %d (%s)", rec.ID, rec.Received, stored[i-1].ID, stored[i-1].Received)
		}
	}
	if ids := pendingIDs(t, db); len(ids) != writers*each {
		t.Errorf("%d pending, want %d", len(ids), writers*each)
	}
}

// TestWritesShareCommit queues journal writes while a transaction holds the
// write lock and checks that they are committed in at most two transactions
// (the one the first write started, and one for all the others).
func TestWritesShareCommit(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	first := mustAppend(t, db, userEvent("first"), "h1", "h2")

	release := blockWrites(t, db)
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n+2)
	for i := range n {
		wg.Go(func() {
			_, err := db.Append(ctx, userEvent(fmt.Sprint("u", i)), []string{"h"})
			errs <- err
		})
	}
	wg.Go(func() { errs <- db.Done(ctx, first.ID, "h1") })
	wg.Go(func() { errs <- db.Fail(ctx, first.ID, "h2", "down", now().Add(time.Hour)) })
	waitFor(t, "every write queued", func() bool { return waiting(db) == n+2 })
	blocker := release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if txs := lastTxID(t, db) - blocker; txs > 2 {
		t.Errorf("%d writes took %d transactions, want at most 2", n+2, txs)
	}
	if rec := mustEvent(t, db, first.ID); !slices.Equal(rec.Pending, []string{"h2"}) || rec.Failed["h2"] != "down" {
		t.Errorf("first event: pending %v, failed %v", rec.Pending, rec.Failed)
	}
	if ids := pendingIDs(t, db); len(ids) != n+1 {
		t.Errorf("%d pending, want %d", len(ids), n+1)
	}
}

// TestFailedWriteLeavesGroupIntact puts a failing write, a panicking write
// and a Done on an unknown event in one group with appends: the appends are
// committed, the failing writes are not, and each caller gets its own error.
func TestFailedWriteLeavesGroupIntact(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	release := blockWrites(t, db)

	boom := errors.New("boom")
	var wg sync.WaitGroup
	var failErr, missingErr error
	var panicked any
	var recs [4]handlers.Record
	for i := range recs {
		wg.Go(func() {
			var err error
			if recs[i], err = db.Append(ctx, userEvent(fmt.Sprint("u", i)), []string{"h"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Go(func() {
		failErr = db.commit(func(tx *bolt.Tx) error {
			if err := tx.Bucket(eventsBucket).Put(idKey(999), []byte(`{}`)); err != nil {
				return err
			}
			return boom
		})
	})
	wg.Go(func() {
		defer func() { panicked = recover() }()
		_ = db.commit(func(tx *bolt.Tx) error {
			if err := tx.Bucket(eventsBucket).Put(idKey(998), []byte(`{}`)); err != nil {
				return err
			}
			panic("journal bug")
		})
	})
	wg.Go(func() { missingErr = db.Done(ctx, 12345, "h") })
	waitFor(t, "every write queued", func() bool { return waiting(db) == len(recs)+3 })
	release()
	wg.Wait()

	if !errors.Is(failErr, boom) {
		t.Errorf("failing write: err = %v, want boom", failErr)
	}
	if panicked != "journal bug" {
		t.Errorf("panicking write: recovered %v, want its panic in its caller", panicked)
	}
	if !errors.Is(missingErr, ErrNotFound) {
		t.Errorf("Done on an unknown event: err = %v, want ErrNotFound", missingErr)
	}
	for _, id := range []uint64{998, 999} {
		if _, err := db.Event(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("event %d written by a failed write: err = %v", id, err)
		}
	}
	for i, rec := range recs {
		if got := mustEvent(t, db, rec.ID); got.Event != userEvent(fmt.Sprint("u", i)) {
			t.Errorf("event %d = %+v", rec.ID, got.Event)
		}
	}
}

// crashChildEnv names the data directory of the child process of
// TestCrashKeepsAcknowledgedAppends.
const crashChildEnv = "COWBIRD_STORE_CRASH_CHILD"

// TestCrashKeepsAcknowledgedAppends runs a child process that appends from
// many goroutines and acknowledges each append on a pipe once Append has
// returned, kills it with SIGKILL in the middle of the burst, and checks
// that every acknowledged event is in the database.
func TestCrashKeepsAcknowledgedAppends(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("runs a child process")
	}
	dir := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedAppends$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	cmd.ExtraFiles = []*os.File{w} // fd 3 in the child
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Kill once a good part of the burst is acknowledged, then read what the
	// child acknowledged before it died.
	const killAfter = 2000
	acked := map[uint64]string{}
	sc := bufio.NewScanner(r)
	killed := false
	for sc.Scan() {
		id, name, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseUint(id, 10, 64)
		if !ok || err != nil {
			t.Fatalf("bad acknowledgement %q", sc.Text())
		}
		acked[n] = name
		if len(acked) == killAfter && !killed {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if !killed || err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child ended with %v after %d appends, want it killed in the burst", err, len(acked))
	}

	db := openDB(t, dir)
	ctx := context.Background()
	for id, name := range acked {
		rec, err := db.Event(ctx, id)
		if err != nil {
			t.Errorf("acknowledged event %d (%s): %v", id, name, err)
			continue
		}
		if got := rec.Event.(handlers.UserEvent).UserName; got != name {
			t.Errorf("event %d is %q, acknowledged as %q", id, got, name)
		}
	}
	t.Logf("%d appends acknowledged before SIGKILL, all found", len(acked))
}

// crashChild appends from 32 goroutines until it is killed, writing
// "ID name" to fd 3 after each Append returns.
func crashChild(dir string) {
	ack := os.NewFile(3, "ack")
	db, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				name := fmt.Sprintf("g%d-%d", g, i)
				rec, err := db.Append(context.Background(), userEvent(name), []string{"h"})
				if err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(2)
				}
				mu.Lock()
				_, err = fmt.Fprintf(ack, "%d %s\n", rec.ID, name)
				mu.Unlock()
				if err != nil {
					os.Exit(2)
				}
			}
		})
	}
	wg.Wait()
}
