package filesystem

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
	"github.com/cowbird-go/cowbird/safefs"
)

// Fact is one thing Explain checked. Its Check is one of: source, owner,
// magpie user, workspace, public copy, service, route, read permission,
// others bits, link, link directories (for a path); magpie user,
// workspace, notebooks, link root, outputs, denied outputs, modes, stale
// links (for a user); magpie when Magpie did not answer.
type Fact = handlers.Fact

// Explanation is the chain of facts that decides what a user sees of a WPS
// output, or of a user's workspace.
type Explanation struct {
	// Path (a WPS output, absolute) or User is what was explained.
	Path string `json:"path,omitempty"`
	User string `json:"user,omitempty"`
	// OK is true when every fact is.
	OK bool `json:"ok"`
	// Fix is the fix of the first fact that is not OK, a denied read
	// permission's last: the one thing to do.
	Fix   string `json:"fix,omitempty"`
	Facts []Fact `json:"facts"`
	// CheckedAt is when the facts were checked.
	CheckedAt time.Time `json:"checked_at"`
}

// Explain explains the WPS output path (absolute) or, when path is "", the
// user: the form in which the HTTP API serves ExplainPath and ExplainUser
// (api.Explainer). Exactly one of path and user must be given.
func (h *Handler) Explain(ctx context.Context, path, user string) (any, error) {
	switch {
	case (path == "") == (user == ""):
		return nil, fmt.Errorf("explain: give one of a WPS output path and a user name (%w)", fs.ErrInvalid)
	case path != "":
		return h.ExplainPath(ctx, path)
	}
	return h.ExplainUser(ctx, user)
}

// ExplainPath checks, now, what decides whether the owner of the WPS
// output p (absolute, under wps_outputs_dir), or everyone for a public
// output, sees it in a workspace: the file, whose data it is, the Magpie
// user and their workspace, the secure-data-proxy route that applies, the
// effective read permission and Magpie's reason for it, the expected and
// actual others bits, and the link with its inode. It changes nothing,
// takes no lock and never follows a symlink. A path that is not absolute or
// not under wps_outputs_dir is refused with an error wrapping fs.ErrInvalid;
// Magpie not answering is a fact, not an error.
func (h *Handler) ExplainPath(ctx context.Context, p string) (Explanation, error) {
	switch {
	case strings.IndexByte(p, 0) >= 0:
		return Explanation{}, fmt.Errorf("explain path %q: contains NUL (%w)", p, fs.ErrInvalid)
	case !filepath.IsAbs(p):
		return Explanation{}, fmt.Errorf("explain path %q: not absolute (%w)", p, fs.ErrInvalid)
	}
	rel, err := h.sourceRel(p)
	if err != nil {
		return Explanation{}, fmt.Errorf("explain %w (%w)", err, fs.ErrInvalid)
	}
	if rel == "" {
		return Explanation{}, fmt.Errorf("explain path %q: wps_outputs_dir itself: give a file under it (%w)", p, fs.ErrInvalid)
	}
	e := h.newExplainer(Explanation{Path: filepath.Join(h.cfg.WPSOutputsDir, rel)})
	e.path(ctx, rel)
	return e.done(), nil
}

// ExplainUser checks, now, the user's workspace, notebooks symlink, link
// root and, with their Magpie id, every one of their WPS outputs: how many
// are readable, linked, missing, linked in place of another file, denied
// yet linked, with wrong others bits, and what the link root holds that
// mirrors nothing. A name that cannot be a path component is refused with
// an error wrapping fs.ErrInvalid.
func (h *Handler) ExplainUser(ctx context.Context, name string) (Explanation, error) {
	if err := safefs.ValidName(name); err != nil {
		return Explanation{}, fmt.Errorf("explain user: %w (%w)", err, fs.ErrInvalid)
	}
	e := h.newExplainer(Explanation{User: name})
	e.user(ctx, name)
	return e.done(), nil
}

// explainer gathers the facts of one explanation.
type explainer struct {
	h  *Handler
	mp Magpie // a caching session: each Magpie answer is asked once
	x  Explanation
}

func (h *Handler) newExplainer(x Explanation) *explainer {
	x.CheckedAt = time.Now().UTC()
	return &explainer{h: h, mp: h.sessions(), x: x}
}

// done sets OK and Fix: the fix of the first fact that is not OK, a
// denied read permission last, since it is Magpie's decision where the
// others are defects (a link left despite it is fixed by cowbird, not by
// granting the permission).
func (e *explainer) done() Explanation {
	e.x.OK = true
	decision := ""
	for _, f := range e.x.Facts {
		switch {
		case f.OK:
		case f.Check == "read permission":
			e.x.OK = false
			decision = cmp.Or(decision, f.Fix)
		default:
			e.x.OK = false
			e.x.Fix = cmp.Or(e.x.Fix, f.Fix)
		}
	}
	e.x.Fix = cmp.Or(e.x.Fix, decision)
	if e.x.Facts == nil {
		e.x.Facts = []Fact{}
	}
	return e.x
}

