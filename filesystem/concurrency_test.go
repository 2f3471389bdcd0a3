package filesystem_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
)

// countingMagpie counts the permission requests of the sessions it wraps:
// in total, in flight, and the most in flight at once. hold, if set, is
// called once a request is counted in flight, before it is sent.
type countingMagpie struct {
	filesystem.Magpie
	c *permCounter
}

type permCounter struct {
	total, inFlight, peak atomic.Int32
	hold                  func(user string)
}

func (m countingMagpie) UserPermissions(ctx context.Context, user string, resID int, v magpie.View) ([]magpie.Permission, error) {
	m.c.total.Add(1)
	n := m.c.inFlight.Add(1)
	defer m.c.inFlight.Add(-1)
	for p := m.c.peak.Load(); n > p && !m.c.peak.CompareAndSwap(p, n); p = m.c.peak.Load() {
	}
	if m.c.hold != nil {
		m.c.hold(user)
	}
	return m.Magpie.UserPermissions(ctx, user, resID, v)
}

// userNames returns n user names, user00, user01, ...
func userNames(n int) []string {
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("user%02d", i))
	}
	return names
}

// holdUntilInFlight returns a counter whose permission requests are each
// held until bound are in flight at once (so that a test needs that many at
// once, whatever the machine's speed).
func holdUntilInFlight(t *testing.T, bound int32) *permCounter {
	reached := make(chan struct{})
	var once sync.Once
	c := &permCounter{}
	c.hold = func(string) {
		if c.inFlight.Load() >= bound {
			once.Do(func() { close(reached) })
		}
		select {
		case <-reached:
		case <-time.After(10 * time.Second):
			t.Errorf("%d requests in flight at most, want %d at once", c.peak.Load(), bound)
			once.Do(func() { close(reached) })
		}
	}
	return c
}

// counted returns a handler whose Magpie sessions count their permission
// requests in c.
func (e *env) counted(c *permCounter, opts filesystem.Options) *filesystem.Handler {
	h, err := filesystem.New(e.cfg, func() filesystem.Magpie { return countingMagpie{e.client.WithCache(), c} },
		nil, quietLog(), opts)
	must(e.t, err)
	e.t.Cleanup(func() { _ = h.Close() })
	return h
}

// A reconcile asks Magpie about many users concurrently, never more than
// MagpieConcurrency requests at once, and ends as a reconcile that asked
// one at a time. Each request is held until the bound is reached (so the
// test needs that many at once, whatever the machine's speed).
func TestMagpieRequestsBounded(t *testing.T) {
	const users, bound = 40, 4
	names := userNames(users)
	e := newEnv(t, names, names...)
	e.mg.SetLatency(2 * time.Millisecond)
	for i, u := range names {
		if i%2 == 0 {
			must(t, e.mg.SetUserPermission(u, e.routeID, allow))
		}
		for _, bird := range []string{"raven", "weaver"} {
			e.file(e.userFile(bird, u, "job/out.nc"), 0o664)
		}
	}
	e.file("weaver/public/p.nc", 0o644)

	c := holdUntilInFlight(t, bound)
	h := e.counted(c, filesystem.Options{Workers: 8, MagpieConcurrency: bound})
	st, err := h.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{})
	must(t, err)
	if p := c.peak.Load(); p > bound {
		t.Errorf("%d permission requests in flight at once, want at most %d", p, bound)
	}
	if n := c.total.Load(); n != users {
		t.Errorf("%d permission requests, want one per user (%d)", n, users)
	}
	got := snapshot(t, e.root)

	// The same end state as a reconcile asking one question at a time.
	for _, u := range names {
		must(t, os.RemoveAll(filepath.Join(e.ws, u, "wps_outputs")))
		must(t, os.RemoveAll(filepath.Join(e.ws, u, "notebooks")))
	}
	must(t, os.RemoveAll(e.pub("")))
	serial := e.counted(&permCounter{}, filesystem.Options{Workers: 1, MagpieConcurrency: 1})
	st1, err := serial.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{})
	must(t, err)
	if d := diffSnapshots(got, snapshot(t, e.root)); len(d) > 0 {
		t.Errorf("concurrent and serial reconciles differ: %v", d)
	}
	if st.LinksCreated != st1.LinksCreated || st.LinksCreated != users+1 {
		t.Errorf("links created: %d concurrently, %d serially, want %d", st.LinksCreated, st1.LinksCreated, users+1)
	}
}

// gate holds the permission requests about one user until opened.
type gate struct {
	user    string
	entered chan struct{} // closed at the first request held
	open    chan struct{}
	once    sync.Once
}

func newGate(user string) *gate {
	return &gate{user: user, entered: make(chan struct{}), open: make(chan struct{})}
}

func (g *gate) hold(user string) {
	if user != g.user {
		return
	}
	g.once.Do(func() { close(g.entered) })
	<-g.open
}

