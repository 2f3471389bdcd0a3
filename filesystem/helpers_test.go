package filesystem_test

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/magpie"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// env is a deployment in a temp dir: the three trees, a Magpie emulator
// with a secure-data-proxy service and its wps_outputs route, and a handler.
type env struct {
	t                 testing.TB
	root, wps, ws, jh string
	mg                *magpietest.Server
	client            *magpie.Client
	routeID           int // secure-data-proxy/wps_outputs
	ids               map[string]int
	h                 *filesystem.Handler
	cfg               filesystem.Config
}

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// newEnv creates the trees, Magpie users and route. users get a workspace
// when listed in withWorkspace.
func newEnv(t testing.TB, users []string, withWorkspace ...string) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{t: t, root: root, wps: filepath.Join(root, "wps_outputs"), ws: filepath.Join(root, "user_workspaces"),
		jh: filepath.Join(root, "jupyterhub_user_data"), ids: map[string]int{}}
	for _, d := range []string{e.wps, e.ws, e.jh} {
		must(t, os.MkdirAll(d, 0o755))
	}
	e.mg = magpietest.NewServer(t, magpietest.Options{QuietSeeding: true})
	for _, u := range users {
		id, err := e.mg.AddUser(u, "")
		must(t, err)
		e.ids[u] = id
	}
	svc, err := e.mg.AddService("secure-data-proxy", "api")
	must(t, err)
	e.routeID, err = e.mg.AddResource(svc, "wps_outputs", "route")
	must(t, err)
	for _, u := range withWorkspace {
		must(t, os.MkdirAll(filepath.Join(e.ws, u), 0o755))
	}
	e.client = magpie.NewClient(magpie.ClientOptions{URL: e.mg.URL(), AdminUser: "admin", AdminPassword: "qwertyqwerty",
		HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	e.cfg = filesystem.Config{WorkspaceDir: e.ws, JupyterhubUserDataDir: e.jh, WPSOutputsDir: e.wps}
	e.h = e.newHandler(e.cfg, nil)
	return e
}

func (e *env) newHandler(cfg filesystem.Config, w filesystem.Watcher) *filesystem.Handler {
	return e.handler(cfg, w, filesystem.Options{Workers: 4})
}

func (e *env) handler(cfg filesystem.Config, w filesystem.Watcher, opts filesystem.Options) *filesystem.Handler {
	h, err := filesystem.New(cfg, e.sessions, w, quietLog(), opts)
	must(e.t, err)
	e.t.Cleanup(func() { _ = h.Close() })
	return h
}

// sessions gives the handler a caching copy of the client per event or run.
func (e *env) sessions() filesystem.Magpie { return e.client.WithCache() }

// file writes a WPS output with mode and returns its absolute path.
func (e *env) file(rel string, mode os.FileMode) string {
	p := filepath.Join(e.wps, rel)
	must(e.t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(e.t, os.WriteFile(p, []byte(rel), 0o600))
	must(e.t, os.Chmod(p, mode))
	return p
}

// userFile is the rel path of a file of user under bird.
func (e *env) userFile(bird, user, sub string) string {
	return filepath.Join(bird, "users", strconv.Itoa(e.ids[user]), sub)
}

// route adds routes under wps_outputs along rel and returns the last id.
func (e *env) route(rel string) int {
	id := e.routeID
	comps := strings.Split(rel, "/")
	for i, c := range comps {
		if child, ok := e.mg.Lookup("secure-data-proxy", append([]string{"wps_outputs"}, comps[:i+1]...)...); ok {
			id = child
			continue
		}
		child, err := e.mg.AddResource(id, c, "route")
		must(e.t, err)
		id = child
	}
	return id
}

func (e *env) reconcile(scope filesystem.Scope) filesystem.Stats {
	e.t.Helper()
	st, err := e.h.Reconcile(ctx(e.t), scope, filesystem.ReconcileOptions{})
	must(e.t, err)
	return st
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ino(t testing.TB, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	must(t, err)
	return fi.Sys().(*syscall.Stat_t).Ino
}

func ctime(t testing.TB, p string) syscall.Timespec {
	t.Helper()
	fi, err := os.Lstat(p)
	must(t, err)
	return fi.Sys().(*syscall.Stat_t).Ctim
}

func mode(t testing.TB, p string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	must(t, err)
	return fi.Mode().Perm()
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// assertLinked checks that link is a hardlink of src.
func assertLinked(t testing.TB, src, link string) {
	t.Helper()
	if !exists(link) {
		t.Fatalf("link %s missing", link)
	}
	if ino(t, src) != ino(t, link) {
		t.Fatalf("link %s: inode %d, want source's %d", link, ino(t, link), ino(t, src))
	}
}

func assertAbsent(t testing.TB, p string) {
	t.Helper()
	if exists(p) {
		t.Fatalf("%s exists, want absent", p)
	}
}

// snapshot describes every entry under dir: type, mode, inode identity (as
// the relative path of the first entry seen with it) and symlink target.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case fi.Mode().IsRegular():
			i := fi.Sys().(*syscall.Stat_t).Ino
			if _, ok := inodes[i]; !ok {
				inodes[i] = rel
			}
			desc += " inode of " + inodes[i]
		}
		out[rel] = desc
		return nil
	})
	must(t, err)
	return out
}

func diffSnapshots(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, k+": "+v+" != "+b[k])
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k+": absent != "+v)
		}
	}
	return out
}
