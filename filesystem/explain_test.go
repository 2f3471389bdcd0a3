package filesystem_test

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// fact returns the fact named check, failing the test when there is none.
func fact(t *testing.T, x filesystem.Explanation, check string) filesystem.Fact {
	t.Helper()
	for _, f := range x.Facts {
		if f.Check == check {
			return f
		}
	}
	t.Fatalf("no fact %q in:\n%s", check, dump(x))
	return filesystem.Fact{}
}

// wantFact checks that the fact named check is ok (or not) and that its
// detail holds every one of parts.
func wantFact(t *testing.T, x filesystem.Explanation, check string, ok bool, parts ...string) filesystem.Fact {
	t.Helper()
	f := fact(t, x, check)
	if f.OK != ok {
		t.Errorf("fact %q ok = %v, want %v:\n%s", check, f.OK, ok, dump(x))
	}
	for _, p := range parts {
		if !strings.Contains(f.Detail, p) {
			t.Errorf("fact %q detail %q lacks %q", check, f.Detail, p)
		}
	}
	if !f.OK && f.Fix == "" {
		t.Errorf("fact %q is not ok and has no fix", check)
	}
	return f
}

// noFact checks that no fact named check was reported (not checked).
func noFact(t *testing.T, x filesystem.Explanation, check string) {
	t.Helper()
	for _, f := range x.Facts {
		if f.Check == check {
			t.Errorf("fact %q reported, want none (not checkable):\n%s", check, dump(x))
		}
	}
}