func (e *explainer) ok(check, format string, args ...any) {
	e.x.Facts = append(e.x.Facts, Fact{Check: check, OK: true, Detail: fmt.Sprintf(format, args...)})
}

func (e *explainer) fail(check, fix, format string, args ...any) {
	e.x.Facts = append(e.x.Facts, Fact{Check: check, Detail: fmt.Sprintf(format, args...), Fix: fix})
}

// magpieDown records that Magpie did not answer what the next facts need.
func (e *explainer) magpieDown(what string, err error, then string) {
	e.fail("magpie", "make Magpie answer (GET /readyz says what fails; journaled events are retried by themselves), then run: "+then,
		"Magpie did not answer %s: %v; the facts that need it are not checked", what, err)
}

// The fixes.
func fixUser(user string) string {
	return "cowbird resync FileSystem --user " + handlers.ShellQuote(user)
}

const fixAll = "cowbird resync FileSystem"

func fixWorkspace(user string) string {
	return `run the user.resync action for ` + user + `: POST /actions/v1/user.resync with body {"user_name": ` + handlers.QuoteJSON(user) +
		`} (the user_created of the FileSystem handler: makes the workspace, its notebooks symlink and links)`
}

// fixReach is the fix of a path the daemon could not look at.
func fixReach(path string) string {
	return "let the daemon reach " + path + " (it runs as the admin user and must see every file it manages), then explain again"
}

// wsPath and srcPath are absolute paths, for facts.
func (e *explainer) wsPath(rel string) string  { return filepath.Join(e.h.cfg.WorkspaceDir, rel) }
func (e *explainer) srcPath(rel string) string { return filepath.Join(e.h.cfg.WPSOutputsDir, rel) }

// path explains the source rel (relative to wps_outputs_dir).
func (e *explainer) path(ctx context.Context, rel string) {
	abs := e.srcPath(rel)
	wps, err := e.h.wpsRoot()
	if err != nil {
		e.fail("source", fixReach(e.h.cfg.WPSOutputsDir), "wps_outputs_dir %s cannot be opened: %v", e.h.cfg.WPSOutputsDir, err)
		return
	}
	st, err := wps.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e.fail("source", "none: there is no such WPS output (check the path, or the job that should have written it)",
			"no such file: %s", abs)
		e.file(ctx, rel, nil)
	case blocked(err):
		e.fail("source", "none: cowbird links only what it reaches without a symlink",
			"a symlink or a file is on the way to %s: cowbird never follows it, so nothing there is linked", abs)
	case err != nil:
		e.fail("source", fixReach(abs), "lstat %s: %v", abs, err)
	case st.IsDir():
		e.ok("source", "%s is a directory (mode %s): directories are mirrored only to hold links; explain a file in it for its permission and link",
			abs, st.Mode)
		e.dir(ctx, rel)
	case !st.Mode.IsRegular():
		e.fail("source", "none: cowbird links regular files only", "%s is %s, not a regular file: it is not linked", abs, kind(st))
	default:
		e.ok("source", "%s: regular file, inode %d, mode %s, %s", abs, st.Ino, st.Mode, plural(int(st.Nlink), "link"))
		e.file(ctx, rel, &st)
	}
}

// file explains the regular source file rel; src is nil when it does not
// exist (then no link may remain).
func (e *explainer) file(ctx context.Context, rel string, src *safefs.Stat) {
	bird, id, sub, isUser := userFile(rel)
	if !isUser {
		e.public(rel, src)
		return
	}
	e.ok("owner", "user data of the Magpie user with id %d (%s/users/%d/…), linked into their workspace only", id, bird, id)
	e.publicCopy(rel)
	name, ok := e.owner(ctx, id)
	if !ok {
		return
	}
	linkRoot := path.Join(name, e.h.cfg.UserWPSOutputsDirName)
	linkRel := path.Join(linkRoot, bird, sub)
	fix := fixUser(name)
	if src == nil {
		e.link(linkRel, nil, false, "the source does not exist", fix)
		return
	}
	read, ok := e.readable(ctx, name, rel)
	if !ok {
		return
	}
	want := others(read)
	if got := src.Mode & 0o7; got != want {
		e.fail("others bits", fix, "%s, want %s (read %s; write is never granted): %s",
			rwx(got), rwx(want), allowed(read), e.srcPath(rel))
	} else {
		e.ok("others bits", "%s, as read %s gives (write is never granted)", rwx(got), allowed(read))
	}
	e.link(linkRel, src, read, name+" may not read it", fix)
	if read {
		e.linkDirs(linkRoot, linkRel, fix)
	}
}

