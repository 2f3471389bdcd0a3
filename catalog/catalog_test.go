package catalog

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/monitor"
	"github.com/cowbird-go/cowbird/store"
)

func quiet() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// running is a monitor whose events reach a Catalog handler and a channel.
type running struct {
	mon    *monitor.Monitor
	events chan handlers.FileEvent
	stop   func()
}

func start(t *testing.T, dataDir string) *running {
	t.Helper()
	db, err := store.Open(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{events: make(chan handlers.FileEvent, 100)}
	r.mon = monitor.New(monitor.Options{
		Store: db,
		Log:   quiet(),
		Sink: func(_ context.Context, ev handlers.FileEvent) error {
			r.events <- ev
			return nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.mon.Run(ctx); close(done) }()
	select {
	case <-r.mon.Started():
	case <-time.After(10 * time.Second):
		t.Fatal("monitor did not start")
	}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			_ = db.Close()
		})
	}
	t.Cleanup(r.stop)
	return r
}

func (r *running) expect(t *testing.T, path string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-r.events:
			if ev.Path == path && ev.Op == handlers.FileCreated && ev.Handler == Name {
				return
			}
		case <-deadline:
			t.Fatalf("no created event for %s", path)
		}
	}
}

func TestCatalogWatchLifecycle(t *testing.T) {
	root, data := t.TempDir(), t.TempDir()
	ws := filepath.Join(root, "alice")
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	r := start(t, data)
	h := New(root, r.mon, quiet())
	if err := h.UserCreated(ctx, handlers.UserEvent{Action: handlers.Created, UserName: "alice"}); err != nil {
		t.Fatal(err)
	}
	// No workspace yet: a warning, not a failure, and no watch.
	if err := h.UserCreated(ctx, handlers.UserEvent{Action: handlers.Created, UserName: "bob"}); err != nil {
		t.Fatalf("missing workspace: %v", err)
	}
	want := []monitor.Registration{{Path: ws, Handler: Name, Recursive: true}}
	if got := r.mon.Registrations(); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("registrations = %v, want %v", got, want)
	}
	if err := os.MkdirAll(filepath.Join(ws, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	r.expect(t, filepath.Join(ws, "sub"))

	// The watch survives a restart.
	r.stop()
	r2 := start(t, data)
	if got := r2.mon.Registrations(); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("registrations after restart = %v, want %v", got, want)
	}
	if err := os.WriteFile(filepath.Join(ws, "sub", "new.nc"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r2.expect(t, filepath.Join(ws, "sub", "new.nc"))

	h2 := New(root, r2.mon, quiet())
	if err := h2.UserDeleted(ctx, handlers.UserEvent{Action: handlers.Deleted, UserName: "alice"}); err != nil {
		t.Fatal(err)
	}
	if got := r2.mon.Registrations(); len(got) != 0 {
		t.Fatalf("registrations after user_deleted = %v", got)
	}
	r2.stop()
	r3 := start(t, data)
	if got := r3.mon.Registrations(); len(got) != 0 {
		t.Fatalf("registration came back after restart: %v", got)
	}
}

// TestCatalogStartWatchesExistingWorkspaces: users whose workspace exists
// before the first start (a switch from the Python Cowbird) are watched.
func TestCatalogStartWatchesExistingWorkspaces(t *testing.T) {
	ws := t.TempDir()
	for _, d := range []string{"alice", "bob", ".trash"} {
		if err := os.Mkdir(filepath.Join(ws, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc", filepath.Join(ws, "planted")); err != nil {
		t.Fatal(err)
	}
	r := start(t, t.TempDir())
	h := New(ws, r.mon, quiet())
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, reg := range r.mon.Registrations() {
		got = append(got, reg.Path)
	}
	want := []string{filepath.Join(ws, "alice"), filepath.Join(ws, "bob")}
	if !slices.Equal(got, want) {
		t.Fatalf("watched %v, want %v (no hidden directory, no symlink)", got, want)
	}
	f := filepath.Join(ws, "bob", "new.txt")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r.expect(t, f)
	if err := New(filepath.Join(ws, "missing"), r.mon, quiet()).Start(context.Background()); err != nil {
		t.Fatalf("Start without workspace_dir = %v, want a warning only", err)
	}
}
