package filesystem

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cowbird-go/cowbird/safefs"
)

// node is a directory of the link trees (relative to workspace_dir) as one
// run sees it.
type node struct {
	rel    string
	parent *node // nil: its missing parents are made with it
	root   bool  // a link root: made when needed, never removed
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

// rootNode returns a parentless node for the link root rel.
func rootNode(rel string, walked bool) *node {
	return &node{rel: rel, root: true, walked: walked}
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
	src       *safefs.Dir // nil: no source, everything in the mirror is stale
	mirror    *node       // nil: not mirrored (an unusable user's sources are only counted)
	mirrorDir *safefs.Dir // the open mirror directory, when it is one
	owner     string      // the user whose data this is; "" for public data
	only      string      // compare this entry only (a one-file scope)
}

// newJob returns the job of src mirrored by the walked node n, opening n.
func (r *run) newJob(src *safefs.Dir, n *node, owner string) job {
	return job{src: src, mirror: n, mirrorDir: r.openMirror(n), owner: owner}
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

// pool runs the jobs of a run on a bounded number of goroutines. Like an
// errgroup, it cancels the run's context with the first fatal error.
type pool struct {
	slots chan struct{} // one per goroutine that may run
	wg    sync.WaitGroup
	stop  context.CancelCauseFunc
}

func newPool(workers int, stop context.CancelCauseFunc) *pool {
	return &pool{slots: make(chan struct{}, workers), stop: stop}
}

// do runs f on a goroutine of the pool when one is free, else in the
// caller's.
func (p *pool) do(f func()) {
	select {
	case p.slots <- struct{}{}:
		p.wg.Go(func() {
			defer func() { <-p.slots }()
			f()
		})
	default:
		f()
	}
}

// wait waits for the goroutines started so far.
func (p *pool) wait() { p.wg.Wait() }

// spawn runs the job j (see pool.do). A fatal error stops the run before
// j's directories are released, so that nothing is removed on its account.
func (r *run) spawn(ctx context.Context, j job) {
	if j.mirror != nil && j.mirror.walked {
		j.mirror.pending.Store(1)
		if p := j.mirror.parent; p != nil && p.walked {
			p.pending.Add(1)
		}
	}
	r.pool.do(func() {
		if err := r.process(ctx, &j); err != nil {
			r.pool.stop(err)
		}
		r.release(ctx, j)
	})
}

// release closes j's directories and marks its part of its node done.
func (r *run) release(ctx context.Context, j job) {
	if j.src != nil {
		j.src.Close()
	}
	if j.mirrorDir != nil {
		j.mirrorDir.Close()
	}
	if j.mirror != nil && j.mirror.walked {
		r.done(ctx, j.mirror)
	}
}

// done marks one of n's pending jobs done; after the last, n is removed if
// nothing in it is wanted, and its parent is told.
func (r *run) done(ctx context.Context, n *node) {
	if n.pending.Add(-1) > 0 {
		return
	}
	if !n.content.Load() && !n.root && ctx.Err() == nil && (n.state == isDir || n.state == notDir) {
		_ = r.locked(ctx, func(*section) error {
			if n.state == isDir {
				r.rmdir(n.rel)
			} else {
				r.remove(n.rel, OpRemove)
			}
			return nil
		})
	}
	if p := n.parent; p != nil {
		if n.content.Load() {
			p.content.Store(true)
		}
		if p.walked {
			r.done(ctx, p)
		}
	}
}

// process compares one source directory with its mirror and fixes the
// difference; its subdirectories become jobs of their own, opened one at a
// time from this directory's descriptors (so open descriptors stay bounded
// by the pool size times the depth). It returns only fatal errors.
//
// The directory is listed, planned and fixed in one section (see locked),
// and each subdirectory is looked at in a section of its own: a file event
// may run between them, never during one.
func (r *run) process(ctx context.Context, j *job) error {
	if ctx.Err() != nil {
		return nil
	}
	var p plan
	listed := false
	err := r.locked(ctx, func(s *section) error {
		if s.again && !r.reopen(j) {
			return nil
		}
		srcID, indexable := leafID(*j) // taken before the listings
		srcEnts, mirrorEnts, ok := r.list(*j)
		if !ok {
			return nil
		}
		var err error
		if p, err = r.plan(ctx, s, *j, srcEnts, mirrorEnts); err != nil || s.incomplete() {
			return err
		}
		listed = true
		r.apply(s, *j, p)
		if indexable {
			r.record(*j, srcID, p)
		}
		return nil
	})
	if err != nil || !listed {
		return err
	}
	for _, sd := range p.subdirs {
		if ctx.Err() != nil {
			return nil
		}
		if err := r.beforeSubdir(ctx, *j, sd); err != nil {
			return err
		}
		if err := r.locked(ctx, func(s *section) error { return r.subdir(ctx, s, *j, sd) }); err != nil {
			return err
		}
	}
	return nil
}

// reopen opens j's directories again, by path, for a section that runs
// again (a directory is read once per descriptor). It reports false when
// the source cannot be read any more; the mirror is then kept as it is.
func (r *run) reopen(j *job) bool {
	if j.src != nil {
		rel := j.src.Rel()
		j.src.Close()
		src, err := r.wps.OpenDir(rel)
		switch {
		case err == nil:
			j.src = src
		case notEnterable(err):
			j.src = nil // gone: what mirrors it is stale
		default:
			j.src = nil
			r.fail(OpLink, r.srcPath(rel), err)
			r.hold(j.mirror)
			return false
		}
	}
	if j.mirrorDir != nil { // else what the parent saw stands (see ensure)
		j.mirrorDir.Close()
		j.mirrorDir = r.openMirror(j.mirror)
	}
	return true
}

// beforeSubdir waits, outside any section, for what the section of the
// subdirectory sd of j needs from Magpie: for a user directory
// <bird>/users/<id>, the users and, if the user's outputs are linked, the
// secure-data-proxy service.
func (r *run) beforeSubdir(ctx context.Context, j job, sd subdir) error {
	if j.mirror == nil || j.owner != "" || !digits(sd.name) {
		return nil
	}
	if _, ok := usersDir(j.src.Rel()); !ok {
		return nil
	}
	_ = r.loadUsers(ctx) // a failure leaves no user known (see all)
	id, _ := strconv.Atoi(sd.name)
	if _, usable := r.userOf(id); usable {
		return r.access.load(ctx)
	}
	return nil
}

// list reads the listings of j's directories, sorted by name (only the
// entry j.only when set). A listing that fails is a failed change, and the
// mirror is kept as it is.
func (r *run) list(j job) (srcEnts, mirrorEnts []safefs.DirEntry, ok bool) {
	var err error
	if j.src != nil {
		if srcEnts, err = j.src.ReadDir(); err != nil {
			r.fail(OpLink, r.srcPath(j.src.Rel()), err)
			r.hold(j.mirror)
			return nil, nil, false
		}
	}
	if j.mirrorDir != nil {
		if mirrorEnts, err = j.mirrorDir.ReadDir(); err != nil {
			r.fail(OpRemove, r.wsPath(j.mirror.rel), err)
			r.hold(j.mirror)
			return nil, nil, false
		}
	}
	if j.only != "" {
		srcEnts, mirrorEnts = only(srcEnts, j.only), only(mirrorEnts, j.only)
	}
	return srcEnts, mirrorEnts, true
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

// subdir is a source subdirectory of a job and the mirror entry of the
// same name, if any.
type subdir struct {
	name     string
	mirrored *safefs.DirEntry
}

// subdir opens the source subdirectory sd of j and its mirror and runs
// their job; a source gone since it was listed makes its mirror stale. The
// user directories below <bird>/users are mirrored in their owner's link
// root, so their public mirror, if any, is stale. A leaf pair the index
// knows unchanged is settled here.
func (r *run) subdir(ctx context.Context, s *section, j job, sd subdir) error {
	if j.mirror == nil { // only counted
		if src, _ := r.openSource(j, sd.name); src != nil {
			s.spawn(job{src: src})
		}
		return nil
	}
	if bird, ok := usersDir(j.src.Rel()); ok && j.owner == "" && digits(sd.name) {
		r.staleSubdir(s, j, sd)
		return r.userDir(ctx, s, j, sd.name, bird)
	}
	n := &node{rel: j.mirror.rel + "/" + sd.name, parent: j.mirror, walked: true, state: missing}
	var src *safefs.Dir
	if sd.mirrored != nil && sd.mirrored.IsDir() {
		done, opened, err := r.indexed(ctx, s, j, sd.name, n)
		if done || err != nil || s.incomplete() {
			return err
		}
		src = opened
	}
	if src == nil {
		var gone bool
		if src, gone = r.openSource(j, sd.name); gone {
			r.staleSubdir(s, j, sd) // gone or swapped since it was listed: nothing to mirror
			return nil
		}
		if src == nil {
			r.hold(j.mirror)
			return nil
		}
	}
	s.spawn(job{src: src, mirror: n, mirrorDir: r.openSubMirror(j, sd, n), owner: j.owner})
	return nil
}

// openSubMirror opens the mirror of sd, the subdirectory of j that n
// mirrors, and records in n what is there.
func (r *run) openSubMirror(j job, sd subdir, n *node) *safefs.Dir {
	switch {
	case sd.mirrored == nil:
		if j.mirror.state == unknown {
			n.state = unknown
		}
		return nil
	case sd.mirrored.IsDir():
		d, err := j.mirrorDir.OpenDir(sd.name)
		return r.opened(n, d, err)
	default:
		n.state = notDir
		return nil
	}
}

// userDir starts the job of the user directory <bird>/users/<id> below
// the job j (a public one).
func (r *run) userDir(ctx context.Context, s *section, j job, id, bird string) error {
	uid, _ := strconv.Atoi(id)
	user, usable := r.userOf(uid)
	src, gone := r.openSource(j, id)
	switch {
	case src == nil && !gone && usable:
		r.claim(user, bird) // unreadable now: its links stay as they are
		return nil
	case src == nil:
		return nil
	case !usable:
		s.spawn(job{src: src}) // only counted
		return nil
	}
	uj, err := r.userJob(ctx, src, bird, user)
	if err != nil {
		return err
	}
	s.spawn(uj)
	return nil
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
	r.fail(OpLink, r.srcPath(j.src.Join(name)), err)
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
