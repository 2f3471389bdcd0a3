package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cowbird-go/cowbird/monitor"
)

// openDB opens a store in dir and closes it at the end of the test.
func openDB(t testing.TB, dir string) *DB {
	t.Helper()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil { // a second Close is a no-op
			t.Error(err)
		}
	})
	return db
}

func TestOpenCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "cowbird")
	db := openDB(t, dir)
	if want := filepath.Join(dir, FileName); db.Path() != want {
		t.Errorf("Path() = %q, want %q", db.Path(), want)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("data dir mode = %o, want 700", perm)
	}
	if _, err := os.Stat(db.Path()); err != nil {
		t.Errorf("database file: %v", err)
	}
}

func TestOpenLockedFailsWithClearError(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	second, err := Open(dir)
	if err == nil {
		second.Close()
		t.Fatal("second Open of the same dir succeeded")
	}
	for _, want := range []string{db.Path(), "locked by another process"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestCanceledContext(t *testing.T) {
	db := openDB(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"Append":             func() error { _, err := db.Append(ctx, userEvent("alice"), []string{"a"}); return err },
		"Done":               func() error { return db.Done(ctx, 1, "a") },
		"Fail":               func() error { return db.Fail(ctx, 1, "a", "x", noRetry) },
		"Pending":            func() error { _, err := db.Pending(ctx); return err },
		"Event":              func() error { _, err := db.Event(ctx, 1); return err },
		"Events":             func() error { _, err := db.Events(ctx, 0, 1); return err },
		"EventsBefore":       func() error { _, err := db.EventsBefore(ctx, 0, 1); return err },
		"FailedBefore":       func() error { _, err := db.FailedBefore(ctx, 0, 1); return err },
		"Prune":              func() error { _, err := db.Prune(ctx, now(), 0, 0); return err },
		"SaveRegistration":   func() error { return db.SaveRegistration(ctx, monitor.Registration{Path: "/p", Handler: "h"}) },
		"DeleteRegistration": func() error { return db.DeleteRegistration(ctx, "/p", "h") },
		"Registrations":      func() error { _, err := db.Registrations(ctx); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
		})
	}
}

func TestLinkIndex(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := db.UpdateLinkIndex(ctx, map[string][]byte{"a/b": []byte("1"), "a/c": []byte("2"), "d": []byte("3")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.UpdateLinkIndex(ctx, map[string][]byte{"a/b": []byte("4")}, []string{"d", "missing"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir) // survives a restart
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.LinkIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got["a/b"]) != "4" || string(got["a/c"]) != "2" {
		t.Errorf("link index = %q, want a/b=4 a/c=2", got)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.LinkIndex(canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("LinkIndex on a canceled context = %v", err)
	}
	if err := db.UpdateLinkIndex(canceled, nil, []string{"a/b"}); !errors.Is(err, context.Canceled) {
		t.Errorf("UpdateLinkIndex on a canceled context = %v", err)
	}
}
