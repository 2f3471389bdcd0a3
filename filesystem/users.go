package filesystem

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/safefs"
)

// loadUsers fetches the Magpie users once per run; callers wait for the
// first. When Magpie fails, no user is known and every call returns the
// error.
func (r *run) loadUsers(ctx context.Context) error {
	r.usersOnce.Do(func() {
		users, err := r.mp.Users(ctx)
		m := make(map[int]string, len(users))
		for _, u := range users {
			m[u.ID] = u.Name
		}
		r.setUsers(m)
		if err != nil {
			r.usersErr = fmt.Errorf("magpie users: %w", err)
		}
	})
	return r.usersErr
}

// knowUsers makes users the run's users, unless they are loaded already.
func (r *run) knowUsers(users map[int]string) { r.usersOnce.Do(func() { r.setUsers(users) }) }

func (r *run) setUsers(users map[int]string) {
	r.userMu.Lock()
	r.users = users
	r.userMu.Unlock()
}

// prefetch asks Magpie in advance, without waiting for the answers, whether
// each usable user may read the route of each of their directories
// <bird>/users/<id> (the route of every file below it unless routes are
// defined below it), in the order the walk meets them; a full run does it
// beside the walk, as soon as the users and the service are known.
func (r *run) prefetch(ctx context.Context) {
	if r.loadUsers(ctx) != nil || r.access.load(ctx) != nil || r.access.open || r.wps == nil {
		return // the walk meets the errors
	}
	birds, err := r.wps.ReadDir("")
	if err != nil {
		return
	}
	var keys []permKey
	seen := map[permKey]bool{}
	for _, b := range birds {
		if !b.IsDir() {
			continue
		}
		ids, err := r.wps.ReadDir(path.Join(b.Name, "users"))
		if err != nil {
			continue
		}
		for _, e := range ids {
			if !e.IsDir() || !digits(e.Name) {
				continue
			}
			id, _ := strconv.Atoi(e.Name)
			name, ok := r.userOf(id)
			if !ok {
				continue
			}
			if res := r.access.dir(path.Join(b.Name, "users", e.Name)).res; res != nil {
				if k := (permKey{name, res.ID}); !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
	r.access.prefetch(ctx, keys)
}

// usable returns, sorted, the Magpie users whose name is valid and whose
// workspace is a real directory; the users are loaded.
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

// staleBirds removes, in a section, what the user's link root holds (only
// its entry bird, when bird is set) that no job of this run claimed.
func (r *run) staleBirds(ctx context.Context, user, bird string) {
	_ = r.locked(ctx, func(s *section) error {
		r.staleBirdsIn(s, user, bird)
		return nil
	})
}

func (r *run) staleBirdsIn(s *section, user, bird string) {
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
			r.stale(s, root, d, e)
		}
	}
}
