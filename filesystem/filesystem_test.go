package filesystem_test

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/handlers"
)

const allow = "read-allow-recursive"

func (e *env) pub(rel string) string { return filepath.Join(e.ws, "public/wps_outputs", rel) }

func (e *env) userLink(user, bird, sub string) string {
	return filepath.Join(e.ws, user, "wps_outputs", bird, sub)
}

func (e *env) permEvent(action handlers.Action, resID int, user, group string) handlers.PermissionEvent {
	return handlers.PermissionEvent{Action: action, ServiceName: "secure-data-proxy", ServiceType: "api",
		ResourceID: resID, PermName: "read", Access: "allow", Scope: "recursive", User: user, Group: group}
}

func TestUserCreated(t *testing.T) {
	e := newEnv(t, []string{"alice", "bob"}, "bob")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	must(t, e.mg.SetUserPermission("bob", e.routeID, allow))
	aliceSrc := e.file(e.userFile("weaver", "alice", "job1/out.txt"), 0o664)
	bobSrc := e.file(e.userFile("weaver", "bob", "job1/out.txt"), 0o664)
	e.file("weaver/public/job2/x.txt", 0o664)
	must(t, e.h.Resync(ctx(t)))
	bobLink := e.userLink("bob", "weaver", "job1/out.txt")
	assertLinked(t, bobSrc, bobLink)
	bobCtime, pubCtime := ctime(t, bobLink), ctime(t, e.pub("weaver/public/job2/x.txt"))

	must(t, e.h.UserCreated(ctx(t), handlers.UserEvent{Action: handlers.Created, UserName: "alice"}))

	ws := filepath.Join(e.ws, "alice")
	if m := mode(t, ws); m != 0o755 {
		t.Errorf("workspace mode %o, want 755", m)
	}
	if target, err := os.Readlink(filepath.Join(ws, "notebooks")); err != nil || target != filepath.Join(e.jh, "alice") {
		t.Errorf("notebooks -> %q (%v), want %s", target, err, filepath.Join(e.jh, "alice"))
	}
	assertLinked(t, aliceSrc, e.userLink("alice", "weaver", "job1/out.txt"))
	if ctime(t, bobLink) != bobCtime || ctime(t, e.pub("weaver/public/job2/x.txt")) != pubCtime {
		t.Error("user_created touched another user's or a public link")
	}

	t.Run("wrong notebooks target is fixed", func(t *testing.T) {
		nb := filepath.Join(ws, "notebooks")
		must(t, os.Remove(nb))
		must(t, os.Symlink("/elsewhere", nb))
		must(t, e.h.UserCreated(ctx(t), handlers.UserEvent{Action: handlers.Created, UserName: "alice"}))
		if target, _ := os.Readlink(nb); target != filepath.Join(e.jh, "alice") {
			t.Errorf("notebooks -> %q", target)
		}
	})
	t.Run("real notebooks directory is refused", func(t *testing.T) {
		nb := filepath.Join(e.ws, "bob", "notebooks")
		must(t, os.Remove(nb))
		must(t, os.MkdirAll(filepath.Join(nb, "mine"), 0o755))
		err := e.h.UserCreated(ctx(t), handlers.UserEvent{Action: handlers.Created, UserName: "bob"})
		if err == nil || !strings.Contains(err.Error(), "non-symlink directory already exists") {
			t.Fatalf("err = %v, want the non-symlink error", err)
		}
		if !exists(filepath.Join(nb, "mine")) {
			t.Error("real notebooks directory was touched")
		}
	})
	t.Run("invalid and reserved names are refused", func(t *testing.T) {
		for _, name := range []string{"..", "a/b", "public", ".trash", ""} {
			must(t, e.h.UserCreated(ctx(t), handlers.UserEvent{Action: handlers.Created, UserName: name}))
		}
		ents, _ := os.ReadDir(e.ws)
		var names []string
		for _, d := range ents {
			names = append(names, d.Name())
		}
		if !slices.Equal(names, []string{"alice", "bob", "public"}) {
			t.Errorf("workspace_dir holds %v", names)
		}
	})
}