// heldReconcile starts a full reconcile by a handler whose Magpie answers
// about user are held, and returns once it asks about user: reconciled
// gets its error, release lets it go on (at the test's end at the latest).
func (e *env) heldReconcile(t *testing.T, user string, opts filesystem.Options) (h *filesystem.Handler, reconciled <-chan error, release func()) {
	t.Helper()
	g := newGate(user)
	h = e.counted(&permCounter{hold: g.hold}, opts)
	c := ctx(t)
	ch := make(chan error, 1)
	go func() {
		_, err := h.Reconcile(c, filesystem.Scope{}, filesystem.ReconcileOptions{})
		ch <- err
	}()
	release = sync.OnceFunc(func() { close(g.open) })
	t.Cleanup(release)
	waitFor(t, c, g.entered, "the reconcile asks about "+user)
	return h, ch, release
}

// waitFor waits for ch, failing the test at the context's deadline.
func waitFor(t *testing.T, c context.Context, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-c.Done():
		t.Fatalf("%s: not before the deadline", what)
	}
}

// A file event runs to its end while a full reconcile waits for Magpie:
// the reconcile holds the disk lock only a section at a time, never while
// it waits.
func TestFileEventDuringReconcile(t *testing.T) {
	e := newEnv(t, []string{"alice", "bob"}, "alice", "bob")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	must(t, e.mg.SetUserPermission("bob", e.routeID, allow))
	a := e.file(e.userFile("weaver", "alice", "job/a.nc"), 0o664)
	e.file("weaver/public/old.nc", 0o644)
	h, reconciled, release := e.heldReconcile(t, "alice", filesystem.Options{Workers: 2})
	c := ctx(t)

	pub := e.file("weaver/public/new.nc", 0o644)
	b := e.file(e.userFile("weaver", "bob", "job/b.nc"), 0o664)
	for _, p := range []string{pub, b} {
		done := make(chan struct{})
		var err error
		go func() {
			defer close(done)
			err = h.HandleFile(c, handlers.FileEvent{Op: handlers.FileCreated, Path: p, Handler: filesystem.Name})
		}()
		waitFor(t, c, done, "the file event of "+p+" during the reconcile")
		must(t, err)
	}
	assertLinked(t, pub, e.pub("weaver/public/new.nc"))
	assertLinked(t, b, e.userLink("bob", "weaver", "job/b.nc"))
	select {
	case err := <-reconciled:
		t.Fatalf("the reconcile ended (%v) without alice's answer", err)
	default:
	}

	release()
	select {
	case err := <-reconciled:
		must(t, err)
	case <-c.Done():
		t.Fatal("the reconcile did not end")
	}
	assertLinked(t, a, e.userLink("alice", "weaver", "job/a.nc"))
	assertLinked(t, pub, e.pub("weaver/public/new.nc"))
	assertLinked(t, b, e.userLink("bob", "weaver", "job/b.nc"))
}

// user_deleted waits for a reconcile in progress, even one waiting for
// Magpie, so that the reconcile (which found the workspace at its start)
// cannot recreate part of it.
func TestUserDeletedWaitsForReconcile(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	e.file(e.userFile("weaver", "alice", "job/a.nc"), 0o664)
	h, reconciled, release := e.heldReconcile(t, "alice", filesystem.Options{Workers: 2})
	c := ctx(t)
	deleted := make(chan error, 1)
	go func() { deleted <- h.UserDeleted(c, handlers.UserEvent{Action: handlers.Deleted, UserName: "alice"}) }()
	release()
	for _, ch := range []<-chan error{reconciled, deleted} {
		select {
		case err := <-ch:
			must(t, err)
		case <-c.Done():
			t.Fatal("reconcile or user_deleted did not end")
		}
	}
	if ws := filepath.Join(e.ws, "alice"); exists(ws) {
		t.Errorf("%s exists after user_deleted: %v", ws, snapshot(t, ws))
	}
}