// public explains the public source file rel.
func (e *explainer) public(rel string, src *safefs.Stat) {
	e.ok("owner", "public data (not in a <bird>/users/<id>/ directory): linked for everyone under %s", e.wsPath(e.h.public))
	linkRel := path.Join(e.h.public, rel)
	if src == nil {
		e.link(linkRel, nil, false, "the source does not exist", fixAll)
		return
	}
	if got := src.Mode & 0o7; got&0o4 == 0 {
		e.fail("others bits", "chmod o+r "+handlers.ShellQuote(e.srcPath(rel)),
			"%s: the public link gives no user read access (public outputs keep the mode they were written with)", rwx(got))
	} else {
		e.ok("others bits", "%s: readable through the public link (public outputs keep the mode they were written with)", rwx(got))
	}
	e.link(linkRel, src, true, "", fixAll)
	e.linkDirs(e.h.public, linkRel, fixAll)
}

// dir explains the source directory rel: whose it is and its mirror.
func (e *explainer) dir(ctx context.Context, rel string) {
	bird, id, sub, isUser := userDir(rel)
	if !isUser {
		e.ok("owner", "public data (not in a <bird>/users/<id>/ directory): mirrored under %s", e.wsPath(e.h.public))
		e.mirrorDir(path.Join(e.h.public, rel), fixAll)
		return
	}
	e.ok("owner", "user data of the Magpie user with id %d (%s/users/%d/…)", id, bird, id)
	name, ok := e.owner(ctx, id)
	if !ok {
		return
	}
	e.mirrorDir(path.Join(name, e.h.cfg.UserWPSOutputsDirName, bird, sub), fixUser(name))
}

// mirrorDir reports the link directory rel that mirrors a source directory.
func (e *explainer) mirrorDir(rel, fix string) {
	st, err := e.wsRoot().Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e.ok("link directory", "none at %s: made when a file in it is linked", e.wsPath(rel))
	case blocked(err):
		e.fail("link directory", fix, "a symlink or a file is on the way to %s (never followed; the reconcile replaces it)", e.wsPath(rel))
	case err != nil:
		e.fail("link directory", fixReach(e.wsPath(rel)), "lstat %s: %v", e.wsPath(rel), err)
	case !st.IsDir():
		e.fail("link directory", fix, "%s is %s where a link directory belongs (never followed; the reconcile replaces it)", e.wsPath(rel), kind(st))
	default:
		e.ok("link directory", "%s: a real directory, mode %s", e.wsPath(rel), st.Mode)
	}
}

// publicCopy checks that the user file rel has no copy in the public tree.
func (e *explainer) publicCopy(rel string) {
	pub := path.Join(e.h.public, rel)
	if _, err := e.wsRoot().Lstat(pub); err == nil {
		e.fail("public copy", fixAll, "%s exists: a user's output is readable by everyone in the public tree", e.wsPath(pub))
		return
	}
	e.ok("public copy", "none at %s", e.wsPath(pub))
}

// wsRoot is the workspace_dir root; an error (it cannot be opened) shows as
// the error of every lstat through the returned root.
func (e *explainer) wsRoot() lstater {
	ws, err := e.h.wsRoot()
	if err != nil {
		return failedRoot{err}
	}
	return ws
}

type lstater interface {
	Lstat(rel string) (safefs.Stat, error)
	Readlink(rel string) (string, error)
}

type failedRoot struct{ err error }

func (f failedRoot) Lstat(string) (safefs.Stat, error) {
	return safefs.Stat{}, fmt.Errorf("workspace_dir: %w", f.err)
}
func (f failedRoot) Readlink(string) (string, error) {
	return "", fmt.Errorf("workspace_dir: %w", f.err)
}

// owner resolves the Magpie user id to a name cowbird accepts and checks
// their workspace; ok is false when the facts stop there.
func (e *explainer) owner(ctx context.Context, id int) (name string, ok bool) {
	users, err := e.mp.Users(ctx)
	if err != nil {
		e.magpieDown("the list of users", err, fixAll)
		return "", false
	}
	for _, u := range users {
		if u.ID == id {
			name, ok = u.Name, true
		}
	}
	if !ok {
		e.fail("magpie user", "none in cowbird: the output belongs to no Magpie user (create the user in Magpie, or remove the output)",
			"Magpie has no user with id %d: the output is linked for no one", id)
		return "", false
	}
	if err := e.h.checkUser(name); err != nil {
		e.fail("magpie user", "none: cowbird never links the outputs of a user with this name",
			"%s (id %d), a name cowbird refuses: %v", name, id, err)
		return "", false
	}
	e.ok("magpie user", "%s (id %d)", name, id)
	return name, e.workspace(name)
}

