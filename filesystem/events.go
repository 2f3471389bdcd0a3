package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
)

// UserCreated implements handlers.UserHandler. It creates the workspace
// {workspace_dir}/{user} (others r-x), its notebooks symlink, and the links
// of that user's WPS outputs only (*/users/<id>/), cowbird.md §3.3.2.
func (h *Handler) UserCreated(ctx context.Context, ev handlers.UserEvent) error {
	// A new user: file events must see it, and the periodic reconcile must
	// not reuse an answer about a former user of that name.
	h.dropFileSession()
	h.kept.drop(ev.UserName)
	log := h.log.WithField("user", ev.UserName)
	if err := h.checkUser(ev.UserName); err != nil {
		log.WithError(err).Warn("user_created refused")
		return nil
	}
	ws, err := h.wsRoot()
	if err != nil {
		return fmt.Errorf("create workspace %q: %w", ev.UserName, err)
	}
	// As a file event: not behind a reconcile in progress (lock.go).
	h.mu.Lock()
	defer h.mu.Unlock()
	err = ws.MkdirAll(ev.UserName, 0o755)
	if err == nil {
		_, err = ws.SetOthers(ev.UserName, true, false, true)
	}
	if err != nil {
		return fmt.Errorf("create workspace %q: %w", ev.UserName, err)
	}
	_, err = h.reconcile(ctx, h.sessions(), Scope{User: ev.UserName}, ReconcileOptions{}, exclusive)
	h.userCreatedRan(ev.UserName)
	if err != nil {
		return fmt.Errorf("user_created %q: %w", ev.UserName, err)
	}
	return nil
}

