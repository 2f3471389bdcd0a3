package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
	"github.com/cowbird-go/cowbird/safefs"
)

// Scope selects what a reconcile looks at. The zero Scope is everything:
// every WPS output, the public links, and the links and notebooks symlink
// of every Magpie user whose workspace exists.
type Scope struct {
	// User limits the run to that user's sources (*/users/<id>/), links and
	// notebooks symlink.
	User string
	// Path limits the run to a file or directory under wps_outputs_dir
	// (absolute), and the links that mirror it. Ignored when User is set.
	Path string
}

func (s Scope) String() string {
	switch {
	case s.User != "":
		return "user " + s.User
	case s.Path != "":
		return s.Path
	}
	return "all"
}

// ReconcileOptions tunes one reconcile.
type ReconcileOptions struct {
	// DryRun computes the difference and returns it in Stats.Changes
	// without changing anything.
	DryRun bool
}

// Op names one kind of change.
type Op string

// The changes a reconcile makes.
const (
	OpLink    Op = "link"    // create a missing hardlink
	OpReplace Op = "replace" // replace a link that points at another inode
	OpRemove  Op = "remove"  // remove a link or entry whose source is gone or unreadable
	OpMode    Op = "mode"    // fix the others bits of a source file or link directory
	OpMkdir   Op = "mkdir"   // create a link directory
	OpRmdir   Op = "rmdir"   // remove a link directory that mirrors nothing
	OpSymlink Op = "symlink" // create or fix a notebooks symlink
)

// Change is one difference between the desired and the actual state.
type Change struct {
	Op   Op     `json:"op"`
	Path string `json:"path"`
	// Source is the WPS output a link points at, for link and replace.
	Source string `json:"source,omitempty"`
}

// Stats reports what a reconcile found and did (or would do, in a dry run).
type Stats struct {
	Sources       int `json:"sources"`        // source files examined
	LinksCreated  int `json:"links_created"`  // missing links made
	LinksReplaced int `json:"links_replaced"` // links that pointed at another inode
	LinksRemoved  int `json:"links_removed"`  // links or entries removed
	ModesFixed    int `json:"modes_fixed"`    // others bits changed on sources and link directories
	DirsCreated   int `json:"dirs_created"`
	DirsRemoved   int `json:"dirs_removed"`
	Symlinks      int `json:"symlinks"` // notebooks symlinks created or fixed
	// Skipped counts sources not mirrored: unknown user id, invalid user
	// name, or a workspace that is missing or a symlink.
	Skipped  int           `json:"skipped"`
	Failed   int           `json:"failed"` // changes that failed (see the error)
	Duration time.Duration `json:"duration"`
	// Changes lists the difference, in dry runs only.
	Changes []Change `json:"changes,omitempty"`
}

// Reconcile brings the links, modes and notebooks symlinks of scope to the
// desired state, applying only the difference, and reports what it did.
// Individual failed changes do not stop the run; they are counted and the
// first is returned in the error. Magpie errors stop the run and are
// returned wrapped (handlers.IsTransient tells whether to retry).
func (h *Handler) Reconcile(ctx context.Context, scope Scope, opts ReconcileOptions) (Stats, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reconcile(ctx, h.session(), scope, opts)
}

// reconcile is Reconcile for a caller holding h.mu.
func (h *Handler) reconcile(ctx context.Context, mp Magpie, scope Scope, opts ReconcileOptions) (Stats, error) {
	start := time.Now()
	var hint sizes // a full run presizes its maps from the previous one
	if scope == (Scope{}) {
		hint = h.lastFull
	}
	r, err := h.newRun(mp, opts.DryRun, hint)
	if err != nil {
		return Stats{}, fmt.Errorf("reconcile %s: %w", scope, err)
	}
	if r.wps == nil {
		h.log.WithField("path", h.cfg.WPSOutputsDir).Warn("wps_outputs_dir does not exist: no WPS outputs to link")
	}
	err = r.plan(ctx, scope)
	if err == nil {
		err = r.apply(ctx)
	}
	if scope == (Scope{}) {
		h.lastFull = sizes{have: len(r.have), want: len(r.want), dirs: len(r.dirs)}
	}
	r.stats.Duration = time.Since(start)
	if err != nil {
		return r.stats, fmt.Errorf("reconcile %s: %w", scope, err)
	}
	if r.firstErr != nil {
		return r.stats, fmt.Errorf("reconcile %s: %d changes failed, first: %w", scope, r.stats.Failed, r.firstErr)
	}
	return r.stats, nil
}