// workspace checks the user's workspace and reports whether it is a real
// directory (outputs are linked only into one).
func (e *explainer) workspace(user string) bool {
	st, err := e.wsRoot().Lstat(user)
	abs := e.wsPath(user)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e.fail("workspace", fixWorkspace(user), "%s is missing: the outputs of %s are linked only into an existing workspace", abs, user)
	case err != nil:
		e.fail("workspace", fixReach(abs), "lstat %s: %v", abs, err)
	case st.IsSymlink():
		e.fail("workspace", "remove the symlink "+handlers.ShellQuote(abs)+", then "+fixWorkspace(user),
			"%s is a symlink (never followed): nothing is linked into it", abs)
	case !st.IsDir():
		e.fail("workspace", "move "+handlers.ShellQuote(abs)+" away, then "+fixWorkspace(user), "%s is %s, not a directory: nothing is linked into it", abs, kind(st))
	case st.Mode&0o7 != 0o5:
		e.fail("workspace", fixWorkspace(user), "%s: a real directory, but others %s, want r-x (mode %s)", abs, rwx(st.Mode&0o7), st.Mode)
		return true
	default:
		e.ok("workspace", "%s: a real directory, mode %s", abs, st.Mode)
		return true
	}
	return false
}

// readable reports the effective read permission of user on the source
// file rel through the secure-data-proxy service, with the route that
// applies and Magpie's reason; ok is false when Magpie did not answer.
// The route is found as the reconcile finds it (access.dir, route.file).
func (e *explainer) readable(ctx context.Context, user, rel string) (read, ok bool) {
	cfg := e.h.cfg
	a := newAccess(e.mp, discardLog(), cfg.SecureDataProxyName, cfg.WPSOutputsResName)
	if err := a.load(ctx); err != nil {
		e.magpieDown("about the "+cfg.SecureDataProxyName+" service", err, fixUser(user))
		return false, false
	}
	if a.open {
		e.ok("service", "Magpie has no %s service of type api: user outputs are readable by their owner by default, as in the original",
			cfg.SecureDataProxyName)
		e.ok("read permission", "allow, by default (no %s service)", cfg.SecureDataProxyName)
		return true, true
	}
	e.ok("service", "%s (resource %d)", cfg.SecureDataProxyName, a.tree.ID)
	dir, name := path.Split(rel)
	resID := a.dir(strings.TrimSuffix(dir, "/")).file(name)
	chain := routeChain(a.tree, cfg.WPSOutputsResName, rel)
	if resID == 0 || len(chain) < 2 || chain[len(chain)-1].ID != resID {
		e.fail("route", "create the route "+cfg.WPSOutputsResName+" under the service "+cfg.SecureDataProxyName+" in Magpie",
			"%s has no route %s: no user output is readable", cfg.SecureDataProxyName, cfg.WPSOutputsResName)
		e.fail("read permission", "create the route "+cfg.WPSOutputsResName+" under the service "+cfg.SecureDataProxyName+" in Magpie, with a read permission for "+user,
			"deny: no route applies, so Magpie is not asked")
		return false, true
	}
	route := routeName(chain)
	full := cfg.WPSOutputsResName + "/" + rel
	if len(chain)-2 == strings.Count(full, "/") {
		e.ok("route", "%s (resource %d): the file's own route", route, resID)
	} else {
		e.ok("route", "%s (resource %d): the closest route to %s, which has none of its own", route, resID, full)
	}
	return e.readPermission(ctx, user, chain, resID)
}

// readPermission reports the effective read permission of user on the
// route resource resID, the last of chain, with Magpie's reason; ok is
// false when Magpie did not answer.
func (e *explainer) readPermission(ctx context.Context, user string, chain []*magpie.Resource, resID int) (read, ok bool) {
	then := fixUser(user)
	route := routeName(chain)
	perms, err := e.mp.UserPermissions(ctx, user, resID, magpie.Effective)
	if err != nil {
		e.magpieDown(fmt.Sprintf("with the effective permissions of %s on resource %d", user, resID), err, then)
		return false, false
	}
	p, found := magpie.Find(perms, "read")
	read = found && p.Access == "allow"
	why := ""
	switch {
	case !found:
		why = "Magpie's effective answer has no read permission"
	case p.Reason != "":
		why = "Magpie's reason: " + reasonText(p.Reason, user)
	default:
		rows, err := e.rows(ctx, user, chain)
		if err != nil {
			e.magpieDown(fmt.Sprintf("with the permissions of %s on the route", user), err, then)
			return false, false
		}
		why = "Magpie gave no reason; " + rows
	}
	if w, _ := magpie.Find(perms, "write"); w.Access == "allow" {
		why += "; write is allowed too, and never applied: outputs stay read-only"
	}
	detail := fmt.Sprintf("%s for %s on %s (effective): %s", allowed(read), user, route, why)
	if read {
		e.ok("read permission", "%s", detail)
	} else {
		e.fail("read permission", "if "+user+" should read it: give "+user+" (or a group of theirs) read-allow on "+route+
			" in Magpie; its permission webhook then links the file", "%s", detail)
	}
	return read, true
}