func dump(x filesystem.Explanation) string {
	var b strings.Builder
	for _, f := range x.Facts {
		fmt.Fprintf(&b, "  %-5v %-18s %s", f.OK, f.Check, f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(&b, " [fix: %s]", f.Fix)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func explainPath(t *testing.T, e *env, p string) filesystem.Explanation {
	t.Helper()
	x, err := e.h.ExplainPath(ctx(t), p)
	must(t, err)
	return x
}

func explainUser(t *testing.T, e *env, name string) filesystem.Explanation {
	t.Helper()
	x, err := e.h.ExplainUser(ctx(t), name)
	must(t, err)
	return x
}

// wantOK checks that every fact of x is ok and that it proposes no fix.
func wantOK(t *testing.T, x filesystem.Explanation) {
	t.Helper()
	if !x.OK || x.Fix != "" {
		t.Errorf("explanation ok = %v, fix %q; want ok:\n%s", x.OK, x.Fix, dump(x))
	}
}

// TestExplainPublicFile: a linked public output is explained without
// Magpie, even when Magpie is down; a public output no user can read is
// reported with the chmod that fixes it.
func TestExplainPublicFile(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	src := e.file("weaver/job1/out.nc", 0o644)
	closed := e.file("top.txt", 0o640)
	e.reconcile(filesystem.Scope{})
	e.mg.Inject("*", magpietest.Fault{Status: http.StatusServiceUnavailable, Times: 1000})

	x := explainPath(t, e, src)
	wantOK(t, x)
	wantFact(t, x, "source", true, "regular file", fmt.Sprintf("inode %d", ino(t, src)), "-rw-r--r--", "2 links")
	wantFact(t, x, "owner", true, "public data")
	wantFact(t, x, "others bits", true, "r--")
	wantFact(t, x, "link", true, e.pub("weaver/job1/out.nc"), fmt.Sprintf("inode %d", ino(t, src)))
	wantFact(t, x, "link directories", true, "3 from "+e.pub(""), "others r-x")
	noFact(t, x, "magpie")
	if x.Path != src || x.CheckedAt.IsZero() {
		t.Errorf("path %q, checked at %v", x.Path, x.CheckedAt)
	}

	x = explainPath(t, e, closed)
	f := wantFact(t, x, "others bits", false, "---", "no user read access")
	if f.Fix != "chmod o+r "+closed || x.Fix != f.Fix {
		t.Errorf("fix %q (explanation's %q), want chmod o+r", f.Fix, x.Fix)
	}
	wantFact(t, x, "link", true)
}

// TestExplainLinkMissing: alice may read her output, its link was
// removed; the fact says so with the command that fixes it, which does.
func TestExplainLinkMissing(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	src := e.file(e.userFile("weaver", "alice", "job1/out.txt"), 0o664)
	e.reconcile(filesystem.Scope{})
	x := explainPath(t, e, src)
	wantOK(t, x)
	wantFact(t, x, "owner", true, fmt.Sprintf("Magpie user with id %d", e.ids["alice"]))
	wantFact(t, x, "magpie user", true, fmt.Sprintf("alice (id %d)", e.ids["alice"]))
	wantFact(t, x, "workspace", true, filepath.Join(e.ws, "alice"), "real directory")
	wantFact(t, x, "service", true, "secure-data-proxy (resource")
	wantFact(t, x, "route", true, fmt.Sprintf("secure-data-proxy/wps_outputs (resource %d): the closest route", e.routeID))
	wantFact(t, x, "read permission", true, "allow for alice", "a permission of the user alice", fmt.Sprintf("user:%d:alice", e.ids["alice"]))
	wantFact(t, x, "others bits", true, "r--")
	wantFact(t, x, "public copy", true, "none")
	wantFact(t, x, "link", true, "a hardlink of the source")

	link := e.userLink("alice", "weaver", "job1/out.txt")
	must(t, os.Remove(link))
	x = explainPath(t, e, src)
	f := wantFact(t, x, "link", false, "missing: "+link)
	if f.Fix != "cowbird resync FileSystem --user alice" || x.Fix != f.Fix || x.OK {
		t.Errorf("fix %q, explanation fix %q ok %v", f.Fix, x.Fix, x.OK)
	}
	wantFact(t, x, "read permission", true)

	e.reconcile(filesystem.Scope{User: "alice"}) // what the fix runs
	wantOK(t, explainPath(t, e, src))
}

// TestExplainWrongInodeAndMode: a link replaced by a copy, and a source
// whose others bits were changed, are both reported with their values.
func TestExplainWrongInodeAndMode(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.route("weaver"), allow))
	src := e.file(e.userFile("weaver", "alice", "out.txt"), 0o664)
	e.reconcile(filesystem.Scope{})
	link := e.userLink("alice", "weaver", "out.txt")
	must(t, os.Remove(link))
	must(t, os.WriteFile(link, []byte("stale copy"), 0o644))
	must(t, os.Chmod(src, 0o666))
	must(t, os.Chmod(filepath.Dir(link), 0o750))

	x := explainPath(t, e, src)
	wantFact(t, x, "route", true, "secure-data-proxy/wps_outputs/weaver (resource")
	wantFact(t, x, "others bits", false, "rw-, want r--")
	wantFact(t, x, "link", false, link, fmt.Sprintf("inode %d, the source's is %d", ino(t, link), ino(t, src)))
	wantFact(t, x, "link directories", false, filepath.Dir(link), "others ---, want r-x")
	if x.OK || x.Fix != "cowbird resync FileSystem --user alice" {
		t.Errorf("ok %v fix %q", x.OK, x.Fix)
	}
	e.reconcile(filesystem.Scope{User: "alice"})
	wantOK(t, explainPath(t, e, src))
}

// TestExplainDeniedByGroup: alice's group denies the route; the read
// permission fact names the group as Magpie's reason, the absent link is
// as expected, and a link left there is reported as a leak.
func TestExplainDeniedByGroup(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.AddMember("alice", "users"))
	must(t, e.mg.SetGroupPermission("users", e.route("weaver"), "read-deny-recursive"))
	src := e.file(e.userFile("weaver", "alice", "job1/out.txt"), 0o664)
	e.reconcile(filesystem.Scope{})

	x := explainPath(t, e, src)
	f := wantFact(t, x, "read permission", false, "deny for alice on secure-data-proxy/wps_outputs/weaver", "a permission of their group users", "group:")
	if !strings.Contains(f.Fix, "read-allow on secure-data-proxy/wps_outputs/weaver") {
		t.Errorf("fix %q", f.Fix)
	}
	wantFact(t, x, "others bits", true, "---")
	wantFact(t, x, "link", true, "none at "+e.userLink("alice", "weaver", "job1/out.txt"), "as expected: alice may not read it")
	noFact(t, x, "link directories")
	if x.OK || x.Fix != f.Fix {
		t.Errorf("ok %v fix %q, want the permission's", x.OK, x.Fix)
	}

	link := e.userLink("alice", "weaver", "job1/out.txt")
	must(t, os.MkdirAll(filepath.Dir(link), 0o755))
	must(t, os.Link(src, link))
	x = explainPath(t, e, src)
	wantFact(t, x, "link", false, link+" exists though alice may not read it")
	if x.Fix != "cowbird resync FileSystem --user alice" { // not granting the permission
		t.Errorf("fix %q, want the resync that removes the link", x.Fix)
	}
}

