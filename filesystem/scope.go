package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strconv"
	"strings"

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

// String describes the scope in errors and logs.
func (s Scope) String() string {
	switch {
	case s.User != "":
		return "user " + s.User
	case s.Path != "":
		return s.Path
	}
	return "all"
}

// cover runs the jobs of scope and the check of the user link roots.
func (r *run) cover(ctx context.Context, scope Scope) error {
	switch {
	case scope.User != "":
		return r.user(ctx, scope.User)
	case scope.Path != "":
		rel, err := r.handler.sourceRel(scope.Path)
		if err != nil {
			return err
		}
		if rel != "" {
			return r.path(ctx, rel)
		}
	}
	return r.all(ctx, scope.Path == "")
}

// all reconciles every source and link, and the notebooks symlinks too
// when notebooks is set.
//
// The walk starts at once: the users and the secure-data-proxy service are
// fetched beside it, and then the access of every user to their
// directories, while the walk goes through the public outputs; the walk
// waits for them only where it needs them.
//
// Public outputs need no Magpie: when it cannot list the users, the public
// links are reconciled all the same, the users' links are left as they are
// (no user is known), and the error is returned at the end.
func (r *run) all(ctx context.Context, notebooks bool) error {
	bgCtx, stop := context.WithCancel(ctx)
	r.bgStop = stop // finish stops it when the run ends
	r.bg.Go(func() { _ = r.loadUsers(bgCtx) })
	r.bg.Go(func() { _ = r.access.load(bgCtx) })
	r.bg.Go(func() { r.prefetch(bgCtx) })
	var src *safefs.Dir // none when wps_outputs_dir does not exist: every public link is stale
	if r.wps != nil {
		var err error
		if src, err = r.wps.OpenDir(""); err != nil {
			return err
		}
	}
	r.spawn(ctx, r.newJob(src, rootNode(r.handler.public, true), ""))
	r.pool.wait()
	usersErr := r.loadUsers(ctx)
	if usersErr != nil {
		r.log.WithError(usersErr).Warn("Magpie unavailable: reconciled the public WPS outputs only")
	}
	users := r.usable()
	if notebooks {
		r.notebookUsers = users
	}
	for _, u := range users {
		r.staleBirds(ctx, u, "")
	}
	return usersErr
}

// user reconciles one user's sources (*/users/<id>/), link root and
// notebooks symlink.
func (r *run) user(ctx context.Context, name string) error {
	if err := r.handler.checkUser(name); err != nil {
		return err
	}
	if !r.workspace(name) {
		r.log.WithField("user", name).Warn("user workspace not found or not a directory: nothing to reconcile")
		return nil
	}
	r.notebookUsers = []string{name}
	u, err := r.mp.User(ctx, name)
	if errors.Is(err, magpie.ErrNotFound) {
		r.log.WithField("user", name).Info("user unknown to Magpie: no WPS outputs to link")
		return nil
	}
	if err != nil {
		return fmt.Errorf("magpie user %q: %w", name, err)
	}
	r.knowUsers(map[int]string{u.ID: name})
	if err := r.userSources(ctx, name, u.ID); err != nil {
		return err
	}
	r.pool.wait()
	r.staleBirds(ctx, name, "")
	return nil
}

// userSources starts the jobs of the user's directory of every bird,
// <bird>/users/<id>.
func (r *run) userSources(ctx context.Context, name string, id int) error {
	if r.wps == nil {
		return nil
	}
	birds, err := r.wps.ReadDir("")
	if err != nil {
		return err
	}
	for _, b := range birds {
		if !b.IsDir() {
			continue
		}
		src, err := r.wps.OpenDir(path.Join(b.Name, "users", strconv.Itoa(id)))
		switch {
		case notEnterable(err):
			continue // nothing of this user's there: the link directory is stale
		case err != nil:
			return err
		}
		j, err := r.userJob(ctx, src, b.Name, name)
		if err != nil {
			return err
		}
		r.spawn(ctx, j)
	}
	return nil
}

// path reconciles the source file or directory rel (relative to
// wps_outputs_dir, not "") and the links that mirror it, then removes the
// link directories above it that the run left empty.
func (r *run) path(ctx context.Context, rel string) error {
	var (
		st  safefs.Stat
		err = fs.ErrNotExist
	)
	if r.wps != nil {
		st, err = r.wps.Lstat(rel)
	}
	if err != nil && !notEnterable(err) {
		return err
	}
	exists := err == nil
	n, owner, mirrored, err := r.pathMirror(ctx, rel, exists && st.Mode.IsRegular())
	if err != nil || !mirrored {
		return err
	}
	j, err := r.pathJob(rel, st, exists, n, owner)
	if err != nil {
		return err
	}
	r.spawn(ctx, j)
	r.pool.wait()
	if owner == "" && isBirdOrUsers(rel) {
		bird, _, _ := strings.Cut(rel, "/")
		for _, u := range r.usable() {
			r.staleBirds(ctx, u, bird)
		}
		r.pool.wait()
	}
	if ctx.Err() == nil && !r.dry {
		_ = r.locked(ctx, func(*section) error {
			r.prune(j.mirror)
			return nil
		})
	}
	return nil
}

// pathMirror returns the node that mirrors the source rel (a regular file
// when file) and the user whose data it is, "" for public data; mirrored
// is false for a user's data that is not mirrored (see userOf).
func (r *run) pathMirror(ctx context.Context, rel string, file bool) (n *node, owner string, mirrored bool, err error) {
	bird, id, sub, user := userFile(rel)
	if !file && !user {
		bird, id, sub, user = userDir(rel)
	}
	if !user {
		if isBirdOrUsers(rel) { // user directories may be below
			if err := r.loadUsers(ctx); err != nil {
				return nil, "", false, err
			}
		}
		return chain(rootNode(r.handler.public, false), rel), "", true, nil
	}
	if err := r.loadUsers(ctx); err != nil {
		return nil, "", false, err
	}
	name, ok := r.userOf(id)
	if !ok {
		return nil, "", false, nil
	}
	if err := r.access.load(ctx); err != nil {
		return nil, "", false, err
	}
	return chain(r.userRoot(name), path.Join(bird, sub)), name, true, nil
}

// pathJob returns the job for the source rel (st, when it exists),
// mirrored by n: a file's entry of its directory only, a directory's whole
// subtree, or when it is gone (or not a file or directory) a stale mirror.
func (r *run) pathJob(rel string, st safefs.Stat, exists bool, n *node, owner string) (job, error) {
	switch {
	case exists && st.Mode.IsRegular():
		dir, name := path.Split(rel)
		src, err := r.wps.OpenDir(dir)
		if err != nil {
			return job{}, err
		}
		return job{src: src, mirror: n.parent, mirrorDir: r.openMirror(n.parent), owner: owner, only: name}, nil
	case exists && st.IsDir():
		src, err := r.wps.OpenDir(rel)
		if err != nil {
			return job{}, err
		}
		return r.newJob(src, n, owner), nil
	}
	return r.newJob(nil, n, owner), nil
}

// isBirdOrUsers reports whether rel is "<bird>" or "<bird>/users", whose
// mirrors include every user's link directory of that bird.
func isBirdOrUsers(rel string) bool {
	_, rest, found := strings.Cut(rel, "/")
	return !found || rest == "users"
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