// run is the state of one reconcile.
type run struct {
	h   *Handler
	ctx context.Context
	mp  Magpie
	dry bool
	wps *safefs.Root // nil when wps_outputs_dir does not exist
	ws  *safefs.Root
	acc *access
	log *logrus.Entry

	users   map[int]string  // Magpie user id -> name, loaded on demand
	wsOK    map[string]bool // user -> workspace is a real directory
	skipped map[string]bool // warnings already logged

	want    map[string]link        // desired links by path in ws
	srcMode []source               // user sources whose others bits to check
	have    map[string]uint64      // actual non-directories in the walked mirrors, by inode
	dirs    map[string]os.FileMode // actual directories in the walked mirrors, with their mode
	nbUsers []string               // users whose notebooks symlink to check

	mu       sync.Mutex
	stats    Stats
	firstErr error
}

// link is one desired hardlink.
type link struct {
	src string // relative to wps_outputs_dir
	ino uint64
}

// source is a user file and the route that decides its access.
type source struct {
	rel   string
	ino   uint64
	mode  os.FileMode // as walked
	dst   string
	user  string
	resID int
}

// sizes are the map sizes of a run, a capacity hint for the next one.
type sizes struct{ have, want, dirs int }

func (h *Handler) newRun(mp Magpie, dry bool, hint sizes) (*run, error) {
	ws, err := h.wsRoot()
	if err != nil {
		return nil, fmt.Errorf("workspace_dir: %w", err)
	}
	wps, err := h.wpsRoot()
	if errors.Is(err, fs.ErrNotExist) {
		wps, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wps_outputs_dir: %w", err)
	}
	return &run{
		h: h, mp: mp, dry: dry, wps: wps, ws: ws, log: h.log,
		acc:  newAccess(mp, h.log, h.cfg.SecureDataProxyName, h.cfg.WPSOutputsResName),
		wsOK: map[string]bool{}, skipped: map[string]bool{},
		want: make(map[string]link, hint.want), have: make(map[string]uint64, hint.have),
		dirs: make(map[string]os.FileMode, hint.dirs),
	}, nil
}