// TestExplainMagpieDown: with Magpie refusing every call, a user output's
// facts stop at Magpie, and the user's disk facts are still checked.
func TestExplainMagpieDown(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	src := e.file(e.userFile("weaver", "alice", "out.txt"), 0o664)
	e.reconcile(filesystem.Scope{})
	e.mg.Inject("*", magpietest.Fault{Status: http.StatusServiceUnavailable, Times: 1000})

	x := explainPath(t, e, src)
	wantFact(t, x, "source", true)
	wantFact(t, x, "owner", true)
	f := wantFact(t, x, "magpie", false, "Magpie did not answer the list of users", "503")
	if !strings.Contains(f.Fix, "GET /readyz") || x.Fix != f.Fix {
		t.Errorf("fix %q", f.Fix)
	}
	for _, c := range []string{"magpie user", "workspace", "read permission", "others bits", "link"} {
		noFact(t, x, c)
	}

	x = explainUser(t, e, "alice")
	wantFact(t, x, "magpie", false, "about the user alice")
	wantFact(t, x, "workspace", true)
	wantFact(t, x, "notebooks", true, "-> "+filepath.Join(e.jh, "alice"), "does not exist yet")
	wantFact(t, x, "link root", true)
	noFact(t, x, "outputs")
}

// TestExplainNoWorkspace: bob's output is not linked because he has no
// workspace; the fix is the user.resync action, and nothing after the
// workspace is claimed.
func TestExplainNoWorkspace(t *testing.T) {
	e := newEnv(t, []string{"alice", "bob"}, "alice")
	must(t, e.mg.SetUserPermission("bob", e.routeID, allow))
	src := e.file(e.userFile("weaver", "bob", "out.txt"), 0o664)
	e.reconcile(filesystem.Scope{})

	x := explainPath(t, e, src)
	wantFact(t, x, "magpie user", true, "bob")
	f := wantFact(t, x, "workspace", false, filepath.Join(e.ws, "bob")+" is missing")
	if !strings.Contains(f.Fix, `user.resync with body {"user_name": "bob"}`) || x.Fix != f.Fix {
		t.Errorf("fix %q", f.Fix)
	}
	for _, c := range []string{"read permission", "others bits", "link"} {
		noFact(t, x, c)
	}

	x = explainUser(t, e, "bob")
	wantFact(t, x, "magpie user", true, fmt.Sprintf("bob (id %d)", e.ids["bob"]))
	wantFact(t, x, "workspace", false, "missing")
	noFact(t, x, "notebooks")

	x = explainUser(t, e, "carol")
	wantFact(t, x, "magpie user", false, "Magpie has no user carol")
	wantFact(t, x, "workspace", false, "missing")

	unknown := e.file("weaver/users/999/r.txt", 0o664)
	x = explainPath(t, e, unknown)
	wantFact(t, x, "magpie user", false, "no user with id 999")
}

// TestExplainWithoutReason: a Magpie whose effective answer gives no
// reason gets the read rows found on the route chain instead.
func TestExplainWithoutReason(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.AddMember("alice", "users"))
	must(t, e.mg.SetGroupPermission("users", e.routeID, allow))
	src := e.file(e.userFile("weaver", "alice", "out.txt"), 0o664)
	e.reconcile(filesystem.Scope{})
	e.mg.Inject("GET /users/{user}/resources/{id}/permissions", magpietest.Fault{Status: http.StatusOK,
		Body: `{"permissions": [{"name": "read", "access": "allow", "scope": "match", "type": "effective"}]}`})

	x := explainPath(t, e, src)
	wantOK(t, x)
	wantFact(t, x, "read permission", true, "Magpie gave no reason",
		"read permissions found, closest first: secure-data-proxy/wps_outputs: read-allow-recursive (a permission of their group users")
}

// TestExplainPlantedSymlink: a link directory replaced by a symlink to a
// tree holding a hardlink of the source is reported, never followed.
func TestExplainPlantedSymlink(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	src := e.file(e.userFile("weaver", "alice", "out.txt"), 0o664)
	e.reconcile(filesystem.Scope{})
	elsewhere := filepath.Join(e.root, "elsewhere")
	must(t, os.MkdirAll(elsewhere, 0o755))
	must(t, os.Link(src, filepath.Join(elsewhere, "out.txt")))
	dir := filepath.Dir(e.userLink("alice", "weaver", "out.txt"))
	must(t, os.RemoveAll(dir))
	must(t, os.Symlink(elsewhere, dir))

	x := explainPath(t, e, src)
	wantFact(t, x, "link", false, "a symlink or a file is on the way")
	wantFact(t, x, "link directories", false, dir+" is a symlink")
	e.reconcile(filesystem.Scope{User: "alice"})
	wantOK(t, explainPath(t, e, src))
}