// rows lists the read rows of user and their groups on the route chain,
// closest first, for a Magpie whose effective answer gives no reason.
func (e *explainer) rows(ctx context.Context, user string, chain []*magpie.Resource) (string, error) {
	var found []string
	for i := len(chain) - 1; i >= 0; i-- {
		perms, err := e.mp.UserPermissions(ctx, user, chain[i].ID, magpie.Inherited)
		if err != nil {
			return "", err
		}
		for _, p := range perms {
			if p.Name != "read" {
				continue
			}
			row := routeName(chain[:i+1]) + ": " + p.String()
			if p.Reason != "" {
				row += " (" + reasonText(p.Reason, user) + ")"
			}
			found = append(found, row)
		}
	}
	if len(found) == 0 {
		return "no read permission of " + user + " or their groups on the route or above it", nil
	}
	return "read permissions found, closest first: " + strings.Join(found, "; "), nil
}

// reasonText spells out Magpie's reason of an effective permission.
func reasonText(reason, user string) string {
	kind, rest, _ := strings.Cut(reason, ":")
	_, name, _ := strings.Cut(rest, ":")
	switch {
	case kind == "user" && name != "":
		return "a permission of the user " + name + " (" + reason + ")"
	case kind == "group" && name != "":
		return "a permission of their group " + name + " (" + reason + ")"
	case reason == "no-permission":
		return "no permission of " + user + " or their groups on the route or above it: denied by default (no-permission)"
	case reason == "administrator":
		return user + " is an administrator (administrator)"
	case reason == "multiple":
		return "equal permissions of several of their groups (multiple)"
	}
	return strconv.Quote(reason)
}

// routeChain returns the resources from the service through
// wps_outputs_res_name down the components of rel, as far as they match.
func routeChain(tree *magpie.Resource, resName, rel string) []*magpie.Resource {
	chain := []*magpie.Resource{tree}
	cur := tree.Child(resName)
	for _, c := range strings.Split(rel, "/") {
		if cur == nil {
			break
		}
		chain = append(chain, cur)
		cur = cur.Child(c)
	}
	if cur != nil {
		chain = append(chain, cur)
	}
	return chain
}

func routeName(chain []*magpie.Resource) string {
	names := make([]string, len(chain))
	for i, r := range chain {
		names[i] = r.Name
	}
	return strings.Join(names, "/")
}

// link checks the link rel of the source src (nil: none): it must be a
// hardlink of src when want, else absent (why says why not).
func (e *explainer) link(rel string, src *safefs.Stat, want bool, why, fix string) {
	abs := e.wsPath(rel)
	st, err := e.wsRoot().Lstat(rel)
	present := err == nil
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist) && !blocked(err):
		e.fail("link", fixReach(abs), "lstat %s: %v", abs, err)
	case !want && !present:
		e.ok("link", "none at %s, as expected: %s", abs, why)
	case !want:
		e.fail("link", fix, "%s exists though %s", abs, why)
	case blocked(err):
		e.fail("link", fix, "a symlink or a file is on the way to %s (never followed; the reconcile replaces it)", abs)
	case !present:
		e.fail("link", fix, "missing: %s", abs)
	case !st.Mode.IsRegular():
		e.fail("link", fix, "%s is %s, not a hardlink of the source", abs, kind(st))
	case st.Ino != src.Ino || st.Dev != src.Dev:
		e.fail("link", fix, "%s is another file (inode %d, the source's is %d): it shows stale content", abs, st.Ino, src.Ino)
	default:
		e.ok("link", "%s: a hardlink of the source (inode %d)", abs, st.Ino)
	}
}

// linkDirs checks the directories from the link root down to the parent of
// the link rel: real directories, others r-x. A missing one is the link's
// fact, not theirs.
func (e *explainer) linkDirs(root, rel, fix string) {
	var dirs []string
	for d := path.Dir(rel); d != root && strings.HasPrefix(d, root+"/"); d = path.Dir(d) {
		dirs = append(dirs, d)
	}
	dirs = append(dirs, root)
	slices.Reverse(dirs) // the root first
	checked := 0
walk:
	for _, d := range dirs {
		st, err := e.wsRoot().Lstat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			break walk // the link is missing: its fact says so
		case err != nil:
			e.fail("link directories", fixReach(e.wsPath(d)), "lstat %s: %v", e.wsPath(d), err)
			return
		case !st.IsDir():
			e.fail("link directories", fix, "%s is %s where a link directory belongs (never followed; the reconcile replaces it)",
				e.wsPath(d), kind(st))
			return
		case st.Mode&0o7 != 0o5:
			e.fail("link directories", fix, "%s: others %s, want r-x: users cannot reach the link", e.wsPath(d), rwx(st.Mode&0o7))
			return
		}
		checked++
	}
	e.ok("link directories", "%d from %s down: real directories, others r-x", checked, e.wsPath(root))
}

