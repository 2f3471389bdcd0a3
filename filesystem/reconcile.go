package filesystem

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

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
	Skipped int `json:"skipped"`
	Failed  int `json:"failed"` // changes that failed (see the error)
	// Indexed counts the directories whose listings were known unchanged
	// from the index of the previous runs.
	Indexed  int           `json:"indexed"`
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
//
// It walks each source directory and the link directory that mirrors it
// side by side, from their open descriptors, and compares their sorted
// listings by name and inode: the cost is one listing per directory and
// one lstat per user file (whose others bits are checked), with no map of
// the whole tree. Directories are handed to a bounded pool of goroutines;
// a link directory that ends up mirroring nothing is removed once all of
// its subdirectories are done.
func (h *Handler) reconcile(ctx context.Context, mp Magpie, scope Scope, opts ReconcileOptions) (Stats, error) {
	start := time.Now()
	h.index.load(ctx, h.opts.IndexStore, h.log)
	defer h.index.save(context.WithoutCancel(ctx), h.opts.IndexStore, h.log)
	r, err := h.newRun(ctx, mp, opts.DryRun, scope == Scope{})
	if err != nil {
		return Stats{}, fmt.Errorf("reconcile %s: %w", scope, err)
	}
	defer r.cancel(nil)
	if r.wps == nil {
		h.log.WithField("path", h.cfg.WPSOutputsDir).Warn("wps_outputs_dir does not exist: no WPS outputs to link")
	}
	err = r.scope(scope)
	r.wg.Wait()
	if err == nil {
		err = r.fatal()
	}
	if err == nil {
		if r.full {
			h.index.sweep(r.gen)
		}
		for _, u := range r.nbUsers {
			r.notebooks(u)
		}
	}
	slices.SortFunc(r.stats.Changes, func(a, b Change) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), strings.Compare(string(a.Op), string(b.Op)))
	})
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
	h      *Handler
	ctx    context.Context // canceled by the first fatal error
	cancel context.CancelCauseFunc
	mp     Magpie
	dry    bool
	wps    *safefs.Root // nil when wps_outputs_dir does not exist
	ws     *safefs.Root
	acc    *access
	log    *logrus.Entry
	full   bool   // the run covers everything
	gen    uint64 // index generation
	old    int64  // ctimes before this (ns) are old enough to be indexed

	slots chan struct{}  // free goroutines for directories
	wg    sync.WaitGroup // the goroutines started

	userMu  sync.Mutex
	users   map[int]string   // Magpie user id -> name, loaded on demand
	wsOK    map[string]bool  // user -> workspace is a real directory
	skipped map[string]bool  // warnings already logged
	bases   map[string]*node // user -> their link root
	claimed map[string]bool  // "<user>/<bird>": link directories this run mirrors
	nbUsers []string         // users whose notebooks symlink to check

	mu       sync.Mutex
	stats    Stats
	firstErr error
}

func (h *Handler) newRun(ctx context.Context, mp Magpie, dry, full bool) (*run, error) {
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
	ctx, cancel := context.WithCancelCause(ctx)
	return &run{
		h: h, ctx: ctx, cancel: cancel, mp: mp, dry: dry, wps: wps, ws: ws, log: h.log,
		full: full, gen: h.index.begin(full), old: h.indexedBefore(),
		acc:   newAccess(mp, h.log, h.cfg.SecureDataProxyName, h.cfg.WPSOutputsResName),
		slots: make(chan struct{}, h.opts.Workers),
		wsOK:  map[string]bool{}, skipped: map[string]bool{}, bases: map[string]*node{}, claimed: map[string]bool{},
	}, nil
}

// indexedBefore is the ctime (ns) before which a run may index a
// directory; 0 when the index is disabled.
func (h *Handler) indexedBefore() int64 {
	switch age := h.opts.IndexAge; {
	case age < 0:
		return 0
	case age == 0:
		age = DefaultIndexAge
		fallthrough
	default:
		return time.Now().Add(-age).UnixNano()
	}
}

