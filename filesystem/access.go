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
// answer is fetched once per run.
type access struct {
	mp      Magpie
	log     *logrus.Entry
	service string // secure_data_proxy_name
	resName string // wps_outputs_res_name

	loaded bool
	open   bool             // no secure-data-proxy service: everything readable
	tree   *magpie.Resource // the service's resource tree
	dirs   map[string]node  // closest match per source directory

	mu    sync.Mutex
	perms map[permKey]bool
}

// node is the closest route found for a directory; full is true when every
// component matched, so that a file in it may have its own route.
type node struct {
	res  *magpie.Resource
	full bool
}

type permKey struct {
	user  string
	resID int
}

func newAccess(mp Magpie, log *logrus.Entry, service, resName string) *access {
	return &access{mp: mp, log: log, service: service, resName: resName,
		dirs: map[string]node{}, perms: map[permKey]bool{}}
}

// load fetches the secure-data-proxy service and its tree, once.
func (a *access) load(ctx context.Context) error {
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

// closest returns the id of the deepest route matching the source rel
// (wps_outputs_res_name, then its components), 0 when not even the first
// matches. It must be called after load, from one goroutine.
func (a *access) closest(rel string) int {
	if a.open {
		return 0
	}
	n := a.dir(path.Dir(rel))
	if n.full {
		if c := n.res.Child(path.Base(rel)); c != nil {
			return c.ID
		}
	}
	if n.res == nil {
		return 0
	}
	return n.res.ID
}

// dir is the closest route of a source directory ("." for the root).
func (a *access) dir(rel string) node {
	if n, ok := a.dirs[rel]; ok {
		return n
	}
	var n node
	if rel == "." {
		c := a.tree.Child(a.resName)
		n = node{res: c, full: c != nil}
	} else {
		n = a.dir(path.Dir(rel))
		if n.full {
			if c := n.res.Child(path.Base(rel)); c != nil {
				n = node{res: c, full: true}
			} else {
				n.full = false
			}
		}
	}
	a.dirs[rel] = n
	return n
}

// fetch asks Magpie for the effective permissions of every key not known
// yet, with at most workers requests at once.
func (a *access) fetch(ctx context.Context, keys []permKey, workers int) error {
	var todo []permKey
	seen := map[permKey]bool{}
	a.mu.Lock()
	for _, k := range keys {
		if _, ok := a.perms[k]; !ok && k.resID != 0 && !seen[k] {
			seen[k] = true
			todo = append(todo, k)
		}
	}
	a.mu.Unlock()
	var (
		errMu sync.Mutex
		first error
	)
	err := parallel(ctx, workers, len(todo), func(i int) {
		k := todo[i]
		perms, err := a.mp.UserPermissions(ctx, k.user, k.resID, magpie.Effective)
		if err != nil {
			errMu.Lock()
			if first == nil {
				first = fmt.Errorf("effective permissions of %q on resource %d: %w", k.user, k.resID, err)
			}
			errMu.Unlock()
			return
		}
		read, _ := magpie.Find(perms, "read")
		if write, _ := magpie.Find(perms, "write"); write.Access == "allow" {
			a.log.WithFields(logrus.Fields{"user": k.user, "resource_id": k.resID}).
				Warn("write permission on WPS outputs is never applied: they stay read-only")
		}
		a.mu.Lock()
		a.perms[k] = read.Access == "allow"
		a.mu.Unlock()
	})
	if first != nil {
		return first
	}
	return err
}

// readable reports whether user may read the source whose closest route is
// resID; fetch must have covered the key.
func (a *access) readable(user string, resID int) bool {
	if a.open {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.perms[permKey{user, resID}]
}

// parallel runs fn(0..n-1) on at most workers goroutines and stops handing
// out work when ctx is done.
func parallel(ctx context.Context, workers, n int, fn func(i int)) error {
	if workers > n {
		workers = n
	}
	var (
		wg   sync.WaitGroup
		next = make(chan int)
	)
	for range workers {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	return err
}