// user explains the user name.
func (e *explainer) user(ctx context.Context, name string) {
	if err := e.h.checkUser(name); err != nil {
		e.fail("user name", "none: cowbird keeps no workspace for this name", "cowbird refuses it: %v", err)
		return
	}
	id, known := 0, false
	u, err := e.mp.User(ctx, name)
	switch {
	case errors.Is(err, magpie.ErrNotFound):
		e.fail("magpie user", "none in cowbird: create the user in Magpie (its webhook makes the workspace)",
			"Magpie has no user %s: no output is linked for them", name)
	case err != nil:
		e.magpieDown("about the user "+name, err, fixUser(name))
	default:
		id, known = u.ID, true
		groups := "none"
		if len(u.Groups) > 0 {
			groups = strings.Join(u.Groups, ", ")
		}
		e.ok("magpie user", "%s (id %d), groups: %s", name, id, groups)
	}
	if !e.workspace(name) {
		return
	}
	e.notebooks(name)
	var out *outputs
	if known {
		out = e.outputs(ctx, name, id)
	}
	e.linkRoot(name, out)
	if out != nil {
		out.report(e, name)
	}
}

// notebooks checks the user's notebooks symlink.
func (e *explainer) notebooks(user string) {
	cfg := e.h.cfg
	rel := path.Join(user, cfg.NotebooksDirName)
	abs, target := e.wsPath(rel), filepath.Join(cfg.JupyterhubUserDataDir, user)
	fix := fixUser(user)
	st, err := e.wsRoot().Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e.fail("notebooks", fix, "%s is missing: it should be a symlink to %s", abs, target)
		return
	case err != nil:
		e.fail("notebooks", fixReach(abs), "lstat %s: %v", abs, err)
		return
	case !st.IsSymlink():
		e.fail("notebooks", "move "+handlers.ShellQuote(abs)+" away, then "+fix,
			"%s is %s, not a symlink: the reconcile does not replace it", abs, kind(st))
		return
	}
	cur, err := e.wsRoot().Readlink(rel)
	switch {
	case err != nil:
		e.fail("notebooks", fixReach(abs), "readlink %s: %v", abs, err)
	case cur != target:
		e.fail("notebooks", fix, "%s points to %s, want %s", abs, cur, target)
	default:
		there := "which exists"
		if tst, err := os.Lstat(target); err != nil {
			there = "which does not exist yet (JupyterHub makes it)"
		} else if !tst.IsDir() {
			there = "which is " + tst.Mode().Type().String() + ", not a directory"
		}
		e.ok("notebooks", "%s -> %s, %s", abs, target, there)
	}
}

// linkRoot checks the user's link root; its others bits matter only when
// an output is to be linked (out says, when known).
func (e *explainer) linkRoot(user string, out *outputs) {
	rel := path.Join(user, e.h.cfg.UserWPSOutputsDirName)
	abs, fix := e.wsPath(rel), fixUser(user)
	st, err := e.wsRoot().Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if out != nil && out.readable > 0 {
			e.fail("link root", fix, "%s is missing, though %d outputs are readable", abs, out.readable)
		} else {
			e.ok("link root", "none at %s: made with the first link", abs)
		}
	case err != nil:
		e.fail("link root", fixReach(abs), "lstat %s: %v", abs, err)
	case !st.IsDir():
		e.fail("link root", fix, "%s is %s where the link root belongs (never followed; the reconcile replaces it)", abs, kind(st))
	case st.Mode&0o7 != 0o5 && out != nil && out.readable > 0:
		e.fail("link root", fix, "%s: others %s, want r-x: the links cannot be reached", abs, rwx(st.Mode&0o7))
	default:
		e.ok("link root", "%s: a real directory, mode %s", abs, st.Mode)
	}
}

// outputs is what ExplainUser found of a user's WPS outputs.
type outputs struct {
	empty                                string // why there is nothing to look at, if so
	failure, failurePath                 string // a listing that failed, and where
	sourceRoot                           string // the user's source directories, as a pattern
	files, birds, readable, linked       int
	missing, wrong, denied, deniedLinked counted
	modes, stale                         counted
	open                                 bool // no secure-data-proxy service: all readable
}

// counted is a count and its first example.
type counted struct {
	n       int
	example string
}

func (c *counted) add(example string) {
	if c.n == 0 {
		c.example = example
	}
	c.n++
}

