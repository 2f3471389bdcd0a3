package filesystem

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cowbird-go/cowbird/safefs"
)

// apply makes the changes p planned for j's directory pair, and counts its
// sources; the stale subdirectories of the mirror become jobs of s.
func (r *run) apply(s *section, j job, p plan) {
	for _, f := range p.failed {
		r.fail(f.op, f.path, f.err)
	}
	for _, e := range p.stale {
		r.stale(s, j.mirror, j.mirrorDir, e)
	}
	for _, m := range p.modes {
		r.sourceMode(m.rel, m.read)
	}
	r.mu.Lock()
	r.stats.Sources += p.sources
	r.stats.Skipped += p.skipped
	r.mu.Unlock()
	if p.wanted {
		r.keep(j.mirror)
	}
	for _, l := range p.links {
		r.link(j.mirror.rel+"/"+l.name, l.src, l.exists, l.dir)
	}
}

// staleSubdir removes the mirror of the source subdirectory sd of j, if
// any: it mirrors nothing.
func (r *run) staleSubdir(s *section, j job, sd subdir) {
	if sd.mirrored != nil {
		r.stale(s, j.mirror, j.mirrorDir, *sd.mirrored)
	}
}

// stale removes the entry e of the link directory parent (open as d), which
// mirrors nothing: a directory is emptied first, by a job of s.
func (r *run) stale(s *section, parent *node, d *safefs.Dir, e safefs.DirEntry) {
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
	s.spawn(job{mirror: n, mirrorDir: md})
}

// keep marks n as holding a wanted link and makes sure it is a directory
// with others r-x.
func (r *run) keep(n *node) {
	n.content.Store(true)
	r.ensure(n)
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
	for ; n != nil && !n.root && !n.content.Load(); n = n.parent {
		if r.ws.Remove(n.rel) != nil {
			return // not empty (or gone): stop there
		}
		r.note(OpRmdir, r.wsPath(n.rel), "")
	}
}

// note counts a change and records it in dry runs; path is absolute, src
// relative to wps_outputs_dir.
func (r *run) note(op Op, path, src string) {
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
		c := Change{Op: op, Path: path}
		if src != "" {
			c.Source = r.srcPath(src)
		}
		r.stats.Changes = append(r.stats.Changes, c)
	}
}

// fail records a failed change to the absolute path; the run goes on.
func (r *run) fail(op Op, path string, err error) {
	r.log.WithError(err).WithFields(logrus.Fields{"path": path, "op": op}).Warn("reconcile change failed")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Failed++
	if r.firstErr == nil {
		r.firstErr = fmt.Errorf("%s %s: %w", op, path, err)
	}
}

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

// rmdir removes the link directory rel, emptied by its job. One that is
// not empty is kept: a file event linked something there meanwhile, or the
// removal of an entry failed (and was counted).
func (r *run) rmdir(rel string) {
	if !r.dry {
		if err := r.ws.Remove(rel); errors.Is(err, unix.ENOTEMPTY) {
			return
		} else if err != nil {
			r.fail(OpRmdir, r.wsPath(rel), err)
			return
		}
	}
	r.note(OpRmdir, r.wsPath(rel), "")
}

// mkdir creates the link directory rel (0755, owned by the admin user).
func (r *run) mkdir(rel string) bool {
	if !r.dry {
		if err := r.ws.MkdirAll(rel, 0o755); err != nil {
			r.fail(OpMkdir, r.wsPath(rel), err)
			return false
		}
		if _, err := r.ws.Chown(rel, r.handler.opts.AdminUID, r.handler.opts.AdminGID); err != nil {
			r.log.WithError(err).WithField("path", r.wsPath(rel)).Warn("chown link directory to the admin user")
		}
	}
	r.note(OpMkdir, r.wsPath(rel), "")
	return true
}

// sourceMode sets the others bits of the user source file rel to r-- when
// read, else --- (they differ now); the monitor is told to leave out the
// event it causes.
func (r *run) sourceMode(rel string, read bool) {
	abs := r.srcPath(rel)
	if !r.dry {
		if r.handler.watch != nil {
			var others fs.FileMode // ---
			if read {
				others = 0o4 // r--
			}
			r.handler.watch.Changing(abs, others)
		}
		if _, err := r.wps.SetOthers(rel, read, false, false); err != nil {
			r.fail(OpMode, abs, err)
			return
		}
	}
	r.note(OpMode, abs, "")
}

// link makes rel a hardlink to the source src: a missing link is created,
// an entry pointing at another inode replaced, a directory in its place
// removed first.
func (r *run) link(rel, src string, exists, dir bool) {
	op := OpLink
	switch {
	case dir:
		if !r.remove(rel, OpRemove) {
			return
		}
		exists = false
	case exists:
		op = OpReplace
	}
	if !r.dry {
		var err error
		if exists {
			err = r.ws.LinkReplace(r.wps, src, rel)
		} else if err = r.ws.Link(r.wps, src, rel); errors.Is(err, fs.ErrExist) {
			err = r.ws.LinkReplace(r.wps, src, rel) // appeared meanwhile
		}
		if err != nil {
			r.fail(op, r.wsPath(rel), err)
			return
		}
	}
	r.note(op, r.wsPath(rel), src)
}

// errNotSymlink is the original's FileExistsError text.
var errNotSymlink = errors.New("Failed to create symlinked directory, since a non-symlink directory already exists at the targeted path") //nolint:staticcheck // the original's text

// notebooks makes {workspace}/{user}/{notebooks_dir_name} a symlink to
// {jupyterhub_user_data_dir}/{user}; a wrong target is replaced atomically,
// a real file or directory there is an error.
func (r *run) notebooks(user string) {
	cfg := r.handler.cfg
	rel := path.Join(user, cfg.NotebooksDirName)
	target := filepath.Join(cfg.JupyterhubUserDataDir, user)
	st, err := r.ws.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		r.fail(OpSymlink, r.wsPath(rel), err)
		return
	case !st.IsSymlink():
		r.fail(OpSymlink, r.wsPath(rel), fmt.Errorf("%w [%s]", errNotSymlink, r.wsPath(rel)))
		return
	default:
		cur, err := r.ws.Readlink(rel)
		if err != nil {
			r.fail(OpSymlink, r.wsPath(rel), err)
			return
		}
		if cur == target {
			return
		}
	}
	if !r.dry {
		if err := r.replaceSymlink(target, rel, path.Join(user, ".cowbird-"+cfg.NotebooksDirName+".tmp")); err != nil {
			r.fail(OpSymlink, r.wsPath(rel), err)
			return
		}
	}
	r.note(OpSymlink, r.wsPath(rel), "")
}

// replaceSymlink makes rel a symlink to target, atomically, through tmp.
func (r *run) replaceSymlink(target, rel, tmp string) error {
	if err := r.ws.RemoveAll(tmp); err != nil {
		return err
	}
	if err := r.ws.Symlink(target, tmp); err != nil {
		return err
	}
	return r.ws.Rename(tmp, rel)
}
