package filesystem

import (
	"context"
	"fmt"
	"slices"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/safefs"
)

// loadUsers fetches the Magpie users once per run.
func (r *run) loadUsers(ctx context.Context) error {
	r.userMu.Lock()
	defer r.userMu.Unlock()
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

// usable returns, sorted, the Magpie users whose name is valid and whose
// workspace is a real directory.
func (r *run) usable() []string {
	var out []string
	for _, name := range r.users {
		if r.handler.checkUser(name) == nil && r.workspace(name) {
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
	if err := r.handler.checkUser(name); err != nil {
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

// warnOnce logs msg the first time the run meets key.
func (r *run) warnOnce(key string, f logrus.Fields, msg string) {
	r.userMu.Lock()
	seen := r.warned[key]
	r.warned[key] = true
	r.userMu.Unlock()
	if !seen {
		r.log.WithFields(f).Warn(msg)
	}
}

// userLinks is the user's link root, relative to workspace_dir; both names
// are checked single components.
func (r *run) userLinks(user string) string { return user + "/" + r.handler.cfg.UserWPSOutputsDirName }

// userRoot returns the node of the user's link root, one per run.
func (r *run) userRoot(user string) *node {
	r.userMu.Lock()
	defer r.userMu.Unlock()
	n := r.roots[user]
	if n == nil {
		n = rootNode(r.userLinks(user), false)
		r.roots[user] = n
	}
	return n
}

// userJob returns the job of the user directory <bird>/users/<id> (src),
// mirrored in the user's <bird> link directory, and claims that directory.
func (r *run) userJob(ctx context.Context, src *safefs.Dir, bird, user string) (job, error) {
	if err := r.access.load(ctx); err != nil {
		src.Close()
		return job{}, err
	}
	r.claim(user, bird)
	n := &node{rel: r.userLinks(user) + "/" + bird, parent: r.userRoot(user), walked: true}
	return r.newJob(src, n, user), nil
}

// claim keeps the user's link directory of bird from staleBirds.
func (r *run) claim(user, bird string) {
	r.userMu.Lock()
	r.claimed[user+"/"+bird] = true
	r.userMu.Unlock()
}

// staleBirds removes what the user's link root holds (only its entry bird,
// when bird is set) that no job of this run claimed.
func (r *run) staleBirds(ctx context.Context, user, bird string) {
	root := r.userRoot(user)
	d := r.openMirror(root)
	if d == nil {
		return
	}
	defer d.Close()
	ents, err := d.ReadDir()
	if err != nil {
		r.fail(OpRemove, r.wsPath(root.rel), err)
		return
	}
	for _, e := range ents {
		r.userMu.Lock()
		claimed := r.claimed[user+"/"+e.Name]
		r.userMu.Unlock()
		if !claimed && (bird == "" || e.Name == bird) {
			r.stale(ctx, root, d, e)
		}
	}
}