// plan walks the sources and mirrors of scope and resolves access.
func (r *run) plan(ctx context.Context, scope Scope) error {
	r.ctx = ctx
	var sources, mirrors []string
	switch {
	case scope.User != "":
		if err := r.h.checkUser(scope.User); err != nil {
			return err
		}
		if !r.workspace(scope.User) {
			r.log.WithField("user", scope.User).Warn("user workspace not found or not a directory: nothing to reconcile")
			return nil
		}
		r.nbUsers = []string{scope.User}
		u, err := r.mp.User(ctx, scope.User)
		if errors.Is(err, magpie.ErrNotFound) {
			r.log.WithField("user", scope.User).Info("user unknown to Magpie: no WPS outputs to link")
			return nil
		}
		if err != nil {
			return fmt.Errorf("magpie user %q: %w", scope.User, err)
		}
		r.users = map[int]string{u.ID: scope.User}
		mirrors = []string{r.userLinks(scope.User)}
		if r.wps != nil {
			birds, err := r.wps.ReadDir("")
			if err != nil {
				return err
			}
			for _, b := range birds {
				if b.IsDir() {
					sources = append(sources, path.Join(b.Name, "users", fmt.Sprint(u.ID)))
				}
			}
		}
	default:
		rel := ""
		if scope.Path != "" {
			var err error
			if rel, err = r.h.sourceRel(scope.Path); err != nil {
				return err
			}
		}
		var err error
		if mirrors, err = r.mirrorsOf(ctx, rel); err != nil {
			return err
		}
		if r.wps != nil {
			sources = []string{rel}
		}
		if scope.Path == "" {
			for _, name := range r.users {
				if r.h.checkUser(name) == nil && r.workspace(name) {
					r.nbUsers = append(r.nbUsers, name)
				}
			}
			slices.Sort(r.nbUsers)
		}
	}
	// The mirrors (which fill only have and dirs) are walked alongside the
	// sources (which fill the rest).
	mirrored := make(chan error, 1)
	go func() {
		for _, m := range mirrors {
			if err := r.walkMirror(m); err != nil {
				mirrored <- err
				return
			}
		}
		mirrored <- nil
	}()
	var err error
	for _, s := range sources {
		if err = r.walkSource(ctx, s); err != nil {
			break
		}
	}
	if mErr := <-mirrored; err == nil {
		err = mErr
	}
	if err != nil {
		return err
	}
	keys := make([]permKey, 0, len(r.srcMode))
	for _, s := range r.srcMode {
		keys = append(keys, permKey{s.user, s.resID})
	}
	if err := r.acc.fetch(ctx, keys, r.h.opts.Workers); err != nil {
		return err
	}
	for _, s := range r.srcMode {
		if r.acc.readable(s.user, s.resID) {
			r.want[s.dst] = link{src: s.rel, ino: s.ino}
		}
	}
	return nil
}

// sourceRel turns an absolute path under wps_outputs_dir into a relative one.
func (h *Handler) sourceRel(p string) (string, error) {
	rel, err := filepath.Rel(h.cfg.WPSOutputsDir, filepath.Clean(p))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || !filepath.IsAbs(p) {
		return "", fmt.Errorf("path %q: not under wps_outputs_dir %s", p, h.cfg.WPSOutputsDir)
	}
	if rel == "." {
		return "", nil
	}
	return rel, nil
}

// mirrorsOf returns the link paths (in ws) that can only hold links of
// sources under rel: the public mirror of rel, and the user mirrors that
// rel covers.
func (r *run) mirrorsOf(ctx context.Context, rel string) ([]string, error) {
	if bird, id, sub, ok := userDir(rel); ok {
		if err := r.loadUsers(ctx); err != nil {
			return nil, err
		}
		name, ok := r.userOf(id)
		if !ok {
			return nil, nil
		}
		return []string{path.Join(r.userLinks(name), bird, sub)}, nil
	}
	mirrors := []string{path.Join(r.h.public, rel)}
	comps := strings.Split(rel, "/")
	var under string
	switch {
	case rel == "":
	case len(comps) == 1, len(comps) == 2 && comps[1] == "users":
		under = comps[0]
	default:
		return mirrors, nil
	}
	if err := r.loadUsers(ctx); err != nil {
		return nil, err
	}
	for _, name := range r.users {
		if r.h.checkUser(name) == nil && r.workspace(name) {
			mirrors = append(mirrors, path.Join(r.userLinks(name), under))
		}
	}
	return mirrors, nil
}

// userLinks is the user's link root; both names are checked single components.
func (r *run) userLinks(user string) string { return user + "/" + r.h.cfg.UserWPSOutputsDirName }

// loadUsers fetches the Magpie users once.
func (r *run) loadUsers(ctx context.Context) error {
	if r.users != nil {
		return nil
	}
	users, err := r.mp.Users(ctx)
	if err != nil {
		return fmt.Errorf("magpie users: %w", err)
	}
	r.users = make(map[int]string, len(users))
	for _, u := range users {
		r.users[u.ID] = u.Name
	}
	return nil
}

