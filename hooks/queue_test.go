package hooks

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/cowbird-go/cowbird/handlers"
)

// Hooks of one user run one at a time in arrival order, while another
// user's hook runs in parallel.
func TestPerUserFIFO(t *testing.T) {
	dir := t.TempDir()
	for _, g := range []string{"a", "b", "c"} {
		if err := syscall.Mkfifo(filepath.Join(dir, "gate-"+g), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h, rec, _ := newHandler(t, "hooks:\n"+selfAccount("dave", "erin")+`
  permission_created:
    run_as: "{{Event.UserName}}"
    tasks:
      - command: /bin/sh
        args: [-c, 'echo "started $1"; read x < "$2/gate-$1"; echo "ended $1"', sh, "{{Event.ResourceFullName}}", "`+dir+`"]
`)
	submit := func(user, res string) *recorded {
		go func() {
			// The outcome is read from the recorder.
			_ = h.PermissionCreated(context.Background(), handlers.PermissionEvent{Action: handlers.Created, User: user, ResourceFullName: res})
		}()
		return await(t, rec.started) // Start comes after the run took its place in line
	}
	open := func(g string) {
		f, err := os.OpenFile(filepath.Join(dir, "gate-"+g), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("go\n"); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	finished := func(r *recorded) []string {
		t.Helper()
		if err := await(t, r.finished); err != nil {
			t.Fatalf("%s: %v", r.label, err)
		}
		return r.log()
	}

	a := submit("dave", "a")
	if l := await(t, a.lines); l != "task 1: started a" {
		t.Fatalf("first line of a = %q", l)
	}
	b := submit("dave", "b") // queued behind a
	c := submit("erin", "c") // another user: runs now
	if l := await(t, c.lines); l != "task 1: started c" {
		t.Fatalf("first line of c = %q", l)
	}
	open("c")
	if got := finished(c); !slices.Equal(got, []string{"task 1: ended c"}) {
		t.Errorf("rest of c's log = %q", got)
	}
	if got := b.log(); len(got) != 0 {
		t.Fatalf("b ran while a, earlier for the same user, was running: %q", got)
	}
	open("a")
	if got := finished(a); !slices.Equal(got, []string{"task 1: ended a"}) {
		t.Errorf("rest of a's log = %q", got)
	}
	if l := await(t, b.lines); l != "task 1: started b" {
		t.Fatalf("first line of b = %q", l)
	}
	open("b")
	finished(b)
}

// A run that stops waiting keeps its place until the runs before it are
// done, so the runs after it still wait for those.
func TestQueueCanceledWaiterKeepsOrder(t *testing.T) {
	q := newQueue(4)
	first := q.enqueue("u")
	if err := first.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.enqueue("u").wait(ctx); err == nil {
		t.Fatal("wait with a canceled context = nil error")
	}
	third := q.enqueue("u")
	ready := make(chan error, 1)
	go func() { ready <- third.wait(context.Background()) }()
	select {
	case err := <-ready:
		t.Fatalf("third run got its turn (%v) while the first still runs", err)
	default:
	}
	first.release()
	if err := await(t, ready); err != nil {
		t.Fatal(err)
	}
	third.release()
	if len(q.tails) != 0 || len(q.slots) != 0 {
		t.Errorf("queue not empty after every release: %d users, %d slots", len(q.tails), len(q.slots))
	}
}

// max_parallel bounds the sessions running at once, across users.
func TestQueueSlots(t *testing.T) {
	q := newQueue(1)
	a := q.enqueue("a")
	if err := a.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.enqueue("b").wait(ctx); err == nil {
		t.Error("a second user got a slot while the only one was taken")
	}
	a.release()
	b := q.enqueue("b")
	if err := b.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.release()
}