// outputs walks the user's sources (<bird>/users/<id>/ of every bird) and
// their link tree, never following a symlink; nil when Magpie did not
// answer (the fact is recorded).
func (e *explainer) outputs(ctx context.Context, user string, id int) *outputs {
	out := &outputs{sourceRoot: e.srcPath("*/users/" + strconv.Itoa(id))}
	files, ok := e.sourceFiles(ctx, id, out)
	if !ok {
		return out
	}
	out.files = len(files)
	if !e.tallyOutputs(ctx, user, files, out) {
		return nil
	}
	return out
}

// sourceFile is a regular file among a user's sources, relative to
// wps_outputs_dir.
type sourceFile struct {
	rel string
	st  safefs.Stat
}

// sourceFiles lists the regular files under <bird>/users/<id>/ of every
// bird and counts the birds in out; ok is false when there is nothing to
// look at or a listing failed (out says which).
func (e *explainer) sourceFiles(ctx context.Context, id int, out *outputs) (files []sourceFile, ok bool) {
	cfg := e.h.cfg
	wps, err := e.h.wpsRoot()
	if errors.Is(err, fs.ErrNotExist) {
		out.empty = "wps_outputs_dir " + cfg.WPSOutputsDir + " does not exist"
		return nil, false
	}
	if err != nil {
		out.failure, out.failurePath = err.Error(), cfg.WPSOutputsDir
		return nil, false
	}
	birds, err := wps.ReadDir("")
	if err != nil {
		out.failure, out.failurePath = err.Error(), cfg.WPSOutputsDir
		return nil, false
	}
	for _, b := range birds {
		if !b.IsDir() {
			continue
		}
		d, err := wps.OpenDir(path.Join(b.Name, "users", strconv.Itoa(id)))
		if notEnterable(err) {
			continue
		}
		if err == nil {
			files, err = walkSources(ctx, d, files)
		}
		if err != nil {
			out.failure, out.failurePath = err.Error(), e.srcPath(path.Join(b.Name, "users", strconv.Itoa(id)))
			return nil, false
		}
		out.birds++
	}
	return files, true
}

// walkSources appends the regular files below d to files, entering every
// directory it can and never following a symlink; it closes d.
func walkSources(ctx context.Context, d *safefs.Dir, files []sourceFile) ([]sourceFile, error) {
	defer d.Close()
	if err := ctx.Err(); err != nil {
		return files, err
	}
	ents, err := d.ReadDir()
	if err != nil {
		return files, err
	}
	for _, ent := range ents {
		switch {
		case ent.IsDir():
			sub, err := d.OpenDir(ent.Name)
			if notEnterable(err) {
				continue
			}
			if err != nil {
				return files, err
			}
			if files, err = walkSources(ctx, sub, files); err != nil {
				return files, err
			}
		case ent.Type == 0:
			st, err := d.Lstat(ent.Name)
			if err == nil && st.Mode.IsRegular() {
				files = append(files, sourceFile{rel: d.Join(ent.Name), st: st})
			}
		}
	}
	return files, nil
}

// tallyOutputs asks Magpie whether user reads each of files and counts in
// out how each is linked, then the stale links; false when Magpie did not
// answer (the fact is recorded).
func (e *explainer) tallyOutputs(ctx context.Context, user string, files []sourceFile, out *outputs) bool {
	cfg := e.h.cfg
	a := newAccess(e.mp, discardLog(), cfg.SecureDataProxyName, cfg.WPSOutputsResName)
	if len(files) > 0 {
		if err := a.load(ctx); err != nil {
			e.magpieDown("about the "+cfg.SecureDataProxyName+" service", err, fixUser(user))
			return false
		}
		out.open = a.open
	}
	expected := map[string]bool{}
	root := path.Join(user, cfg.UserWPSOutputsDirName)
	ws := e.wsRoot()
	for _, f := range files {
		dir, name := path.Split(f.rel)
		read, err := a.readable(ctx, user, a.dir(strings.TrimSuffix(dir, "/")).file(name))
		if err != nil {
			e.magpieDown("with the permissions of "+user, err, fixUser(user))
			return false
		}
		bird, _, sub, _ := userFile(f.rel)
		link := path.Join(root, bird, sub)
		expected[link] = true
		e.tallyOutput(ws, f, link, read, out)
	}
	e.staleLinks(root, expected, out)
	return true
}

