package filesystem

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/magpie"
)

// userFile parses a source path relative to wps_outputs_dir by components
// (not by the original's regex, cowbird.md §8.4): <bird>/users/<id>/<sub...>
// is user data of the Magpie user id, whatever the bird's name; anything
// else, including the user directory itself, is public.
func userFile(rel string) (bird string, id int, sub string, ok bool) {
	bird, rest, _ := strings.Cut(rel, "/")
	rest, found := strings.CutPrefix(rest, "users/")
	if !found {
		return "", 0, "", false
	}
	idStr, sub, _ := strings.Cut(rest, "/")
	id, err := strconv.Atoi(idStr)
	if err != nil || sub == "" || !digits(idStr) {
		return "", 0, "", false
	}
	return bird, id, sub, true
}

// userDir parses a source directory inside a user area: <bird>/users/<id>
// or below. sub is "" for the user directory itself.
func userDir(rel string) (bird string, id int, sub string, ok bool) {
	if b, i, s, ok := userFile(rel); ok {
		return b, i, s, true
	}
	bird, rest, _ := strings.Cut(rel, "/")
	idStr, found := strings.CutPrefix(rest, "users/")
	if !found || !digits(idStr) {
		return "", 0, "", false
	}
	id, err := strconv.Atoi(idStr)
	return bird, id, "", err == nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// access resolves, for one run, whether a user may read a WPS output
// through the secure-data-proxy service (cowbird.md §3.3.5). Every Magpie
// answer is fetched once per run. It is safe for concurrent use.
type access struct {
	mp      Magpie
	log     *logrus.Entry
	service string // secure_data_proxy_name
	resName string // wps_outputs_res_name

	loadMu sync.Mutex
	loaded bool
	open   bool             // no secure-data-proxy service: everything readable
	tree   *magpie.Resource // the service's resource tree

	mu    sync.Mutex
	dirs  map[string]route // closest match per source directory
	perms map[permKey]*perm
}

// route is the closest route found for a source directory; full is true
// when every component matched, so that a file in it may have its own route.
type route struct {
	res  *magpie.Resource
	full bool
}

type permKey struct {
	user  string
	resID int
}

// perm is one user's read access to one route, fetched once: done is
// closed when read and err are set.
type perm struct {
	done chan struct{}
	read bool
	err  error
}

func newAccess(mp Magpie, log *logrus.Entry, service, resName string) *access {
	return &access{mp: mp, log: log, service: service, resName: resName,
		dirs: map[string]route{}, perms: map[permKey]*perm{}}
}

// load fetches the secure-data-proxy service and its tree, once.
func (a *access) load(ctx context.Context) error {
	a.loadMu.Lock()
	defer a.loadMu.Unlock()
	if a.loaded {
		return nil
	}
	svcs, err := a.mp.ServicesByType(ctx, "api")
	if err != nil {
		return fmt.Errorf("list api services: %w", err)
	}
	var svc *magpie.Service
	for _, s := range svcs {
		if s.Name == a.service {
			svc = s
		}
	}
	if svc == nil {
		a.log.WithField("service", a.service).Warn("service not found. Considering user WPS outputs data as accessible (read-only) by default")
		a.open, a.loaded = true, true
		return nil
	}
	tree, err := a.mp.Resource(ctx, svc.ResourceID)
	if err != nil {
		return fmt.Errorf("resource tree of %s: %w", a.service, err)
	}
	a.tree, a.loaded = tree, true
	return nil
}

// dir returns the closest route of the source directory rel ("" for
// wps_outputs_dir itself). It must be called after load.
func (a *access) dir(rel string) route {
	if a.open {
		return route{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.dirLocked(rel)
}

func (a *access) dirLocked(rel string) route {
	if n, ok := a.dirs[rel]; ok {
		return n
	}
	var n route
	if rel == "" {
		c := a.tree.Child(a.resName)
		n = route{res: c, full: c != nil}
	} else {
		parent := path.Dir(rel)
		if parent == "." {
			parent = ""
		}
		n = a.dirLocked(parent)
		if n.full {
			if c := n.res.Child(path.Base(rel)); c != nil {
				n = route{res: c, full: true}
			} else {
				n.full = false
			}
		}
	}
	a.dirs[rel] = n
	return n
}

// file returns the id of the deepest route matching the file name in the
// directory whose route is n, 0 when not even wps_outputs_res_name matches.
func (n route) file(name string) int {
	if n.full {
		if c := n.res.Child(name); c != nil {
			return c.ID
		}
	}
	if n.res == nil {
		return 0
	}
	return n.res.ID
}

// readable reports whether user may read a source whose closest route is
// resID (0: none, not readable). Magpie is asked once per user and route
// and run, however many goroutines ask at once.
func (a *access) readable(ctx context.Context, user string, resID int) (bool, error) {
	if a.open {
		return true, nil
	}
	if resID == 0 {
		return false, nil
	}
	k := permKey{user, resID}
	a.mu.Lock()
	p, ok := a.perms[k]
	if !ok {
		p = &perm{done: make(chan struct{})}
		a.perms[k] = p
	}
	a.mu.Unlock()
	if ok {
		select {
		case <-p.done:
			return p.read, p.err
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	defer close(p.done)
	perms, err := a.mp.UserPermissions(ctx, user, resID, magpie.Effective)
	if err != nil {
		p.err = fmt.Errorf("effective permissions of %q on resource %d: %w", user, resID, err)
		return false, p.err
	}
	read, _ := magpie.Find(perms, "read")
	if write, _ := magpie.Find(perms, "write"); write.Access == "allow" {
		a.log.WithFields(logrus.Fields{"user": user, "resource_id": resID}).
			Warn("write permission on WPS outputs is never applied: they stay read-only")
	}
	p.read = read.Access == "allow"
	return p.read, nil
}