// abort stops the run with err (the first one wins).
func (r *run) abort(err error) { r.cancel(err) }

// fatal returns the error that stopped the run, if any.
func (r *run) fatal() error {
	if r.ctx.Err() == nil {
		return nil
	}
	return context.Cause(r.ctx)
}

// scope starts the jobs of scope and the check of the user link roots.
func (r *run) scope(scope Scope) error {
	switch {
	case scope.User != "":
		return r.user(scope.User)
	case scope.Path != "":
		rel, err := r.h.sourceRel(scope.Path)
		if err != nil {
			return err
		}
		if rel != "" {
			return r.path(rel)
		}
	}
	if err := r.loadUsers(); err != nil {
		return err
	}
	users := r.usable()
	if scope.Path == "" {
		r.nbUsers = users
	}
	var src *safefs.Dir // none when wps_outputs_dir does not exist: every public link is stale
	if r.wps != nil {
		var err error
		if src, err = r.wps.OpenDir(""); err != nil {
			return err
		}
	}
	r.spawn(r.job(src, r.top(r.h.public, true), ""))
	r.wg.Wait()
	for _, u := range users {
		r.staleBirds(u, "")
	}
	return nil
}

// user reconciles one user's sources (*/users/<id>/), link root and
// notebooks symlink.
func (r *run) user(name string) error {
	if err := r.h.checkUser(name); err != nil {
		return err
	}
	if !r.workspace(name) {
		r.log.WithField("user", name).Warn("user workspace not found or not a directory: nothing to reconcile")
		return nil
	}
	r.nbUsers = []string{name}
	u, err := r.mp.User(r.ctx, name)
	if errors.Is(err, magpie.ErrNotFound) {
		r.log.WithField("user", name).Info("user unknown to Magpie: no WPS outputs to link")
		return nil
	}
	if err != nil {
		return fmt.Errorf("magpie user %q: %w", name, err)
	}
	r.users = map[int]string{u.ID: name}
	if r.wps != nil {
		birds, err := r.wps.ReadDir("")
		if err != nil {
			return err
		}
		for _, b := range birds {
			if !b.IsDir() {
				continue
			}
			src, err := r.wps.OpenDir(path.Join(b.Name, "users", strconv.Itoa(u.ID)))
			switch {
			case notEnterable(err):
				continue // nothing of this user's there: the link directory is stale
			case err != nil:
				return err
			}
			j, err := r.userJob(src, b.Name, name)
			if err != nil {
				return err
			}
			r.spawn(j)
		}
	}
	r.wg.Wait()
	r.staleBirds(name, "")
	return nil
}

// path reconciles the source file or directory rel (relative to
// wps_outputs_dir, not "") and the links that mirror it, then removes the
// link directories above it that the run left empty.
func (r *run) path(rel string) error {
	var (
		st  safefs.Stat
		err = fs.ErrNotExist
	)
	if r.wps != nil {
		st, err = r.wps.Lstat(rel)
	}
	switch {
	case err == nil, notEnterable(err):
	default:
		return err
	}
	file := err == nil && st.Mode.IsRegular()
	var (
		n     *node // the mirror of rel
		owner string
	)
	bird, id, sub, user := userFile(rel)
	if !file && !user {
		bird, id, sub, user = userDir(rel)
	}
	if user {
		if err := r.loadUsers(); err != nil {
			return err
		}
		name, ok := r.userOf(id)
		if !ok {
			return nil
		}
		if err := r.acc.load(r.ctx); err != nil {
			return err
		}
		n, owner = chain(r.base(name), path.Join(bird, sub)), name
	} else {
		if isBirdOrUsers(rel) { // user directories may be below
			if err := r.loadUsers(); err != nil {
				return err
			}
		}
		n = chain(r.top(r.h.public, false), rel)
	}
	var j job
	switch {
	case file: // compare that entry of its directory only
		dir, name := path.Split(rel)
		src, err := r.wps.OpenDir(dir)
		if err != nil {
			return err
		}
		j = job{src: src, m: n.parent, mdir: r.openMirror(n.parent), owner: owner, only: name}
	case err == nil && st.IsDir():
		src, err := r.wps.OpenDir(rel)
		if err != nil {
			return err
		}
		j = r.job(src, n, owner)
	default:
		j = r.job(nil, n, owner) // gone, or nothing to link: its mirror is stale
	}
	r.spawn(j)
	r.wg.Wait()
	if !user && isBirdOrUsers(rel) {
		bird, _, _ := strings.Cut(rel, "/")
		for _, u := range r.usable() {
			r.staleBirds(u, bird)
		}
		r.wg.Wait()
	}
	if r.ctx.Err() == nil && !r.dry {
		r.prune(j.m)
	}
	return nil
}