// tallyOutput counts in out the source f, which user reads or not, and its
// link (relative to workspace_dir, looked at in ws).
func (e *explainer) tallyOutput(ws lstater, f sourceFile, link string, read bool, out *outputs) {
	if got, want := f.st.Mode&0o7, others(read); got != want {
		out.modes.add(fmt.Sprintf("%s: %s, want %s", e.srcPath(f.rel), rwx(got), rwx(want)))
	}
	st, err := ws.Lstat(link)
	present := err == nil
	if !read {
		out.denied.add(e.srcPath(f.rel))
		if present {
			out.deniedLinked.add(e.wsPath(link))
		}
		return
	}
	out.readable++
	switch {
	case !present:
		out.missing.add(e.wsPath(link))
	case !st.Mode.IsRegular() || st.Ino != f.st.Ino || st.Dev != f.st.Dev:
		out.wrong.add(e.wsPath(link))
	default:
		out.linked++
	}
}

// staleLinks counts what the link root holds that mirrors no output of the
// user: every non-directory entry that is not an expected link.
func (e *explainer) staleLinks(root string, expected map[string]bool, out *outputs) {
	ws, err := e.h.wsRoot()
	if err != nil {
		return
	}
	var walk func(d *safefs.Dir)
	walk = func(d *safefs.Dir) {
		defer d.Close()
		ents, err := d.ReadDir()
		if err != nil {
			out.stale.add(fmt.Sprintf("%s (unreadable: %v)", e.wsPath(d.Rel()), err))
			return
		}
		for _, ent := range ents {
			rel := d.Join(ent.Name)
			if ent.IsDir() {
				if sub, err := d.OpenDir(ent.Name); err == nil {
					walk(sub)
				}
				continue
			}
			if !expected[rel] {
				out.stale.add(e.wsPath(rel))
			}
		}
	}
	if d, err := ws.OpenDir(root); err == nil {
		walk(d)
	}
}

// report adds the facts of the outputs.
func (out *outputs) report(e *explainer, user string) {
	fix := fixUser(user)
	switch {
	case out.failure != "":
		e.fail("outputs", fixReach(out.failurePath), "listing %s failed: %s", out.failurePath, out.failure)
		return
	case out.empty != "":
		e.ok("outputs", "none: %s", out.empty)
		return
	case out.files == 0:
		e.ok("outputs", "none under %s", out.sourceRoot)
	default:
		by := ""
		if out.open {
			by = " (no " + e.h.cfg.SecureDataProxyName + " service: all readable by default)"
		}
		detail := fmt.Sprintf("%d under %s in %s, %d readable%s: %d linked", out.files, out.sourceRoot, plural(out.birds, "bird"), out.readable, by, out.linked)
		if out.missing.n+out.wrong.n == 0 {
			e.ok("outputs", "%s", detail)
		} else {
			e.fail("outputs", fix, "%s, %s, %s", detail, out.missing.say("missing"), out.wrong.say("in place of another file"))
		}
		if out.deniedLinked.n > 0 {
			e.fail("denied outputs", fix, "%d denied by Magpie, %s", out.denied.n, out.deniedLinked.say("still linked"))
		} else if out.denied.n == 0 {
			e.ok("denied outputs", "none denied by Magpie")
		} else {
			e.ok("denied outputs", "%s, none linked", out.denied.say("denied by Magpie"))
		}
		if out.modes.n > 0 {
			e.fail("modes", fix, "%s", out.modes.say("with others bits that differ from their read permission"))
		} else {
			e.ok("modes", "the others bits of all %d match their read permission (r-- or ---)", out.files)
		}
	}
	if out.stale.n > 0 {
		e.fail("stale links", fix, "%s", out.stale.say("in the link root mirroring no output of "+user))
	} else {
		e.ok("stale links", "nothing in the link root that mirrors no output of %s", user)
	}
}

// say is "<n> <what>", with the first example when there is one.
func (c counted) say(what string) string {
	if c.n == 0 {
		return "0 " + what
	}
	return fmt.Sprintf("%d %s (e.g. %s)", c.n, what, c.example)
}

// plural is "<n> <word>", with an s unless n is 1.
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// blocked reports an lstat error that says a symlink or a file is on the
// way (never followed).
func blocked(err error) bool {
	return errors.Is(err, safefs.ErrSymlink) || errors.Is(err, unix.ENOTDIR)
}

// kind describes a file type in words.
func kind(st safefs.Stat) string {
	switch {
	case st.IsSymlink():
		return "a symlink"
	case st.IsDir():
		return "a directory"
	case st.Mode.IsRegular():
		return "a regular file"
	}
	return "a special file"
}

// rwx is the others bits m (0-7) as r, w, x or -.
func rwx(m os.FileMode) string {
	b := []byte("---")
	for i, c := range "rwx" {
		if m&(4>>i) != 0 {
			b[i] = byte(c)
		}
	}
	return string(b)
}

func allowed(read bool) string {
	if read {
		return "allow"
	}
	return "deny"
}

// discardLog is the logger of an explanation's access resolution: explain
// changes nothing, so what it meets is not logged as if it did.
func discardLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}