// userOf returns the name of a Magpie user id, if it is usable as a
// workspace: a known, valid name with a real workspace directory.
func (r *run) userOf(id int) (string, bool) {
	name, ok := r.users[id]
	if !ok {
		r.warnOnce(fmt.Sprintf("id:%d", id), logrus.Fields{"user_id": id}, "no Magpie user with this id: its WPS outputs are not linked")
		return "", false
	}
	if err := r.h.checkUser(name); err != nil {
		r.warnOnce("name:"+name, logrus.Fields{"user": name, "error": err}, "refusing user name: its WPS outputs are not linked")
		return "", false
	}
	if !r.workspace(name) {
		r.warnOnce("ws:"+name, logrus.Fields{"user": name, "path": r.wsPath(name)},
			"user workspace missing or not a directory (a symlink is not followed): its WPS outputs are not linked")
		return "", false
	}
	return name, true
}

// workspace reports whether the user's workspace is a real directory.
func (r *run) workspace(user string) bool {
	ok, seen := r.wsOK[user]
	if !seen {
		st, err := r.ws.Lstat(user)
		ok = err == nil && st.IsDir()
		r.wsOK[user] = ok
	}
	return ok
}

func (r *run) warnOnce(key string, f logrus.Fields, msg string) {
	if !r.skipped[key] {
		r.skipped[key] = true
		r.log.WithFields(f).Warn(msg)
	}
}

// walkMirror records what exists at and below the link path m, with the
// mode of each directory (one fstatat each, from the walk), so that no
// directory needs its own lstat later.
func (r *run) walkMirror(m string) error {
	st, err := r.ws.Lstat(m)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, safefs.ErrSymlink):
		return nil // nothing there, or under a symlink the dir phase replaces
	case err != nil:
		return err
	case !st.IsDir():
		r.have[m] = st.Ino
		return nil
	}
	r.dirs[m] = st.Mode
	return r.ws.WalkLstat(m, func(rel string, e safefs.DirEntry, lstat func() (safefs.Stat, error)) error {
		if !e.IsDir() {
			r.have[rel] = e.Ino
			return nil
		}
		st, err := lstat()
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return err
		case st.IsDir():
			r.dirs[rel] = st.Mode
		default: // replaced since getdents
			r.have[rel] = st.Ino
		}
		return nil
	})
}

// walkSource records the desired state of every regular file at or below
// the source path s.
func (r *run) walkSource(ctx context.Context, s string) error {
	st, err := r.wps.Lstat(s)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !st.IsDir():
		if st.Mode.IsRegular() {
			return r.consider(ctx, s, st.Ino, func() (safefs.Stat, error) { return st, nil })
		}
		return nil
	}
	return r.wps.WalkLstat(s, func(rel string, e safefs.DirEntry, lstat func() (safefs.Stat, error)) error {
		if e.Type == 0 { // regular file; symlinks and specials are not linked
			return r.consider(ctx, rel, e.Ino, lstat)
		}
		return nil
	})
}

// consider records the desired state of the source file rel. lstat is
// called for user files only: their others bits are checked, from that
// lstat, without another syscall.
func (r *run) consider(ctx context.Context, rel string, ino uint64, lstat func() (safefs.Stat, error)) error {
	r.stats.Sources++
	bird, id, sub, ok := userFile(rel)
	if !ok {
		r.want[r.h.public+"/"+rel] = link{src: rel, ino: ino} // both clean
		return nil
	}
	if err := r.loadUsers(ctx); err != nil {
		return err
	}
	name, ok := r.userOf(id)
	if !ok {
		r.stats.Skipped++
		return nil
	}
	if err := r.acc.load(ctx); err != nil {
		return err
	}
	st, err := lstat()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // removed since it was listed
	case err != nil:
		r.fail(OpMode, filepath.Join(r.h.cfg.WPSOutputsDir, rel), err)
		return nil
	case !st.Mode.IsRegular():
		return nil // replaced since it was listed
	}
	r.srcMode = append(r.srcMode, source{rel: rel, ino: st.Ino, mode: st.Mode, dst: r.userLinks(name) + "/" + bird + "/" + sub, // all clean
		user: name, resID: r.acc.closest(rel)})
	return nil
}