// A file event that runs between two sections of a reconcile is not undone
// by a later section acting on what an earlier one saw: here the public
// mirror of a bird whose outputs were gone when the reconcile listed the
// outputs is emptied after a file event linked the bird's new outputs; the
// reconcile reconciles the event's path again at its end.
func TestFileEventBetweenSectionsNotUndone(t *testing.T) {
	e := newEnv(t, nil)
	e.file("weaver/public/job/a.nc", 0o644)
	e.file("raven/public/job/r.nc", 0o644)
	e.reconcile(filesystem.Scope{})
	must(t, os.RemoveAll(filepath.Join(e.wps, "weaver"))) // no event: the mirror is stale

	c := ctx(t)
	var src string
	var once sync.Once
	filesystem.SetBeforeJobs(e.h, func(mirrors []string) {
		for _, m := range mirrors {
			if m != "public/wps_outputs/weaver" {
				continue
			}
			// The reconcile saw weaver gone and is about to empty its
			// mirror: weaver's outputs are back, and their event runs.
			once.Do(func() {
				src = e.file("weaver/public/job/a.nc", 0o644)
				ev := handlers.FileEvent{Op: handlers.FileCreated, IsDir: true, Path: filepath.Join(e.wps, "weaver"), Handler: filesystem.Name}
				if err := e.h.HandleFile(c, ev); err != nil {
					t.Errorf("file event: %v", err)
				}
				if link := e.pub("weaver/public/job/a.nc"); !exists(link) || ino(t, link) != ino(t, src) {
					t.Errorf("the file event did not link %s", link)
				}
			})
		}
	})
	st := e.reconcile(filesystem.Scope{})
	if src == "" {
		t.Fatalf("the reconcile did not empty weaver's mirror: %+v", st)
	}
	assertLinked(t, src, e.pub("weaver/public/job/a.nc"))
}

// The periodic reconcile (ReuseAnswers) takes Magpie's answers from the
// previous full reconcile, until a permission event of the user drops
// them, or they are older than AnswerMaxAge; an admin resync asks afresh.
func TestReusedAnswersDroppedByPermissionEvent(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	weaver := e.route("weaver")
	a := e.file(e.userFile("weaver", "alice", "job/a.nc"), 0o664) // route weaver
	b := e.file(e.userFile("raven", "alice", "job/b.nc"), 0o664)  // route wps_outputs
	c := &permCounter{}
	h := e.counted(c, filesystem.Options{Workers: 2})
	periodic := func() {
		t.Helper()
		_, err := h.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{ReuseAnswers: true})
		must(t, err)
	}
	periodic()
	assertLinked(t, a, e.userLink("alice", "weaver", "job/a.nc"))
	assertLinked(t, b, e.userLink("alice", "raven", "job/b.nc"))

	// Changed in Magpie, its webhook not seen yet: the periodic reconcile
	// reuses the answers and asks nothing.
	must(t, e.mg.SetUserPermission("alice", e.routeID, "read-deny-recursive"))
	before := c.total.Load()
	periodic()
	if n := c.total.Load() - before; n != 0 {
		t.Errorf("%d permission requests, want the answers reused", n)
	}
	assertLinked(t, b, e.userLink("alice", "raven", "job/b.nc"))

	// A permission event of alice (here on weaver's route, whose files it
	// reconciles) drops all her answers: the next periodic run asks again
	// and unlinks b.
	must(t, h.PermissionCreated(ctx(t), e.permEvent(handlers.Created, weaver, "alice", "")))
	before = c.total.Load()
	periodic()
	if n := c.total.Load() - before; n == 0 {
		t.Error("no permission request after alice's permission event")
	}
	assertAbsent(t, e.userLink("alice", "raven", "job/b.nc"))
	assertAbsent(t, e.userLink("alice", "weaver", "job/a.nc"))

	// A group's permission event drops every answer.
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	periodic() // answers kept: still unlinked
	assertAbsent(t, e.userLink("alice", "raven", "job/b.nc"))
	_, err := e.mg.AddGroup("team")
	must(t, err)
	must(t, h.PermissionCreated(ctx(t), e.permEvent(handlers.Created, weaver, "", "team")))
	periodic()
	assertLinked(t, b, e.userLink("alice", "raven", "job/b.nc"))

	// An admin resync asks afresh.
	must(t, e.mg.SetUserPermission("alice", e.routeID, "read-deny-recursive"))
	periodic()
	assertLinked(t, b, e.userLink("alice", "raven", "job/b.nc"))
	_, err = h.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{})
	must(t, err)
	assertAbsent(t, e.userLink("alice", "raven", "job/b.nc"))

	// Answers older than AnswerMaxAge are asked again.
	young := e.counted(c, filesystem.Options{Workers: 2, AnswerMaxAge: time.Nanosecond})
	for range 2 {
		before = c.total.Load()
		_, err = young.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{ReuseAnswers: true})
		must(t, err)
		if n := c.total.Load() - before; n == 0 {
			t.Error("answers older than AnswerMaxAge reused")
		}
	}
}

// renamedMagpie answers the resource id old with tree, as Magpie would
// after the service was renamed and another one took its name.
type renamedMagpie struct {
	filesystem.Magpie
	old  *atomic.Int64
	tree *magpie.Resource
}

func (m renamedMagpie) Resource(ctx context.Context, id int) (*magpie.Resource, error) {
	if int64(id) == m.old.Load() && m.tree != nil {
		return m.tree, nil
	}
	return m.Magpie.Resource(ctx, id)
}