// UserDeleted implements handlers.UserHandler. It removes the user's
// workspace (symlinks inside are removed, never followed), or with
// on_user_deleted: archive moves it to {workspace_dir}/.trash/<user>-<UTC
// time>. A missing workspace is not an error.
func (h *Handler) UserDeleted(ctx context.Context, ev handlers.UserEvent) error {
	h.dropFileSession()
	h.kept.drop(ev.UserName)
	log := h.log.WithField("user", ev.UserName)
	if err := h.checkUser(ev.UserName); err != nil {
		log.WithError(err).Warn("user_deleted refused")
		return nil
	}
	ws, err := h.wsRoot()
	if err != nil {
		return fmt.Errorf("delete workspace %q: %w", ev.UserName, err)
	}
	// Both locks: no reconcile (which checked the workspace at its start)
	// and no file event may run until the workspace is gone.
	h.runMu.Lock()
	defer h.runMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, err := ws.Lstat(ev.UserName); errors.Is(err, fs.ErrNotExist) {
		log.Info("user workspace already absent")
		return nil
	}
	if h.cfg.OnUserDeleted != ArchiveWorkspace {
		if err := ws.RemoveAll(ev.UserName); err != nil {
			return fmt.Errorf("delete workspace %q: %w", ev.UserName, err)
		}
		return nil
	}
	if err := ws.MkdirAll(trashDir, 0o700); err != nil {
		return fmt.Errorf("archive workspace %q: %w", ev.UserName, err)
	}
	dst := path.Join(trashDir, ev.UserName+"-"+time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := ws.Rename(ev.UserName, dst); err != nil {
		return fmt.Errorf("archive workspace %q: %w", ev.UserName, err)
	}
	log.WithField("path", filepath.Join(h.cfg.WorkspaceDir, dst)).Info("user workspace archived")
	return nil
}

// PermissionCreated implements handlers.PermissionHandler (cowbird.md §3.3.7).
func (h *Handler) PermissionCreated(ctx context.Context, ev handlers.PermissionEvent) error {
	return h.permission(ctx, ev)
}

// PermissionDeleted implements handlers.PermissionHandler; it behaves as
// PermissionCreated, since Magpie is asked for the resulting access.
func (h *Handler) PermissionDeleted(ctx context.Context, ev handlers.PermissionEvent) error {
	return h.permission(ctx, ev)
}

// permission re-evaluates the user files under the route of a
// secure-data-proxy permission, for the event's user or group members.
// Other services' events are ignored; public files are never touched.
func (h *Handler) permission(ctx context.Context, ev handlers.PermissionEvent) error {
	h.dropFileSession() // file events must see the new permission
	// So must the periodic reconcile: the answers kept about the user (about
	// everyone for a group's permission) are dropped, whatever the service.
	h.kept.drop(ev.User)
	sdp := h.cfg.SecureDataProxyName
	if (ev.ServiceName != "" && ev.ServiceName != sdp) || (ev.ServiceType != "" && ev.ServiceType != "api") {
		return nil
	}
	log := h.log.WithFields(logrus.Fields{"event": ev.Name(), "resource_id": ev.ResourceID})
	mp := h.sessions()
	target, ok, err := h.permissionTarget(ctx, mp, ev)
	if err != nil || !ok {
		return err
	}
	if ev.PermName == "write" {
		log.Warn("write permission on WPS outputs is never applied: they stay read-only")
		return nil
	}
	members, err := permissionUsers(ctx, mp, ev)
	if err != nil {
		return err
	}
	all, err := mp.Users(ctx) // the session's answer: asked once
	if err != nil {
		return fmt.Errorf("%s: magpie users: %w", ev.Name(), err)
	}
	opts := ReconcileOptions{users: make(map[int]string, len(all))}
	for _, u := range all {
		opts.users[u.ID] = u.Name
	}
	h.runMu.Lock()
	defer h.runMu.Unlock()
	var work []memberPaths
	for _, u := range members {
		if err := h.checkUser(u.name); !u.known || err != nil {
			log.WithField("user", u.name).WithError(err).Warn("permission event: user unknown or refused")
			continue
		}
		work = append(work, memberPaths{u.name, h.userTargets(target, u.id)})
	}
	if err := h.reconcileMembers(ctx, mp, work, opts); err != nil {
		return fmt.Errorf("%s: %w", ev.Name(), err)
	}
	return nil
}

// reconcileMembers reconciles the paths of each member in turn, for a
// caller holding h.runMu. The runs share one access: their answers are
// asked ahead, MagpieConcurrency at a time. A transient failure stops at
// once (the event is retried); the others are joined.
func (h *Handler) reconcileMembers(ctx context.Context, mp Magpie, work []memberPaths, opts ReconcileOptions) error {
	opts.access = h.newAccess(mp)
	askCtx, stopAsking := context.WithCancel(ctx)
	var asking sync.WaitGroup
	asking.Go(func() { h.askAhead(askCtx, opts.access, work) })
	defer func() {
		stopAsking()
		asking.Wait()
		opts.access.wait()
	}()
	var errs []error
	for _, w := range work {
		for _, p := range w.paths {
			if _, err := h.reconcile(ctx, mp, Scope{Path: p}, opts, shared); err != nil {
				if handlers.IsTransient(err) {
					return err
				}
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// memberPaths are the sources a permission event reconciles for one user.
type memberPaths struct {
	user  string
	paths []string // absolute, under wps_outputs_dir
}

// askAhead asks Magpie, through a's bound on requests in flight and in the
// order the runs will need them, whether each user with a workspace may
// read the route of each of their source directories (routes defined
// deeper are asked when the runs meet them). It returns once every answer
// is asked, or ctx ends.
func (h *Handler) askAhead(ctx context.Context, a *access, work []memberPaths) {
	wps, werr := h.wpsRoot()
	ws, serr := h.wsRoot()
	if werr != nil || serr != nil || a.load(ctx) != nil || a.open {
		return // the runs meet the errors
	}
	var keys []permKey
	for _, w := range work {
		if st, err := ws.Lstat(w.user); err != nil || !st.Mode.IsDir() {
			continue
		}
		for _, p := range w.paths {
			rel, err := h.sourceRel(p)
			if err != nil {
				continue
			}
			if st, err := wps.Lstat(rel); err != nil || !st.Mode.IsDir() {
				continue
			}
			if res := a.dir(rel).res; res != nil {
				keys = append(keys, permKey{w.user, res.ID})
			}
		}
	}
	a.prefetch(ctx, keys)
}

// permissionTarget returns the source path (relative to wps_outputs_dir,
// "" for all) of the route of ev's resource; ok is false when the resource
// is not a route of the secure-data-proxy service's WPS outputs.
func (h *Handler) permissionTarget(ctx context.Context, mp Magpie, ev handlers.PermissionEvent) (target string, ok bool, err error) {
	sdp := h.cfg.SecureDataProxyName
	tree, err := mp.ResourcePath(ctx, ev.ResourceID)
	if err != nil {
		return "", false, fmt.Errorf("%s: resource %d path: %w", ev.Name(), ev.ResourceID, err)
	}
	if len(tree) == 0 || tree[0].Name != sdp || (len(tree) > 1 && tree[1].Name != h.cfg.WPSOutputsResName) {
		return "", false, nil
	}
	svc, err := mp.Service(ctx, sdp)
	if err != nil {
		return "", false, fmt.Errorf("%s: service %s: %w", ev.Name(), sdp, err)
	}
	if svc.Type != "api" {
		return "", false, nil
	}
	var sub []string
	for _, r := range tree[min(2, len(tree)):] {
		sub = append(sub, r.Name)
	}
	return path.Join(sub...), true, nil
}

// member is a user a permission event applies to, with their Magpie id
// when Magpie knows them.
type member struct {
	name  string
	id    int
	known bool
}

// permissionUsers returns ev's user, or the members of its group.
func permissionUsers(ctx context.Context, mp Magpie, ev handlers.PermissionEvent) ([]member, error) {
	names := []string{ev.User}
	if ev.User == "" {
		var err error
		if names, err = mp.GroupUsers(ctx, ev.Group); err != nil {
			return nil, fmt.Errorf("%s: members of group %q: %w", ev.Name(), ev.Group, err)
		}
	}
	users, err := mp.Users(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: magpie users: %w", ev.Name(), err)
	}
	known := make(map[string]int, len(users))
	for _, u := range users {
		known[u.Name] = u.ID
	}
	members := make([]member, len(names))
	for i, n := range names {
		id, ok := known[n]
		members[i] = member{name: n, id: id, known: ok}
	}
	return members, nil
}

// userTargets returns the absolute source paths of the user id's files
// under the source path target ("" for all): one per bird for a route above
// the user directories, else target itself when it is inside id's area.
func (h *Handler) userTargets(target string, id int) []string {
	idStr := fmt.Sprint(id)
	abs := func(rel string) string { return filepath.Join(h.cfg.WPSOutputsDir, rel) }
	comps := strings.Split(target, "/")
	switch {
	case target == "":
		wps, err := h.wpsRoot()
		if err != nil {
			return nil
		}
		birds, err := wps.ReadDir("")
		if err != nil {
			h.log.WithError(err).Warn("list WPS outputs")
			return nil
		}
		var out []string
		for _, b := range birds {
			if b.IsDir() {
				out = append(out, abs(path.Join(b.Name, "users", idStr)))
			}
		}
		return out
	case len(comps) == 1, len(comps) == 2 && comps[1] == "users":
		return []string{abs(path.Join(comps[0], "users", idStr))}
	}
	if _, uid, _, ok := userDir(target); ok && uid == id {
		return []string{abs(target)}
	}
	return nil
}

// HandleFile implements handlers.FileHandler. A created or modified file is
// (re)linked with its mode re-evaluated; a created directory has its subtree
// reconciled; a deletion removes the mirrored link or directory. Events
// outside wps_outputs_dir and directory modifications are ignored. It holds
// the handler's disk lock exclusively, Magpie's answers included, so it
// never runs during a workspace's removal nor during a section of a
// reconcile; it does not wait for a whole reconcile (lock.go).
func (h *Handler) HandleFile(ctx context.Context, ev handlers.FileEvent) error {
	if ev.Op == handlers.FileModified && ev.IsDir {
		return nil // entries changed: they have their own events
	}
	if rel, err := h.sourceRel(ev.Path); err != nil || rel == "" {
		return nil
	}
	mp := h.fileSession()
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.reconcile(ctx, mp, Scope{Path: ev.Path}, ReconcileOptions{}, exclusive)
	h.fileEventRan(ev.Path)
	if err != nil {
		return fmt.Errorf("%s: %w", ev.Name(), err)
	}
	return nil
}