// apply makes the changes: stale entries out, directories, modes and links
// in, then directories that mirror nothing out, and notebooks symlinks.
func (r *run) apply(ctx context.Context) error {
	var links, linkDirs []string // links to make; directories where a link belongs
	wantDirs := map[string]bool{}
	had := 0 // entries of have that are wanted
	for p, l := range r.want {
		cur, exists := r.have[p]
		if exists {
			had++
		}
		if !exists || cur != l.ino {
			links = append(links, p)
		}
		if _, isDir := r.dirs[p]; isDir {
			linkDirs = append(linkDirs, p)
		}
		for d := path.Dir(p); !wantDirs[d] && d != "."; d = path.Dir(d) {
			wantDirs[d] = true
			if r.base(d) {
				break
			}
		}
	}
	var stale []string
	if had < len(r.have) { // else every entry there is wanted
		for p := range r.have {
			if _, ok := r.want[p]; !ok {
				stale = append(stale, p)
			}
		}
	}
	slices.Sort(stale)
	stale = append(stale, linkDirs...)
	if err := parallel(ctx, r.h.opts.Workers, len(stale), func(i int) { r.remove(stale[i], OpRemove) }); err != nil {
		return err
	}
	dirs := make([]string, 0, len(wantDirs))
	for d := range wantDirs {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs) // parents first
	made := map[string]bool{}
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if made[path.Dir(d)] { // parent just made: d is missing
			made[d] = r.mkdir(d)
		} else {
			made[d] = r.ensureDir(d)
		}
	}
	var modes []source
	for _, s := range r.srcMode {
		if s.mode&0o7 != r.others(s) {
			modes = append(modes, s)
		}
	}
	if err := parallel(ctx, r.h.opts.Workers, len(modes), func(i int) { r.sourceMode(modes[i]) }); err != nil {
		return err
	}
	slices.Sort(links)
	if err := parallel(ctx, r.h.opts.Workers, len(links), func(i int) { r.link(links[i]) }); err != nil {
		return err
	}
	var empty []string
	for d := range r.dirs {
		if _, isLink := r.want[d]; !wantDirs[d] && !isLink && !r.base(d) {
			empty = append(empty, d)
		}
	}
	slices.SortFunc(empty, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, d := range empty {
		r.remove(d, OpRmdir)
	}
	if !r.dry {
		for _, p := range append(stale, empty...) {
			r.prune(path.Dir(p), wantDirs)
		}
	}
	for _, u := range r.nbUsers {
		r.notebooks(u)
	}
	return ctx.Err()
}

// base reports whether d is a link root that stays even when empty: the
// public root (maybe a volume) and each user's WPS-outputs directory.
func (r *run) base(d string) bool {
	if d == r.h.public {
		return true
	}
	user, rest, ok := strings.Cut(d, "/")
	return ok && user != "" && rest == r.h.cfg.UserWPSOutputsDirName
}

// prune removes d and its parents while they are empty link directories
// outside the walked mirrors (the parents of what a scoped run removed).
func (r *run) prune(d string, keep map[string]bool) {
	for ; d != "." && !r.base(d) && !keep[d]; d = path.Dir(d) {
		if _, walked := r.dirs[d]; walked {
			return
		}
		if _, ok := r.want[d]; ok || r.ws.Remove(d) != nil {
			return // not empty (or gone): stop there
		}
		r.note(OpRmdir, r.wsPath(d), "")
	}
}

// note counts a change and records it in dry runs.
func (r *run) note(op Op, rel, src string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch op {
	case OpLink:
		r.stats.LinksCreated++
	case OpReplace:
		r.stats.LinksReplaced++
	case OpRemove:
		r.stats.LinksRemoved++
	case OpMode:
		r.stats.ModesFixed++
	case OpMkdir:
		r.stats.DirsCreated++
	case OpRmdir:
		r.stats.DirsRemoved++
	case OpSymlink:
		r.stats.Symlinks++
	}
	if r.dry {
		c := Change{Op: op, Path: rel}
		if src != "" {
			c.Source = filepath.Join(r.h.cfg.WPSOutputsDir, src)
		}
		r.stats.Changes = append(r.stats.Changes, c)
	}
}