// isBirdOrUsers reports whether rel is "<bird>" or "<bird>/users", whose
// mirrors include every user's link directory of that bird.
func isBirdOrUsers(rel string) bool {
	_, rest, found := strings.Cut(rel, "/")
	return !found || rest == "users"
}

// prune removes the link directories from n up, while they are empty and
// not link roots, after a scoped run removed something below them.
func (r *run) prune(n *node) {
	r.mu.Lock()
	removed := r.stats.LinksRemoved+r.stats.DirsRemoved > 0
	r.mu.Unlock()
	if !removed {
		return
	}
	if n.walked { // removed at the end of its job when empty
		n = n.parent
	}
	for ; n != nil && !n.base && !n.content.Load(); n = n.parent {
		if r.ws.Remove(n.rel) != nil {
			return // not empty (or gone): stop there
		}
		r.note(OpRmdir, r.wsPath(n.rel), "")
	}
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

// userLinks is the user's link root; both names are checked single components.
func (r *run) userLinks(user string) string { return user + "/" + r.h.cfg.UserWPSOutputsDirName }

// loadUsers fetches the Magpie users once.
func (r *run) loadUsers() error {
	r.userMu.Lock()
	defer r.userMu.Unlock()
	if r.users != nil {
		return nil
	}
	users, err := r.mp.Users(r.ctx)
	if err != nil {
		return fmt.Errorf("magpie users: %w", err)
	}
	r.users = make(map[int]string, len(users))
	for _, u := range users {
		r.users[u.ID] = u.Name
	}
	return nil
}

// usable returns, sorted, the Magpie users whose name is valid and whose
// workspace is a real directory.
func (r *run) usable() []string {
	var out []string
	for _, name := range r.users {
		if r.h.checkUser(name) == nil && r.workspace(name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// userOf returns the name of a Magpie user id, if it is usable as a
// workspace: a known, valid name with a real workspace directory.
func (r *run) userOf(id int) (string, bool) {
	r.userMu.Lock()
	name, ok := r.users[id]
	r.userMu.Unlock()
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
	r.userMu.Lock()
	defer r.userMu.Unlock()
	ok, seen := r.wsOK[user]
	if !seen {
		st, err := r.ws.Lstat(user)
		ok = err == nil && st.IsDir()
		r.wsOK[user] = ok
	}
	return ok
}

func (r *run) warnOnce(key string, f logrus.Fields, msg string) {
	r.userMu.Lock()
	seen := r.skipped[key]
	r.skipped[key] = true
	r.userMu.Unlock()
	if !seen {
		r.log.WithFields(f).Warn(msg)
	}
}

// node is a directory of the link trees (relative to workspace_dir) as one
// run sees it.
type node struct {
	rel    string
	parent *node // nil: its missing parents are made with it
	base   bool  // a link root: made when needed, never removed
	// walked is true for a job's directory: its whole listing is compared,
	// and it is removed when its job and its subdirectories' are done and
	// nothing in it is wanted.
	walked bool
	state  state
	mode   os.FileMode // when state is isDir
	id     dirID       // when state is isDir

	once sync.Once
	ok   bool // after once: the directory is there (or would be, in a dry run)

	content atomic.Bool  // a wanted link is at or below it
	pending atomic.Int32 // its job and its subdirectories' not done yet
}

// state is what a run knows of a link directory.
type state uint8

const (
	unknown state = iota // not listed: lstat'ed when needed
	missing
	isDir
	notDir // a symlink or file where a directory belongs: replaced when needed
)

// top returns a parentless node for rel (a link root when base).
func (r *run) top(rel string, walked bool) *node {
	return &node{rel: rel, base: true, walked: walked}
}

// base returns the user's link root node, one per run.
func (r *run) base(user string) *node {
	r.userMu.Lock()
	defer r.userMu.Unlock()
	n := r.bases[user]
	if n == nil {
		n = r.top(r.userLinks(user), false)
		r.bases[user] = n
	}
	return n
}

// chain returns the node of rel below n, with a node per component in
// between; the last one is walked.
func chain(n *node, rel string) *node {
	for c := range strings.SplitSeq(rel, "/") {
		n = &node{rel: n.rel + "/" + c, parent: n}
	}
	n.walked = true
	return n
}

// job is one directory to reconcile.
type job struct {
	src   *safefs.Dir // nil: no source, everything in the mirror is stale
	m     *node       // nil: not mirrored (an unusable user's sources are only counted)
	mdir  *safefs.Dir // the open mirror directory, when it is one
	owner string      // the user whose data this is; "" for public data
	only  string      // compare this entry only (a one-file scope)
}

// job returns the job of src mirrored by the walked node n, opening n.
func (r *run) job(src *safefs.Dir, n *node, owner string) job {
	return job{src: src, m: n, mdir: r.openMirror(n), owner: owner}
}

// openMirror opens the link directory n, recording what is there.
func (r *run) openMirror(n *node) *safefs.Dir {
	if p := n.parent; p != nil && p.walked && (p.state == missing || p.state == notDir) {
		n.state = missing // (once its parent is replaced)
		return nil
	}
	d, err := r.ws.OpenDir(n.rel)
	return r.opened(n, d, err)
}

// opened records the outcome of opening the link directory n.
func (r *run) opened(n *node, d *safefs.Dir, err error) *safefs.Dir {
	switch {
	case err == nil:
		st, err := d.Stat()
		if err == nil {
			n.state, n.mode, n.id = isDir, st.Mode, idOf(st)
			return d
		}
		d.Close()
		n.state = unknown
	case errors.Is(err, fs.ErrNotExist):
		n.state = missing
	case errors.Is(err, unix.ENOTDIR):
		n.state = notDir
	default: // a symlink (here or above): looked at again only if needed
		n.state = unknown
	}
	return nil
}

// userJob returns the job of the user directory <bird>/users/<id> (src),
// mirrored in the user's <bird> link directory, and claims that directory.
func (r *run) userJob(src *safefs.Dir, bird, user string) (job, error) {
	if err := r.acc.load(r.ctx); err != nil {
		src.Close()
		return job{}, err
	}
	r.claim(user, bird)
	n := &node{rel: r.userLinks(user) + "/" + bird, parent: r.base(user), walked: true}
	return r.job(src, n, user), nil
}

// claim keeps the user's link directory of bird from staleBirds.
func (r *run) claim(user, bird string) {
	r.userMu.Lock()
	r.claimed[user+"/"+bird] = true
	r.userMu.Unlock()
}

// staleBirds removes what the user's link root holds (only its entry bird,
// when bird is set) that no job of this run claimed.
func (r *run) staleBirds(user, bird string) {
	b := r.base(user)
	d := r.openMirror(b)
	if d == nil {
		return
	}
	defer d.Close()
	ents, err := d.ReadDir()
	if err != nil {
		r.fail(OpRemove, r.wsPath(b.rel), err)
		return
	}
	for _, e := range ents {
		r.userMu.Lock()
		claimed := r.claimed[user+"/"+e.Name]
		r.userMu.Unlock()
		if !claimed && (bird == "" || e.Name == bird) {
			r.stale(b, d, e)
		}
	}
}

// spawn runs the job on a goroutine of the pool when one is free, else in
// the caller's.
func (r *run) spawn(j job) {
	if j.m != nil && j.m.walked {
		j.m.pending.Store(1)
		if p := j.m.parent; p != nil && p.walked {
			p.pending.Add(1)
		}
	}
	select {
	case r.slots <- struct{}{}:
		r.wg.Go(func() {
			defer func() { <-r.slots }()
			r.process(j)
		})
	default:
		r.process(j)
	}
}

// done marks one of n's pending jobs done; after the last, n is removed if
// nothing in it is wanted, and its parent is told.
func (r *run) done(n *node) {
	if n.pending.Add(-1) > 0 {
		return
	}
	if !n.content.Load() && !n.base && r.ctx.Err() == nil {
		switch n.state {
		case isDir:
			r.rmdir(n.rel)
		case notDir:
			r.remove(n.rel, OpRemove)
		}
	}
	if p := n.parent; p != nil {
		if n.content.Load() {
			p.content.Store(true)
		}
		if p.walked {
			r.done(p)
		}
	}
}

// keep marks n as holding a wanted link and makes sure it is a directory
// with others r-x.
func (r *run) keep(n *node) {
	n.content.Store(true)
	r.ensure(n)
}

// pendingLink is a link a job makes: the entry name, its source (relative
// to wps_outputs_dir), and what is in its place.
type pendingLink struct {
	name, src   string
	exists, dir bool
}

// process compares one source directory with its mirror and fixes the
// difference; its subdirectories become jobs of their own, opened one at a
// time from this directory's descriptors (so open descriptors stay bounded
// by the pool size times the depth).
func (r *run) process(j job) {
	defer func() {
		if j.src != nil {
			j.src.Close()
		}
		if j.mdir != nil {
			j.mdir.Close()
		}
		if j.m != nil && j.m.walked {
			r.done(j.m)
		}
	}()
	if r.ctx.Err() != nil {
		return
	}
	// A leaf directory pair found in sync is indexed, by ids taken before
	// the listings.
	var srcID dirID
	indexable := j.m != nil && j.m.walked && j.only == "" && j.src != nil && j.mdir != nil
	if indexable {
		st, err := j.src.Stat()
		srcID, indexable = idOf(st), err == nil
	}
	var srcEnts, mEnts []safefs.DirEntry
	var err error
	if j.src != nil {
		if srcEnts, err = j.src.ReadDir(); err != nil {
			r.fail(OpLink, filepath.Join(r.h.cfg.WPSOutputsDir, j.src.Rel()), err)
			r.hold(j.m)
			return
		}
	}
	if j.mdir != nil {
		if mEnts, err = j.mdir.ReadDir(); err != nil {
			r.fail(OpRemove, r.wsPath(j.m.rel), err)
			r.hold(j.m)
			return
		}
	}
	if j.only != "" {
		srcEnts, mEnts = only(srcEnts, j.only), only(mEnts, j.only)
	}
	var acc route
	if j.owner != "" && j.src != nil {
		acc = r.acc.dir(j.src.Rel())
	}
	var (
		links            []pendingLink
		subs             []subdir
		wanted, changed  bool
		sources, skipped int
		names            []string // a user's files and their access, for the index
		readable         []bool
	)
	stale := func(me safefs.DirEntry) {
		changed = true
		r.stale(j.m, j.mdir, me)
	}
	for i, k := 0, 0; i < len(srcEnts) || k < len(mEnts); {
		var s, me *safefs.DirEntry
		switch {
		case k == len(mEnts) || i < len(srcEnts) && srcEnts[i].Name < mEnts[k].Name:
			s, i = &srcEnts[i], i+1
		case i == len(srcEnts) || mEnts[k].Name < srcEnts[i].Name:
			me, k = &mEnts[k], k+1
		default:
			s, me, i, k = &srcEnts[i], &mEnts[k], i+1, k+1
		}
		switch {
		case s == nil:
			stale(*me)
		case s.IsDir():
			subs = append(subs, subdir{name: s.Name, me: me})
		case s.Type != 0: // symlinks and specials are not linked
			changed = true // not indexed: its type is not in a leaf
			if me != nil {
				stale(*me)
			}
		case j.m == nil:
			sources++
			skipped++
		default:
			sources++
			ino, want, err := r.want(j, acc, *s)
			if err != nil {
				r.abort(err)
				return
			}
			if j.owner != "" {
				names, readable = append(names, s.Name), append(readable, want)
			}
			switch {
			case !want:
				if me != nil {
					stale(*me)
				}
			case me == nil || me.Type != 0 || me.Ino != ino:
				links = append(links, pendingLink{name: s.Name, src: j.src.Join(s.Name),
					exists: me != nil, dir: me != nil && me.IsDir()})
				wanted = true
			default:
				wanted = true
			}
		}
	}
	r.mu.Lock()
	r.stats.Sources += sources
	r.stats.Skipped += skipped
	r.mu.Unlock()
	if wanted {
		r.keep(j.m)
	}
	for _, l := range links {
		r.link(j.m.rel+"/"+l.name, l.src, l.exists, l.dir)
	}
	if indexable && len(subs) == 0 && len(links) == 0 && !changed && wanted && j.m.mode&0o7 == 0o5 &&
		srcID.ctime < r.old && j.m.id.ctime < r.old {
		r.h.index.put(j.src.Rel(), &leaf{mirror: j.m.rel, src: srcID, dst: j.m.id, files: sources,
			names: strings.Join(names, "/"), readable: slices.Clip(readable), gen: r.gen})
	}
	for _, sd := range subs {
		if r.ctx.Err() != nil {
			return
		}
		r.subdir(j, sd)
	}
}

// only returns the entry of ents named name, if any.
func only(ents []safefs.DirEntry, name string) []safefs.DirEntry {
	for i, e := range ents {
		if e.Name == name {
			return ents[i : i+1]
		}
	}
	return nil
}

// hold keeps n (and its parents) when what it should mirror is unknown.
func (r *run) hold(n *node) {
	if n != nil {
		n.content.Store(true)
	}
}

// want reports whether the source file s of the job is to be linked, with
// its inode. A user file's others bits are set from the user's access
// (read: r--, else ---; write is never granted) when they differ.
func (r *run) want(j job, acc route, s safefs.DirEntry) (uint64, bool, error) {
	if j.owner == "" {
		return s.Ino, true, nil
	}
	st, err := j.src.Lstat(s.Name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, false, nil // removed since it was listed
	case err != nil:
		r.fail(OpMode, filepath.Join(r.h.cfg.WPSOutputsDir, j.src.Join(s.Name)), err)
		return 0, false, nil
	case !st.Mode.IsRegular():
		return 0, false, nil // replaced since it was listed
	}
	read, err := r.acc.readable(r.ctx, j.owner, acc.file(s.Name))
	if err != nil {
		return 0, false, err
	}
	if st.Mode&0o7 != others(read) {
		r.sourceMode(j.src.Join(s.Name), read)
	}
	return st.Ino, read, nil
}

// subdir is a source subdirectory of a job and the mirror entry of the
// same name, if any.
type subdir struct {
	name string
	me   *safefs.DirEntry
}

// subdir opens the source subdirectory sd of j and its mirror and runs
// their job; a source gone since it was listed makes its mirror stale. The
// user directories below <bird>/users are mirrored in their owner's link
// root, so their public mirror, if any, is stale. A leaf pair the index
// knows unchanged is settled here.
func (r *run) subdir(j job, sd subdir) {
	stale := func() {
		if sd.me != nil {
			r.stale(j.m, j.mdir, *sd.me)
		}
	}
	var n *node
	if j.m != nil {
		if bird, ok := usersDir(j.src.Rel()); ok && j.owner == "" && digits(sd.name) {
			stale()
			r.userDir(j, sd.name, bird)
			return
		}
		n = &node{rel: j.m.rel + "/" + sd.name, parent: j.m, walked: true, state: missing}
	}
	var src *safefs.Dir
	if n != nil && sd.me != nil && sd.me.IsDir() {
		var done bool
		if done, src = r.indexed(j, sd.name, n); done {
			return
		}
	}
	if src == nil {
		var gone bool
		if src, gone = r.openSource(j, sd.name); gone {
			stale() // gone or swapped since it was listed: nothing to mirror
			return
		}
		if src == nil {
			r.hold(j.m)
			return
		}
	}
	if n == nil {
		r.spawn(job{src: src}) // only counted
		return
	}
	var mdir *safefs.Dir
	switch {
	case sd.me == nil:
		if j.m.state == unknown {
			n.state = unknown
		}
	case sd.me.IsDir():
		d, err := j.mdir.OpenDir(sd.name)
		mdir = r.opened(n, d, err)
	default:
		n.state = notDir
	}
	r.spawn(job{src: src, m: n, mdir: mdir, owner: j.owner})
}

// userDir runs the job of the user directory <bird>/users/<id> below the
// job j (a public one).
func (r *run) userDir(j job, id, bird string) {
	uid, _ := strconv.Atoi(id)
	user, usable := r.userOf(uid)
	src, gone := r.openSource(j, id)
	switch {
	case src == nil && !gone && usable:
		r.claim(user, bird) // unreadable now: its links stay as they are
		return
	case src == nil:
		return
	case !usable:
		r.spawn(job{src: src}) // only counted
		return
	}
	uj, err := r.userJob(src, bird, user)
	if err != nil {
		r.abort(err)
		return
	}
	r.spawn(uj)
}

// indexed settles the subdirectory name of j, mirrored by n, from the
// index when neither directory changed since a run found them in sync: a
// public pair costs two fstatat; a user's pair the open of the source
// directory and an lstat and access check per file. It reports whether it
// did; when not, src is the source directory if it opened it.
func (r *run) indexed(j job, name string, n *node) (done bool, src *safefs.Dir) {
	l := r.h.index.get(j.src.Join(name), n.rel, r.gen)
	if l == nil {
		return false, nil
	}
	mst, err := j.mdir.Lstat(name)
	if err != nil || !mst.IsDir() || idOf(mst) != l.dst {
		return false, nil
	}
	if j.owner == "" {
		st, err := j.src.Lstat(name)
		if err != nil || !st.IsDir() || idOf(st) != l.src {
			return false, nil
		}
	} else {
		if src, err = j.src.OpenDir(name); err != nil {
			return false, nil
		}
		st, err := src.Stat()
		if err != nil || idOf(st) != l.src {
			return false, src
		}
		acc := r.acc.dir(src.Rel())
		i := -1
		for f := range strings.SplitSeq(l.names, "/") {
			i++
			st, err := src.Lstat(f)
			if err != nil || !st.Mode.IsRegular() {
				return false, src
			}
			read, err := r.acc.readable(r.ctx, j.owner, acc.file(f))
			if err != nil {
				src.Close()
				r.abort(err)
				return true, nil
			}
			if read != l.readable[i] {
				return false, src // access changed: the links too
			}
			if st.Mode&0o7 != others(read) {
				r.sourceMode(src.Join(f), read)
			}
		}
		src.Close()
	}
	n.state, n.mode, n.id = isDir, mst.Mode, idOf(mst)
	r.mu.Lock()
	r.stats.Sources += l.files
	r.stats.Indexed++
	r.mu.Unlock()
	r.keep(n)
	j.m.content.Store(true)
	return true, nil
}

// others is the others bits of a user file readable or not (write is
// never granted).
func others(read bool) os.FileMode {
	if read {
		return 0o4
	}
	return 0
}

// openSource opens the source subdirectory name of j. gone reports that it
// is missing, or no longer a directory (a symlink is never followed); any
// other error is recorded as a failed change, and src is nil.
func (r *run) openSource(j job, name string) (src *safefs.Dir, gone bool) {
	src, err := j.src.OpenDir(name)
	switch {
	case err == nil:
		return src, false
	case notEnterable(err):
		return nil, true
	}
	r.fail(OpLink, filepath.Join(r.h.cfg.WPSOutputsDir, j.src.Join(name)), err)
	return nil, false
}

// notEnterable reports whether err, from opening a directory, says it is
// gone or is not one: missing, a symlink (never followed) or a file.
func notEnterable(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, safefs.ErrSymlink) || errors.Is(err, unix.ENOTDIR)
}

// usersDir reports whether the source directory rel is <bird>/users.
func usersDir(rel string) (string, bool) {
	bird, rest, found := strings.Cut(rel, "/")
	return bird, found && rest == "users"
}

// stale removes the entry e of the link directory parent (open as d), which
// mirrors nothing: a directory is emptied first, as a job of its own.
func (r *run) stale(parent *node, d *safefs.Dir, e safefs.DirEntry) {
	rel := parent.rel + "/" + e.Name
	if !e.IsDir() {
		r.remove(rel, OpRemove)
		return
	}
	n := &node{rel: rel, parent: parent, walked: true}
	md, err := d.OpenDir(e.Name)
	if md = r.opened(n, md, err); md == nil && n.state != notDir {
		return // gone since it was listed, or unreadable: left alone
	}
	r.spawn(job{m: n, mdir: md})
}

// ensure makes n a real directory with others r-x, its parents first, and
// reports whether it is there. A symlink or file in its place is removed
// first: it can only have been planted there. A symlink above a parentless
// node makes it fail.
func (r *run) ensure(n *node) bool {
	n.once.Do(func() {
		if n.parent != nil && !r.ensure(n.parent) {
			return
		}
		state, mode := n.state, n.mode // n is shared: its fields stay as they are
		if state == unknown {
			st, err := r.ws.Lstat(n.rel)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				state = missing
			case err != nil:
				r.fail(OpMkdir, r.wsPath(n.rel), err)
				return
			case st.IsDir():
				state, mode = isDir, st.Mode
			default:
				state = notDir
			}
		}
		switch state {
		case missing:
			n.ok = r.mkdir(n.rel)
		case notDir:
			n.ok = r.remove(n.rel, OpRemove) && r.mkdir(n.rel)
		default:
			n.ok = true
			if mode&0o7 == 0o5 {
				return
			}
			if !r.dry {
				if _, err := r.ws.SetOthers(n.rel, true, false, true); err != nil {
					r.fail(OpMode, r.wsPath(n.rel), err)
					return
				}
			}
			r.note(OpMode, r.wsPath(n.rel), "")
		}
	})
	return n.ok
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

// rmdir removes the link directory rel, emptied by its job.
func (r *run) rmdir(rel string) {
	if !r.dry {
		if err := r.ws.Remove(rel); err != nil {
			r.fail(OpRmdir, r.wsPath(rel), err)
			return
		}
	}
	r.note(OpRmdir, r.wsPath(rel), "")
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

// sourceMode sets the others bits of the user source file rel to r-- when
// read, else ---.
func (r *run) sourceMode(rel string, read bool) {
	abs := filepath.Join(r.h.cfg.WPSOutputsDir, rel)
	if !r.dry {
		if r.h.watch != nil {
			r.h.watch.Ignore(abs, handlers.FileModified)
		}
		if _, err := r.wps.SetOthers(rel, read, false, false); err != nil {
			r.fail(OpMode, abs, err)
			return
		}
	}
	r.note(OpMode, abs, "")
}

// link makes p a hardlink to the source src: a missing link is created, an
// entry pointing at another inode replaced, a directory in its place
// removed first.
func (r *run) link(p, src string, exists, dir bool) {
	op := OpLink
	switch {
	case dir:
		if !r.remove(p, OpRemove) {
			return
		}
		exists = false
	case exists:
		op = OpReplace
	}
	if !r.dry {
		var err error
		if exists {
			err = r.ws.LinkReplace(r.wps, src, p)
		} else if err = r.ws.Link(r.wps, src, p); errors.Is(err, fs.ErrExist) {
			err = r.ws.LinkReplace(r.wps, src, p) // appeared meanwhile
		}
		if err != nil {
			r.fail(op, r.wsPath(p), err)
			return
		}
	}
	r.note(op, r.wsPath(p), src)
}