// TestExplainUser: a user's workspace, notebooks symlink and outputs, in
// sync, then damaged in four ways, each counted with an example.
func TestExplainUser(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	must(t, e.mg.SetUserPermission("alice", e.route(e.userFile("raven", "alice", "secret")), "read-deny-recursive"))
	var srcs []string
	for _, sub := range []string{"job1/a.txt", "job1/b.txt", "job2/c.txt"} {
		srcs = append(srcs, e.file(e.userFile("weaver", "alice", sub), 0o664))
	}
	secret := e.file(e.userFile("raven", "alice", "secret/s.txt"), 0o664)
	e.file("weaver/public.txt", 0o644)
	e.reconcile(filesystem.Scope{})

	x := explainUser(t, e, "alice")
	wantOK(t, x)
	wantFact(t, x, "magpie user", true, fmt.Sprintf("alice (id %d)", e.ids["alice"]))
	wantFact(t, x, "workspace", true, "drwxr-xr-x")
	wantFact(t, x, "notebooks", true, "-> "+filepath.Join(e.jh, "alice"))
	wantFact(t, x, "link root", true, filepath.Join(e.ws, "alice", "wps_outputs"))
	wantFact(t, x, "outputs", true, "4 under", "in 2 birds, 3 readable: 3 linked")
	wantFact(t, x, "denied outputs", true, "1 denied by Magpie (e.g. "+secret+"), none linked")
	wantFact(t, x, "modes", true, "all 4")
	wantFact(t, x, "stale links", true)
	if x.User != "alice" || x.Path != "" {
		t.Errorf("subject %q %q", x.User, x.Path)
	}

	must(t, os.Remove(e.userLink("alice", "weaver", "job1/a.txt")))
	must(t, os.Chmod(srcs[2], 0o660))
	must(t, os.WriteFile(e.userLink("alice", "weaver", "job2/old.txt"), nil, 0o644))
	nb := filepath.Join(e.ws, "alice", "notebooks")
	must(t, os.Remove(nb))
	must(t, os.Symlink("/somewhere/else", nb))
	x = explainUser(t, e, "alice")
	wantFact(t, x, "notebooks", false, "points to /somewhere/else, want "+filepath.Join(e.jh, "alice"))
	wantFact(t, x, "outputs", false, "3 readable: 2 linked, 1 missing (e.g. "+e.userLink("alice", "weaver", "job1/a.txt")+"), 0 in place")
	wantFact(t, x, "modes", false, "1 with others bits that differ from their read permission (e.g. "+srcs[2]+": ---, want r--)")
	wantFact(t, x, "stale links", false, "1 in the link root mirroring no output of alice (e.g. "+e.userLink("alice", "weaver", "job2/old.txt")+")")
	if x.Fix != "cowbird resync FileSystem --user alice" {
		t.Errorf("fix %q", x.Fix)
	}
	e.reconcile(filesystem.Scope{User: "alice"})
	wantOK(t, explainUser(t, e, "alice"))
}

// TestExplainRefusesBadInput: paths outside wps_outputs_dir, relative
// paths, the root itself and unusable names are the caller's error.
func TestExplainRefusesBadInput(t *testing.T) {
	e := newEnv(t, nil)
	for _, p := range []string{"/etc/passwd", "weaver/out.txt", e.wps, e.wps + "/../user_workspaces/x", e.ws + "/alice", e.wps + "/a\x00b"} {
		if _, err := e.h.ExplainPath(ctx(t), p); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("ExplainPath(%q) = %v, want fs.ErrInvalid", p, err)
		}
	}
	for _, u := range []string{"", "a/b", ".."} {
		if _, err := e.h.ExplainUser(ctx(t), u); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("ExplainUser(%q) = %v, want fs.ErrInvalid", u, err)
		}
	}
	for _, in := range [][2]string{{"", ""}, {e.wps + "/x", "alice"}} {
		if _, err := e.h.Explain(ctx(t), in[0], in[1]); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Explain(%q, %q) = %v, want fs.ErrInvalid", in[0], in[1], err)
		}
	}
	_, err := e.h.ExplainPath(ctx(t), "/etc/passwd")
	if err == nil || !strings.Contains(err.Error(), "not under wps_outputs_dir "+e.wps) {
		t.Errorf("error %v does not say why", err)
	}
	x := explainUser(t, e, "public") // the public link root's name
	wantFact(t, x, "user name", false, "reserved")
	x = explainPath(t, e, e.wps+"/weaver/missing.txt")
	wantFact(t, x, "source", false, "no such file")
	wantFact(t, x, "link", true, "as expected: the source does not exist")
}