// fail records a failed change; the run goes on.
func (r *run) fail(op Op, rel string, err error) {
	r.log.WithError(err).WithFields(logrus.Fields{"path": rel, "op": op}).Warn("reconcile change failed")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Failed++
	if r.firstErr == nil {
		r.firstErr = fmt.Errorf("%s %s: %w", op, rel, err)
	}
}

// wsPath is the absolute path of a ws-relative path, for reports.
func (r *run) wsPath(rel string) string { return filepath.Join(r.h.cfg.WorkspaceDir, rel) }

// remove removes the entry rel in ws (never following a symlink).
func (r *run) remove(rel string, op Op) bool {
	if !r.dry {
		if err := r.ws.RemoveAll(rel); err != nil {
			r.fail(op, r.wsPath(rel), err)
			return false
		}
	}
	r.note(op, r.wsPath(rel), "")
	return true
}

// ensureDir makes d a real directory with others r-x and reports whether
// it had to create it. A symlink or file in its place is removed first: it
// can only have been planted there. A symlink above d, outside the link
// trees, makes it fail. The mode of a directory met in a walked mirror is
// taken from the walk.
func (r *run) ensureDir(d string) bool {
	var (
		st  safefs.Stat
		err error
	)
	if mode, walked := r.dirs[d]; walked {
		st.Mode = mode
	} else {
		st, err = r.ws.Lstat(d)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return r.mkdir(d)
	case err != nil:
		r.fail(OpMkdir, r.wsPath(d), err)
		return false
	case !st.IsDir():
		return r.remove(d, OpRemove) && r.mkdir(d)
	case st.Mode&0o7 != 0o5:
		if !r.dry {
			if _, err := r.ws.SetOthers(d, true, false, true); err != nil {
				r.fail(OpMode, r.wsPath(d), err)
				return false
			}
		}
		r.note(OpMode, r.wsPath(d), "")
	}
	return false
}

// mkdir creates the link directory d (0755, owned by the admin user).
func (r *run) mkdir(d string) bool {
	if !r.dry {
		if err := r.ws.MkdirAll(d, 0o755); err != nil {
			r.fail(OpMkdir, r.wsPath(d), err)
			return false
		}
		if _, err := r.ws.Chown(d, r.h.opts.AdminUID, r.h.opts.AdminGID); err != nil {
			r.log.WithError(err).WithField("path", r.wsPath(d)).Warn("chown link directory to the admin user")
		}
	}
	r.note(OpMkdir, r.wsPath(d), "")
	return true
}

// others returns the others bits a user source file should have: r-- when
// the user may read it and --- otherwise (write is never granted).
func (r *run) others(s source) os.FileMode {
	if r.acc.readable(s.user, s.resID) {
		return 0o4
	}
	return 0
}

// sourceMode sets the others bits of the user source file s, whose walked
// mode differs from what they should be.
func (r *run) sourceMode(s source) {
	abs := filepath.Join(r.h.cfg.WPSOutputsDir, s.rel)
	if !r.dry {
		if r.h.watch != nil {
			r.h.watch.Ignore(abs, handlers.FileModified)
		}
		if _, err := r.wps.SetOthers(s.rel, r.others(s) != 0, false, false); err != nil {
			r.fail(OpMode, abs, err)
			return
		}
	}
	r.note(OpMode, abs, "")
}

// link makes the desired link p, missing or pointing at another inode,
// point at its source's inode.
func (r *run) link(p string) {
	l := r.want[p]
	_, exists := r.have[p]
	op := OpLink
	if exists {
		op = OpReplace
	}
	if !r.dry {
		var err error
		if exists {
			err = r.ws.LinkReplace(r.wps, l.src, p)
		} else if err = r.ws.Link(r.wps, l.src, p); errors.Is(err, fs.ErrExist) {
			err = r.ws.LinkReplace(r.wps, l.src, p) // appeared meanwhile
		}
		if err != nil {
			r.fail(op, r.wsPath(p), err)
			return
		}
	}
	r.note(op, r.wsPath(p), l.src)
}