func TestReconcileLinksAndModes(t *testing.T) {
	e := newEnv(t, []string{"alice", "bob"}, "alice", "bob")
	must(t, e.mg.SetUserPermission("alice", e.routeID, "read-allow-recursive"))
	must(t, e.mg.SetUserPermission("alice", e.routeID, "write-allow-recursive"))
	denied := e.route(strings.TrimSuffix(e.userFile("weaver", "alice", "job1/secret.txt"), "/"))
	must(t, e.mg.SetUserPermission("alice", denied, "read-deny-match"))

	pub := e.file("weaver/public/job/out.nc", 0o640)
	top := e.file("top.txt", 0o640)
	aliceOK := e.file(e.userFile("weaver", "alice", "job1/out.txt"), 0o666)
	aliceDenied := e.file(e.userFile("weaver", "alice", "job1/secret.txt"), 0o664)
	bobFile := e.file(e.userFile("weaver", "bob", "out.txt"), 0o664)
	dashed := e.file(e.userFile("bird-x", "alice", "r.txt"), 0o664)
	unknown := e.file("weaver/users/999/r.txt", 0o664)

	st := e.reconcile(filesystem.Scope{})

	assertLinked(t, pub, e.pub("weaver/public/job/out.nc"))
	assertLinked(t, top, e.pub("top.txt"))
	if mode(t, pub) != 0o640 {
		t.Errorf("public source mode %o changed", mode(t, pub))
	}
	assertLinked(t, aliceOK, e.userLink("alice", "weaver", "job1/out.txt"))
	if m := mode(t, aliceOK); m != 0o664 {
		t.Errorf("readable source mode %o, want 664 (write never applied)", m)
	}
	assertAbsent(t, e.userLink("alice", "weaver", "job1/secret.txt"))
	if m := mode(t, aliceDenied); m != 0o660 {
		t.Errorf("denied source mode %o, want 660", m)
	}
	assertAbsent(t, e.userLink("bob", "weaver", "out.txt"))
	if m := mode(t, bobFile); m != 0o660 {
		t.Errorf("bob's source mode %o, want 660", m)
	}
	assertLinked(t, dashed, e.userLink("alice", "bird-x", "r.txt"))
	assertAbsent(t, e.pub(e.userFile("bird-x", "alice", "r.txt")))
	assertAbsent(t, e.pub("weaver/users/999/r.txt"))
	if m := mode(t, unknown); m != 0o664 {
		t.Errorf("unknown user's source mode changed to %o", m)
	}
	for _, d := range []string{e.pub("weaver/public/job"), e.userLink("alice", "weaver", "job1")} {
		if m := mode(t, d); m&0o7 != 0o5 {
			t.Errorf("%s mode %o, want others r-x", d, m)
		}
	}
	want := filesystem.Stats{Sources: 7, LinksCreated: 4, ModesFixed: 3, DirsCreated: 8, Symlinks: 2, Skipped: 1}
	if !equalStats(st, want) {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

// equalStats compares the counters, not the duration nor the changes.
func equalStats(a, b filesystem.Stats) bool { return statsKey(a) == statsKey(b) }

func statsKey(s filesystem.Stats) [10]int {
	return [10]int{s.Sources, s.LinksCreated, s.LinksReplaced, s.LinksRemoved, s.ModesFixed,
		s.DirsCreated, s.DirsRemoved, s.Symlinks, s.Skipped, s.Failed}
}

// partial builds a reconciled tree, then damages it: one link missing, one
// pointing at another inode, an orphan link with its directory, a wrong
// source mode and a wrong link-directory mode.
func partial(t *testing.T) (e *env, fresh map[string]string) {
	e = newEnv(t, []string{"alice", "bob"}, "alice", "bob")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	must(t, e.mg.SetUserPermission("bob", e.routeID, allow))
	for _, f := range []string{"a.txt", "b.txt", "c.txt"} {
		e.file("weaver/public/job/"+f, 0o644)
		e.file(e.userFile("weaver", "alice", "job/"+f), 0o664)
		e.file(e.userFile("weaver", "bob", "job/"+f), 0o664)
	}
	e.reconcile(filesystem.Scope{})
	fresh = snapshot(t, e.root)

	must(t, os.Remove(e.pub("weaver/public/job/a.txt")))
	wrong := e.userLink("alice", "weaver", "job/b.txt")
	must(t, os.Remove(wrong))
	must(t, os.WriteFile(wrong, []byte("stale copy"), 0o644))
	must(t, os.MkdirAll(e.pub("gone/job"), 0o755))
	must(t, os.WriteFile(e.pub("gone/job/old.txt"), nil, 0o644))
	must(t, os.Chmod(filepath.Join(e.wps, e.userFile("weaver", "bob", "job/c.txt")), 0o666))
	must(t, os.Chmod(e.userLink("bob", "weaver", "job"), 0o750))
	return e, fresh
}

func TestReconcileConvergesFromPartialState(t *testing.T) {
	e, fresh := partial(t)
	st := e.reconcile(filesystem.Scope{})
	want := filesystem.Stats{Sources: 9, LinksCreated: 1, LinksReplaced: 1, LinksRemoved: 1, ModesFixed: 2, DirsRemoved: 2}
	if !equalStats(st, want) {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	if d := diffSnapshots(fresh, snapshot(t, e.root)); len(d) > 0 {
		t.Errorf("state differs from a fresh reconcile:\n%s", strings.Join(d, "\n"))
	}
	if st := e.reconcile(filesystem.Scope{}); !equalStats(st, filesystem.Stats{Sources: 9}) {
		t.Errorf("second run changed things: %+v", st)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	e, _ := partial(t)
	before := snapshot(t, e.root)
	dry, err := e.h.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{DryRun: true})
	must(t, err)
	if d := diffSnapshots(before, snapshot(t, e.root)); len(d) > 0 {
		t.Fatalf("dry run changed:\n%s", strings.Join(d, "\n"))
	}
	real := e.reconcile(filesystem.Scope{})
	if !equalStats(dry, real) {
		t.Errorf("dry run %+v, real run %+v", dry, real)
	}
	ops := map[filesystem.Op]int{}
	for _, c := range dry.Changes {
		ops[c.Op]++
	}
	if ops[filesystem.OpLink] != 1 || ops[filesystem.OpReplace] != 1 || ops[filesystem.OpRemove] != 1 ||
		ops[filesystem.OpMode] != 2 || ops[filesystem.OpRmdir] != 2 || len(dry.Changes) != 7 {
		t.Errorf("changes %+v", dry.Changes)
	}
}

func TestPermissionEvents(t *testing.T) {
	e := newEnv(t, []string{"alice", "bob"}, "alice", "bob")
	must(t, e.mg.SetUserPermission("bob", e.routeID, allow))
	a1 := e.file(e.userFile("weaver", "alice", "job/1.txt"), 0o664)
	a2 := e.file(e.userFile("weaver", "alice", "job/2.txt"), 0o664)
	b1 := e.file(e.userFile("weaver", "bob", "job/1.txt"), 0o664)
	pub := e.file("weaver/public/p.txt", 0o644)
	e.reconcile(filesystem.Scope{})
	assertAbsent(t, e.userLink("alice", "weaver", "job/1.txt"))
	bobCtime, pubCtime := ctime(t, e.userLink("bob", "weaver", "job/1.txt")), ctime(t, e.pub("weaver/public/p.txt"))
	untouched := func(t *testing.T) {
		t.Helper()
		if ctime(t, e.userLink("bob", "weaver", "job/1.txt")) != bobCtime || ctime(t, b1) != bobCtime ||
			ctime(t, e.pub("weaver/public/p.txt")) != pubCtime || mode(t, pub) != 0o644 {
			t.Error("bob's or public files were touched")
		}
	}

	t.Run("user permission created", func(t *testing.T) {
		must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
		must(t, e.h.PermissionCreated(ctx(t), e.permEvent(handlers.Created, e.routeID, "alice", "")))
		assertLinked(t, a1, e.userLink("alice", "weaver", "job/1.txt"))
		assertLinked(t, a2, e.userLink("alice", "weaver", "job/2.txt"))
		if mode(t, a1) != 0o664 {
			t.Errorf("mode %o", mode(t, a1))
		}
		untouched(t)
	})
	t.Run("deny on one file route", func(t *testing.T) {
		id := e.route(e.userFile("weaver", "alice", "job/2.txt"))
		must(t, e.mg.SetUserPermission("alice", id, "read-deny-match"))
		ctime1 := ctime(t, a1)
		must(t, e.h.PermissionCreated(ctx(t), e.permEvent(handlers.Created, id, "alice", "")))
		assertAbsent(t, e.userLink("alice", "weaver", "job/2.txt"))
		if mode(t, a2) != 0o660 {
			t.Errorf("denied mode %o", mode(t, a2))
		}
		if ctime(t, a1) != ctime1 {
			t.Error("the other file of alice was touched")
		}
		untouched(t)
	})
	t.Run("user permission deleted", func(t *testing.T) {
		must(t, e.mg.DeleteUserPermission("alice", e.routeID, "read"))
		must(t, e.h.PermissionDeleted(ctx(t), e.permEvent(handlers.Deleted, e.routeID, "alice", "")))
		assertAbsent(t, e.userLink("alice", "weaver", "job/1.txt"))
		if mode(t, a1) != 0o660 {
			t.Errorf("mode %o", mode(t, a1))
		}
		untouched(t)
	})
	t.Run("group permission", func(t *testing.T) {
		_, err := e.mg.AddGroup("team")
		must(t, err)
		must(t, e.mg.AddMember("alice", "team"))
		weaver := e.route("weaver")
		must(t, e.mg.SetGroupPermission("team", weaver, allow))
		must(t, e.h.PermissionCreated(ctx(t), e.permEvent(handlers.Created, weaver, "", "team")))
		assertLinked(t, a1, e.userLink("alice", "weaver", "job/1.txt"))
		untouched(t)
	})
	t.Run("other services and write are ignored", func(t *testing.T) {
		before := snapshot(t, e.root)
		svc, err := e.mg.AddService("thredds", "thredds")
		must(t, err)
		ev := e.permEvent(handlers.Created, svc, "alice", "")
		ev.ServiceName, ev.ServiceType = "thredds", "thredds"
		must(t, e.h.PermissionCreated(ctx(t), ev))
		ev = e.permEvent(handlers.Created, e.routeID, "alice", "")
		ev.PermName = "write"
		must(t, e.h.PermissionCreated(ctx(t), ev))
		if d := diffSnapshots(before, snapshot(t, e.root)); len(d) > 0 {
			t.Errorf("changed:\n%s", strings.Join(d, "\n"))
		}
	})
}

func TestPlantedSymlinkIsNeverFollowed(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	src := e.file(e.userFile("weaver", "alice", "job/out.txt"), 0o664)
	e.reconcile(filesystem.Scope{})
	outside := filepath.Join(e.root, "outside")
	must(t, os.MkdirAll(filepath.Join(outside, "job"), 0o700))
	must(t, os.WriteFile(filepath.Join(outside, "job", "out.txt"), []byte("mine"), 0o600))
	must(t, os.WriteFile(filepath.Join(outside, "keep.txt"), []byte("mine"), 0o600))
	want := snapshot(t, outside)

	plant := func(t *testing.T, rel string) {
		t.Helper()
		p := filepath.Join(e.ws, "alice", rel)
		must(t, os.RemoveAll(p))
		must(t, os.Symlink(outside, p))
	}
	check := func(t *testing.T) {
		t.Helper()
		if d := diffSnapshots(want, snapshot(t, outside)); len(d) > 0 {
			t.Fatalf("outside directory changed:\n%s", strings.Join(d, "\n"))
		}
	}
	for _, rel := range []string{"wps_outputs/weaver", "wps_outputs"} {
		t.Run("reconcile "+rel, func(t *testing.T) {
			plant(t, rel)
			e.reconcile(filesystem.Scope{})
			check(t)
			assertLinked(t, src, e.userLink("alice", "weaver", "job/out.txt"))
		})
		t.Run("permission "+rel, func(t *testing.T) {
			plant(t, rel)
			must(t, e.h.PermissionCreated(ctx(t), e.permEvent(handlers.Created, e.routeID, "alice", "")))
			check(t)
			assertLinked(t, src, e.userLink("alice", "weaver", "job/out.txt"))
		})
	}
	t.Run("user deleted", func(t *testing.T) {
		plant(t, "wps_outputs/weaver")
		must(t, e.h.UserDeleted(ctx(t), handlers.UserEvent{Action: handlers.Deleted, UserName: "alice"}))
		check(t)
		assertAbsent(t, filepath.Join(e.ws, "alice"))
	})
}

func TestHandleFile(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	ev := func(op handlers.FileOp, p string, dir bool) {
		t.Helper()
		must(t, e.h.HandleFile(ctx(t), handlers.FileEvent{Op: op, Path: p, IsDir: dir, Handler: filesystem.Name}))
	}
	pub := e.file("weaver/public/job/x.txt", 0o644)
	ev(handlers.FileCreated, pub, false)
	assertLinked(t, pub, e.pub("weaver/public/job/x.txt"))

	user := e.file(e.userFile("weaver", "alice", "job/y.txt"), 0o660)
	ev(handlers.FileCreated, user, false)
	assertLinked(t, user, e.userLink("alice", "weaver", "job/y.txt"))
	if mode(t, user) != 0o664 {
		t.Errorf("mode %o", mode(t, user))
	}
	must(t, os.Chmod(user, 0o666))
	ev(handlers.FileModified, user, false)
	if mode(t, user) != 0o664 {
		t.Errorf("modified: mode %o, want 664", mode(t, user))
	}

	must(t, os.Remove(pub))
	ev(handlers.FileDeleted, pub, false)
	assertAbsent(t, e.pub("weaver/public/job/x.txt"))
	assertAbsent(t, e.pub("weaver/public/job"))

	newDir := filepath.Join(e.wps, "raven")
	f1 := e.file("raven/a/1.txt", 0o644)
	f2 := e.file("raven/users/abc/b.txt", 0o644) // not a user id: public
	e.file(e.userFile("raven", "alice", "c.txt"), 0o664)
	ev(handlers.FileCreated, newDir, true)
	assertLinked(t, f1, e.pub("raven/a/1.txt"))
	assertLinked(t, filepath.Join(e.wps, e.userFile("raven", "alice", "c.txt")), e.userLink("alice", "raven", "c.txt"))
	assertLinked(t, f2, e.pub("raven/users/abc/b.txt"))

	must(t, os.RemoveAll(newDir))
	ev(handlers.FileDeleted, newDir, true)
	assertAbsent(t, e.pub("raven"))
	assertAbsent(t, e.userLink("alice", "raven", ""))
	assertLinked(t, user, e.userLink("alice", "weaver", "job/y.txt"))

	ev(handlers.FileCreated, filepath.Join(e.root, "elsewhere.txt"), false) // outside: ignored
}

func TestUserDeleted(t *testing.T) {
	for _, policy := range []filesystem.UserDeletedPolicy{filesystem.DeleteWorkspace, filesystem.ArchiveWorkspace} {
		t.Run(string(policy), func(t *testing.T) {
			e := newEnv(t, []string{"alice"})
			cfg := e.cfg
			cfg.OnUserDeleted = policy
			h := e.newHandler(cfg, nil)
			must(t, h.UserCreated(ctx(t), handlers.UserEvent{Action: handlers.Created, UserName: "alice"}))
			must(t, os.WriteFile(filepath.Join(e.ws, "alice", "notes.txt"), []byte("x"), 0o644))
			must(t, h.UserDeleted(ctx(t), handlers.UserEvent{Action: handlers.Deleted, UserName: "alice"}))
			assertAbsent(t, filepath.Join(e.ws, "alice"))
			if !exists(filepath.Join(e.jh)) {
				t.Fatal("notebooks target removed")
			}
			archived, _ := filepath.Glob(filepath.Join(e.ws, ".trash", "alice-*", "notes.txt"))
			if got := len(archived); (policy == filesystem.ArchiveWorkspace) != (got == 1) {
				t.Errorf("archived copies: %d", got)
			}
			must(t, h.UserDeleted(ctx(t), handlers.UserEvent{Action: handlers.Deleted, UserName: "alice"}))
		})
	}
}

func TestMagpieErrorsAreTransient(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	e.file(e.userFile("weaver", "alice", "out.txt"), 0o664)
	e.mg.FailNext("GET /users", 1, http.StatusServiceUnavailable)
	_, err := e.h.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{})
	if err == nil || !handlers.IsTransient(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	e.reconcile(filesystem.Scope{}) // and the retry works
}

func TestNoSecureDataProxyServiceMeansReadable(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	svc, ok := e.mg.Lookup("secure-data-proxy")
	if !ok {
		t.Fatal("no service")
	}
	must(t, e.mg.DeleteResource(svc))
	src := e.file(e.userFile("weaver", "alice", "out.txt"), 0o661)
	e.reconcile(filesystem.Scope{})
	assertLinked(t, src, e.userLink("alice", "weaver", "out.txt"))
	if m := mode(t, src); m != 0o664 {
		t.Errorf("mode %o, want 664", m)
	}
}

// watch records what the handler asks of the monitor.
type watch struct {
	mu       sync.Mutex
	regs     []string
	changing []string
	register error
}

func (w *watch) Register(_ context.Context, path, handler string, recursive bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.regs = append(w.regs, handler+":"+path+":"+map[bool]string{true: "recursive", false: "flat"}[recursive])
	return w.register
}

func (w *watch) Changing(path string, others fs.FileMode) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.changing = append(w.changing, fmt.Sprintf("%s %o", path, others))
}

func TestStartAndOwnWrites(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	cfg := e.cfg
	cfg.WPSOutputsDir = filepath.Join(e.root, "new", "wps")
	w := &watch{}
	h := e.newHandler(cfg, w)
	must(t, h.Start(ctx(t)))
	if !exists(cfg.WPSOutputsDir) {
		t.Fatal("wps_outputs_dir not created")
	}
	if want := []string{"FileSystem:" + cfg.WPSOutputsDir + ":recursive"}; !slices.Equal(w.regs, want) {
		t.Errorf("registrations %v, want %v", w.regs, want)
	}
	src := filepath.Join(cfg.WPSOutputsDir, e.userFile("weaver", "alice", "out.txt"))
	must(t, os.MkdirAll(filepath.Dir(src), 0o755))
	must(t, os.WriteFile(src, nil, 0o664))
	_, err := h.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{})
	must(t, err)
	if want := []string{src + " 0"}; !slices.Equal(w.changing, want) {
		t.Errorf("changing %v, want %v (the mode change of the denied source)", w.changing, want)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cases := map[string]struct {
		cfg  filesystem.Config
		want string
	}{
		"missing dirs":     {filesystem.Config{}, "workspace_dir: required"},
		"escaping public":  {filesystem.Config{WorkspaceDir: "/a", JupyterhubUserDataDir: "/b", WPSOutputsDir: "/c", PublicWorkspaceWPSOutputsSubpath: "../x"}, "public_workspace_wps_outputs_subpath"},
		"bad policy":       {filesystem.Config{WorkspaceDir: "/a", JupyterhubUserDataDir: "/b", WPSOutputsDir: "/c", OnUserDeleted: "keep"}, "on_user_deleted"},
		"slash in dirname": {filesystem.Config{WorkspaceDir: "/a", JupyterhubUserDataDir: "/b", WPSOutputsDir: "/c", NotebooksDirName: "a/b"}, "notebooks_dir_name"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := filesystem.New(c.cfg, newEnv(t, nil).sessions, nil, quietLog(), filesystem.Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want mention of %s", err, c.want)
			}
		})
	}
}

// A burst of file events asks Magpie about as often as one event; a
// permission event makes the next file event ask again.
func TestFileEventsShareMagpieAnswers(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	ev := func(p string) {
		t.Helper()
		must(t, e.h.HandleFile(ctx(t), handlers.FileEvent{Op: handlers.FileCreated, Path: p, Handler: filesystem.Name}))
	}
	ev(e.file(e.userFile("weaver", "alice", "job/0.nc"), 0o660))
	first := e.client.Requests()
	for i := 1; i <= 50; i++ {
		p := e.file(e.userFile("weaver", "alice", fmt.Sprintf("job/%d.nc", i)), 0o660)
		ev(p)
		assertLinked(t, p, e.userLink("alice", "weaver", fmt.Sprintf("job/%d.nc", i)))
	}
	// Two sessions at most, should the events straddle the reuse window.
	if n := e.client.Requests() - first; n > 2*first {
		t.Fatalf("50 more file events made %d Magpie requests; the first one made %d", n, first)
	}

	must(t, e.mg.SetUserPermission("alice", e.routeID, "read-deny-recursive"))
	must(t, e.h.PermissionCreated(ctx(t), handlers.PermissionEvent{Action: handlers.Created, ServiceName: "secure-data-proxy",
		ServiceType: "api", ResourceID: e.routeID, PermName: "read", Access: "deny", Scope: "recursive", User: "alice"}))
	p := e.file(e.userFile("weaver", "alice", "job/late.nc"), 0o664)
	ev(p)
	if mode(t, p) != 0o660 {
		t.Fatalf("a file after the deny has mode %o, want 660", mode(t, p))
	}
}

// magpie_concurrency is read as an integer, or a string holding one (a
// rendered template); unset is the default.
func TestMagpieConcurrencyKey(t *testing.T) {
	for value, want := range map[string]int{"": filesystem.DefaultMagpieConcurrency, "64": 64, `"32"`: 32} {
		yml := "handlers:\n  FileSystem:\n    active: true\n    workspace_dir: /ws\n    jupyterhub_user_data_dir: /jh\n    wps_outputs_dir: /wps\n"
		if value != "" {
			yml += "    magpie_concurrency: " + value + "\n"
		}
		path := filepath.Join(t.TempDir(), "config.yml")
		must(t, os.WriteFile(path, []byte(yml), 0o600))
		cfg, err := config.Load(path, quietLog(), []config.HandlerKind{filesystem.Descriptor.HandlerKind})
		must(t, err)
		hc, _ := cfg.Handler(filesystem.Name)
		if got := config.SettingsOf[filesystem.Config](hc).MagpieConcurrency; got != want {
			t.Errorf("magpie_concurrency %s: got %d, want %d", value, got, want)
		}
	}
}