// A run asks for the service's tree by the id an earlier run found, at the
// same time as the service; when the service has another id now, that tree
// is not used.
func TestServiceReplacedBetweenRuns(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	a := e.file(e.userFile("weaver", "alice", "job/a.nc"), 0o664)
	svc, ok := e.mg.Lookup("secure-data-proxy")
	if !ok {
		t.Fatal("no secure-data-proxy service")
	}
	old, err := e.client.Resource(ctx(t), svc)
	must(t, err)
	var oldID atomic.Int64
	oldID.Store(int64(svc))
	h, err := filesystem.New(e.cfg, func() filesystem.Magpie { return renamedMagpie{e.client.WithCache(), &oldID, old} },
		nil, quietLog(), filesystem.Options{Workers: 2})
	must(t, err)
	t.Cleanup(func() { _ = h.Close() })
	reconcile := func() {
		t.Helper()
		_, err := h.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{})
		must(t, err)
	}
	reconcile()
	assertLinked(t, a, e.userLink("alice", "weaver", "job/a.nc"))

	must(t, e.mg.DeleteResource(svc)) // its old id still answers the old tree
	svc, err = e.mg.AddService("secure-data-proxy", "api")
	must(t, err)
	route, err := e.mg.AddResource(svc, "wps_outputs", "route") // alice may not read it
	must(t, err)
	reconcile()
	assertAbsent(t, e.userLink("alice", "weaver", "job/a.nc"))

	must(t, e.mg.SetUserPermission("alice", route, allow))
	reconcile()
	assertLinked(t, a, e.userLink("alice", "weaver", "job/a.nc"))
}

// A group's permission event asks Magpie about its members concurrently,
// never more than MagpieConcurrency requests at once, one request per
// member, and links what each member may now read.
func TestGroupPermissionRequestsBounded(t *testing.T) {
	const users, bound = 40, 4
	names := userNames(users)
	e := newEnv(t, names, names...)
	_, err := e.mg.AddGroup("team")
	must(t, err)
	srcs := map[string]string{}
	for i, u := range names {
		if i%4 != 3 {
			must(t, e.mg.AddMember(u, "team"))
		}
		for _, bird := range []string{"raven", "weaver"} {
			srcs[u+"/"+bird] = e.file(e.userFile(bird, u, "job/out.nc"), 0o664)
		}
	}
	must(t, e.mg.SetGroupPermission("team", e.routeID, allow))

	c := holdUntilInFlight(t, bound)
	h := e.counted(c, filesystem.Options{Workers: 2, MagpieConcurrency: bound})
	must(t, h.PermissionCreated(ctx(t), e.permEvent(handlers.Created, e.routeID, "", "team")))
	if p := c.peak.Load(); p > bound {
		t.Errorf("%d permission requests in flight at once, want at most %d", p, bound)
	}
	members := users - users/4
	if n := c.total.Load(); n != int32(members) {
		t.Errorf("%d permission requests, want one per member (%d)", n, members)
	}
	for i, u := range names {
		for _, bird := range []string{"raven", "weaver"} {
			link := e.userLink(u, bird, "job/out.nc")
			if i%4 != 3 {
				assertLinked(t, srcs[u+"/"+bird], link)
			} else {
				assertAbsent(t, link)
			}
		}
	}
}

// user_created does not wait for a reconcile in progress (here one held in
// Magpie's answer about alice): carol's workspace, notebooks symlink and
// links are made meanwhile, and are still there once the reconcile ended.
func TestUserCreatedDuringReconcile(t *testing.T) {
	e := newEnv(t, []string{"alice", "carol"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	must(t, e.mg.SetUserPermission("carol", e.routeID, allow))
	a := e.file(e.userFile("weaver", "alice", "job/a.nc"), 0o664)
	cs := e.file(e.userFile("weaver", "carol", "job/c.nc"), 0o664)
	d := e.file(e.userFile("raven", "carol", "job/d.nc"), 0o664)
	h, reconciled, release := e.heldReconcile(t, "alice", filesystem.Options{Workers: 2})
	c := ctx(t)

	done := make(chan error, 1)
	go func() { done <- h.UserCreated(c, handlers.UserEvent{Action: handlers.Created, UserName: "carol"}) }()
	select {
	case err := <-done:
		must(t, err)
	case <-c.Done():
		t.Fatal("user_created waited for the reconcile")
	}
	assertLinked(t, cs, e.userLink("carol", "weaver", "job/c.nc"))
	if _, err := os.Readlink(filepath.Join(e.ws, "carol", "notebooks")); err != nil {
		t.Errorf("carol's notebooks symlink: %v", err)
	}

	release()
	must(t, <-reconciled)
	assertLinked(t, a, e.userLink("alice", "weaver", "job/a.nc"))
	assertLinked(t, cs, e.userLink("carol", "weaver", "job/c.nc"))
	assertLinked(t, d, e.userLink("carol", "raven", "job/d.nc"))
}
