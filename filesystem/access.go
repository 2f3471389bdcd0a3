package filesystem

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
// answer is fetched once per run (or taken from an earlier run, see kept).
// It is safe for concurrent use.
//
// A run asks Magpie concurrently: the answers it will need are requested
// in advance (prefetch), those a directory needs and that are not in yet
// are requested all at once (poll), and at most cap(sem) requests are in
// flight at a time.
type access struct {
	mp      Magpie
	log     *logrus.Entry
	service string // secure_data_proxy_name
	resName string // wps_outputs_res_name

	sem chan struct{} // bounds the requests in flight; nil: unbounded
	// kept holds answers across runs: each answer asked is kept there, and
	// when reuse > 0 one younger than reuse is taken from there instead of
	// asking Magpie.
	kept  *answers
	reuse time.Duration
	wg    sync.WaitGroup // requests started by poll and prefetch
	// serviceID, if set, is the service's resource id an earlier run found
	// (0: none), and is set by load.
	serviceID *atomic.Int64

	loadMu  sync.Mutex
	loaded  bool
	loadErr error
	open    bool             // no secure-data-proxy service: everything readable
	tree    *magpie.Resource // the service's resource tree

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

// load fetches the secure-data-proxy service and its tree, once; a
// failure is the answer of every later call too. With a service id known
// from an earlier run, the tree is fetched at the same time as the service
// (one round trip instead of two) and used if the service still has it.
func (a *access) load(ctx context.Context) error {
	a.loadMu.Lock()
	defer a.loadMu.Unlock()
	if a.loaded {
		return a.loadErr
	}
	type fetched struct {
		tree *magpie.Resource
		err  error
	}
	var early chan fetched
	guess := 0
	if a.serviceID != nil {
		guess = int(a.serviceID.Load())
	}
	if guess > 0 {
		early = make(chan fetched, 1)
		go func() {
			tree, err := a.mp.Resource(ctx, guess)
			early <- fetched{tree, err}
		}()
	}
	svcs, err := a.mp.ServicesByType(ctx, "api")
	var svc *magpie.Service
	for _, s := range svcs {
		if s.Name == a.service {
			svc = s
		}
	}
	var tree *magpie.Resource
	if early != nil {
		f := <-early
		if err == nil && svc != nil && svc.ResourceID == guess && f.err == nil {
			tree = f.tree
		}
	}
	if err != nil {
		return a.loadFailed(ctx, fmt.Errorf("list api services: %w", err))
	}
	if svc == nil {
		a.log.WithField("service", a.service).Warn("service not found. Considering user WPS outputs data as accessible (read-only) by default")
		a.open, a.loaded = true, true
		return nil
	}
	if tree == nil {
		if tree, err = a.mp.Resource(ctx, svc.ResourceID); err != nil {
			return a.loadFailed(ctx, fmt.Errorf("resource tree of %s: %w", a.service, err))
		}
	}
	if a.serviceID != nil {
		a.serviceID.Store(int64(svc.ResourceID))
	}
	a.tree, a.loaded = tree, true
	return nil
}

// loadFailed records err as load's answer, unless ctx ended (a later call
// with another context may still succeed).
func (a *access) loadFailed(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		a.loaded, a.loadErr = true, err
	}
	return err
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
// and run, however many goroutines ask at once; the caller waits for the
// answer.
func (a *access) readable(ctx context.Context, user string, resID int) (bool, error) {
	if a.open {
		return true, nil
	}
	if resID == 0 {
		return false, nil
	}
	k := permKey{user, resID}
	p, ask := a.entry(k)
	if ask {
		if !a.acquire(ctx) {
			a.abandon(ctx, p)
		} else {
			a.ask(ctx, k, p)
			a.release()
		}
	}
	select {
	case <-p.done:
		return p.read, p.err
	case <-ctx.Done():
		return false, context.Cause(ctx)
	}
}

// poll is readable without waiting: when the answer is not in yet, it
// makes sure it is being asked and returns its entry, whose done channel
// is closed once it is in.
func (a *access) poll(ctx context.Context, user string, resID int) (read bool, pending *perm, err error) {
	if a.open {
		return true, nil, nil
	}
	if resID == 0 {
		return false, nil, nil
	}
	k := permKey{user, resID}
	p, ask := a.entry(k)
	if ask {
		a.wg.Go(func() {
			if !a.acquire(ctx) {
				a.abandon(ctx, p)
				return
			}
			defer a.release()
			a.ask(ctx, k, p)
		})
	}
	select {
	case <-p.done:
		return p.read, nil, p.err
	default:
		return false, p, nil
	}
}

// prefetch asks for the answers about keys, in order, as the bound on
// requests in flight allows, without waiting for them; it returns when
// every one is asked or answered, or ctx ends.
func (a *access) prefetch(ctx context.Context, keys []permKey) {
	if a.open {
		return
	}
	for _, k := range keys {
		a.mu.Lock()
		_, seen := a.perms[k]
		a.mu.Unlock()
		if seen {
			continue
		}
		if !a.acquire(ctx) {
			return
		}
		p, ask := a.entry(k)
		if !ask {
			a.release()
			continue
		}
		a.wg.Go(func() {
			defer a.release()
			a.ask(ctx, k, p)
		})
	}
}

// wait waits for the requests poll and prefetch started.
func (a *access) wait() { a.wg.Wait() }

// entry returns the entry of k, creating it if needed; ask is true when
// the caller created it and must ask Magpie (then close its done). An
// answer kept from an earlier run and young enough fills a new entry.
func (a *access) entry(k permKey) (p *perm, ask bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.perms[k]; ok {
		return p, false
	}
	p = &perm{done: make(chan struct{})}
	a.perms[k] = p
	if a.reuse > 0 && a.kept != nil {
		if read, ok := a.kept.get(k, a.reuse); ok {
			p.read = read
			close(p.done)
			return p, false
		}
	}
	return p, true
}

// acquire takes one of the slots of requests in flight; false when ctx
// ended first.
func (a *access) acquire(ctx context.Context) bool {
	if a.sem == nil {
		return true
	}
	select {
	case a.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (a *access) release() {
	if a.sem != nil {
		<-a.sem
	}
}

// abandon completes p, never asked, with ctx's end as its error.
func (a *access) abandon(ctx context.Context, p *perm) {
	p.err = context.Cause(ctx)
	close(p.done)
}

// ask asks Magpie for the effective permissions behind k and completes p.
func (a *access) ask(ctx context.Context, k permKey, p *perm) {
	defer close(p.done)
	var epoch uint64
	if a.kept != nil {
		epoch = a.kept.asking()
	}
	at := time.Now()
	perms, err := a.mp.UserPermissions(ctx, k.user, k.resID, magpie.Effective)
	if err != nil {
		p.err = fmt.Errorf("effective permissions of %q on resource %d: %w", k.user, k.resID, err)
		return
	}
	read, _ := magpie.Find(perms, "read")
	if write, _ := magpie.Find(perms, "write"); write.Access == "allow" {
		a.log.WithFields(logrus.Fields{"user": k.user, "resource_id": k.resID}).
			Warn("write permission on WPS outputs is never applied: they stay read-only")
	}
	p.read = read.Access == "allow"
	if a.kept != nil {
		a.kept.keep(k, p.read, at, epoch)
	}
}
