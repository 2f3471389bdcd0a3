package safefs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// resolvers runs fn once with the openat2 resolver (when the kernel has it)
// and once with the per-component fallback.
func resolvers(t *testing.T, fn func(t *testing.T, open func(t *testing.T, dir string) *Root)) {
	for _, tc := range []struct {
		name    string
		openat2 bool
	}{{"openat2", true}, {"fallback", false}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.openat2 && !haveOpenat2() {
				t.Skip("openat2 unavailable on this kernel")
			}
			fn(t, func(t *testing.T, dir string) *Root {
				t.Helper()
				r, err := Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				r.openat2 = tc.openat2
				t.Cleanup(func() { r.Close() })
				return r
			})
		})
	}
}

// fixture is a workspace root and a wps root side by side, each holding
// symlinks planted by a user to a directory and a file outside both.
type fixture struct {
	ws, wps      *Root
	wsDir        string
	outside      string
	outsideState map[string]entryState
}

type entryState struct {
	mode     os.FileMode
	ino      uint64
	nlink    uint64
	uid, gid uint32
	content  string
}

func newFixture(t *testing.T, open func(t *testing.T, dir string) *Root) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{wsDir: filepath.Join(base, "ws"), outside: filepath.Join(base, "outside")}
	wpsDir := filepath.Join(base, "wps")
	mkdir(t, f.outside+"/sub", 0o750)
	writeFile(t, f.outside+"/secret", "secret", 0o640)
	writeFile(t, f.outside+"/sub/f", "f", 0o600)
	for _, d := range []string{f.wsDir, wpsDir} {
		mkdir(t, d+"/real", 0o755)
		writeFile(t, d+"/real/file", "real", 0o644)
		symlink(t, f.outside, d+"/evil")
		symlink(t, f.outside+"/secret", d+"/evilfile")
	}
	writeFile(t, wpsDir+"/out.txt", "output", 0o664)
	f.ws, f.wps = open(t, f.wsDir), open(t, wpsDir)
	f.outsideState = snapshot(t, f.outside)
	return f
}

// snapshot records every entry under dir: mode, inode, link count, owner
// and content.
func snapshot(t *testing.T, dir string) map[string]entryState {
	t.Helper()
	m := map[string]entryState{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entryState{mode: fi.Mode(), ino: st.Ino, nlink: uint64(st.Nlink), uid: st.Uid, gid: st.Gid}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.content = string(b)
		}
		m[p] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *fixture) assertOutsideUntouched(t *testing.T) {
	t.Helper()
	got := snapshot(t, f.outside)
	if len(got) != len(f.outsideState) {
		t.Errorf("outside has %d entries, want %d: %v", len(got), len(f.outsideState), got)
	}
	for p, want := range f.outsideState {
		if got[p] != want {
			t.Errorf("outside %s changed: %+v, want %+v", p, got[p], want)
		}
	}
}

// TestPlantedSymlinks runs every operation through a planted symlink, as an
// intermediate and as the final component, and checks the outside tree is
// left exactly as it was.
func TestPlantedSymlinks(t *testing.T) {
	stillPlanted := func(t *testing.T, f *fixture) {
		if got, err := os.Readlink(f.wsDir + "/evil"); err != nil || got != f.outside {
			t.Errorf("evil = %q, %v; want the planted symlink", got, err)
		}
	}
	cases := []struct {
		name    string
		op      func(f *fixture) error
		wantErr error // nil: must succeed
		check   func(t *testing.T, f *fixture)
	}{
		{"MkdirAll/intermediate", func(f *fixture) error { return f.ws.MkdirAll("evil/new/deeper", 0o777) }, ErrSymlink, nil},
		{"MkdirAll/final", func(f *fixture) error { return f.ws.MkdirAll("evil", 0o777) }, ErrSymlink, nil},
		{"Lstat/intermediate", func(f *fixture) error { _, err := f.ws.Lstat("evil/secret"); return err }, ErrSymlink, nil},
		{"Lstat/final", func(f *fixture) error {
			st, err := f.ws.Lstat("evil")
			if err == nil && !st.IsSymlink() {
				return errors.New("lstat followed the symlink")
			}
			return err
		}, nil, nil},
		{"Link/dst-intermediate", func(f *fixture) error { return f.ws.Link(f.wps, "out.txt", "evil/stolen") }, ErrSymlink, nil},
		{"Link/dst-final", func(f *fixture) error { return f.ws.Link(f.wps, "out.txt", "evilfile") }, fs.ErrExist, nil},
		{"Link/src-intermediate", func(f *fixture) error { return f.ws.Link(f.wps, "evil/secret", "real/x") }, ErrSymlink, nil},
		{"Link/src-final", func(f *fixture) error { return f.ws.Link(f.wps, "evilfile", "real/x") }, ErrSymlink, nil},
		{"LinkReplace/dst-intermediate", func(f *fixture) error { return f.ws.LinkReplace(f.wps, "out.txt", "evil/secret") }, ErrSymlink, nil},
		{"LinkReplace/dst-final", func(f *fixture) error { return f.ws.LinkReplace(f.wps, "out.txt", "evilfile") }, nil,
			func(t *testing.T, f *fixture) {
				if b, err := os.ReadFile(f.wsDir + "/evilfile"); err != nil || string(b) != "output" {
					t.Errorf("evilfile = %q, %v; want the linked output", b, err)
				}
			}},
		{"LinkReplace/src-intermediate", func(f *fixture) error { return f.ws.LinkReplace(f.wps, "evil/secret", "real/x") }, ErrSymlink, nil},
		{"LinkReplace/src-final", func(f *fixture) error { return f.ws.LinkReplace(f.wps, "evilfile", "real/x") }, ErrSymlink, nil},
		{"Symlink/intermediate", func(f *fixture) error { return f.ws.Symlink("/etc", "evil/ln") }, ErrSymlink, nil},
		{"Symlink/final", func(f *fixture) error { return f.ws.Symlink("/etc", "evil") }, fs.ErrExist, nil},
		{"Readlink/intermediate", func(f *fixture) error { _, err := f.ws.Readlink("evil/sub"); return err }, ErrSymlink, nil},
		{"Readlink/final", func(f *fixture) error {
			got, err := f.ws.Readlink("evil")
			if err == nil && got != f.outside {
				return errors.New("readlink = " + got)
			}
			return err
		}, nil, nil},
		{"Remove/intermediate", func(f *fixture) error { return f.ws.Remove("evil/secret") }, ErrSymlink, nil},
		{"Remove/final", func(f *fixture) error { return f.ws.Remove("evil") }, nil, func(t *testing.T, f *fixture) {
			if _, err := os.Lstat(f.wsDir + "/evil"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("evil still there: %v", err)
			}
		}},
		{"RemoveAll/intermediate", func(f *fixture) error { return f.ws.RemoveAll("evil/sub") }, ErrSymlink, nil},
		{"RemoveAll/final", func(f *fixture) error { return f.ws.RemoveAll("evil") }, nil, func(t *testing.T, f *fixture) {
			if _, err := os.Lstat(f.wsDir + "/evil"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("evil still there: %v", err)
			}
		}},
		{"Rename/old-intermediate", func(f *fixture) error { return f.ws.Rename("evil/secret", "real/secret") }, ErrSymlink, nil},
		{"Rename/new-intermediate", func(f *fixture) error { return f.ws.Rename("real/file", "evil/file") }, ErrSymlink, nil},
		{"Rename/final", func(f *fixture) error { return f.ws.Rename("evil", "real/moved") }, nil, func(t *testing.T, f *fixture) {
			if got, err := os.Readlink(f.wsDir + "/real/moved"); err != nil || got != f.outside {
				t.Errorf("moved link = %q, %v", got, err)
			}
		}},
		{"SetOthers/intermediate", func(f *fixture) error { _, err := f.ws.SetOthers("evil/secret", true, true, true); return err }, ErrSymlink, nil},
		{"SetOthers/final-file", func(f *fixture) error { _, err := f.ws.SetOthers("evilfile", true, true, true); return err }, ErrSymlink, nil},
		{"SetOthers/final-dir", func(f *fixture) error { _, err := f.ws.SetOthers("evil", true, true, true); return err }, ErrSymlink, stillPlanted},
		{"Chown/intermediate", func(f *fixture) error { _, err := f.ws.Chown("evil/secret", 4242, 4242); return err }, ErrSymlink, nil},
		{"Chown/final", func(f *fixture) error { _, err := f.ws.Chown("evilfile", 4242, 4242); return err }, ErrSymlink, nil},
		{"ReadDir/intermediate", func(f *fixture) error { _, err := f.ws.ReadDir("evil/sub"); return err }, ErrSymlink, nil},
		{"ReadDir/final", func(f *fixture) error { _, err := f.ws.ReadDir("evil"); return err }, ErrSymlink, nil},
		{"OpenDir/intermediate", func(f *fixture) error { return openDir(f.ws, "evil/sub") }, ErrSymlink, nil},
		{"OpenDir/final", func(f *fixture) error { return openDir(f.ws, "evil") }, ErrSymlink, nil},
	}
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Root) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				f := newFixture(t, open)
				err := tc.op(f)
				switch {
				case tc.wantErr == nil && err != nil:
					t.Errorf("err = %v, want success", err)
				case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
					t.Errorf("err = %v, want %v", err, tc.wantErr)
				}
				if tc.check != nil {
					tc.check(t, f)
				}
				f.assertOutsideUntouched(t)
			})
		}
	})
}

// openDir opens rel as a Dir and closes it again, returning only the error.
func openDir(r *Root, rel string) error {
	d, err := r.OpenDir(rel)
	if err == nil {
		d.Close()
	}
	return err
}

func TestEscapingPathsRefused(t *testing.T) {
	r, _ := openTemp(t)
	ops := map[string]func(rel string) error{
		"MkdirAll":  func(rel string) error { return r.MkdirAll(rel, 0o755) },
		"Lstat":     func(rel string) error { _, err := r.Lstat(rel); return err },
		"Link":      func(rel string) error { return r.Link(r, rel, "x") },
		"LinkDst":   func(rel string) error { return r.Link(r, "f", rel) },
		"Replace":   func(rel string) error { return r.LinkReplace(r, "f", rel) },
		"Symlink":   func(rel string) error { return r.Symlink("/etc", rel) },
		"Readlink":  func(rel string) error { _, err := r.Readlink(rel); return err },
		"Remove":    func(rel string) error { return r.Remove(rel) },
		"RemoveAll": func(rel string) error { return r.RemoveAll(rel) },
		"Rename":    func(rel string) error { return r.Rename("f", rel) },
		"SetOthers": func(rel string) error { _, err := r.SetOthers(rel, true, false, false); return err },
		"Chown":     func(rel string) error { _, err := r.Chown(rel, 0, 0); return err },
		"ReadDir":   func(rel string) error { _, err := r.ReadDir(rel); return err },
		"OpenDir":   func(rel string) error { return openDir(r, rel) },
	}
	writeFile(t, r.Path()+"/f", "x", 0o644)
	for name, op := range ops {
		for _, rel := range []string{"/etc/passwd", "..", "../x", "a/../../x", "f\x00"} {
			if err := op(rel); !errors.Is(err, ErrEscape) {
				t.Errorf("%s(%q) = %v, want ErrEscape", name, rel, err)
			}
		}
	}
}

func TestMutationsOfRootRefused(t *testing.T) {
	r, dir := openTemp(t)
	for name, err := range map[string]error{
		"Remove":    r.Remove("."),
		"RemoveAll": r.RemoveAll(""),
		"Rename":    r.Rename(".", "x"),
		"Symlink":   r.Symlink("/etc", ""),
	} {
		if !errors.Is(err, errIsRoot) {
			t.Errorf("%s = %v, want refusal", name, err)
		}
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}

func TestOpen(t *testing.T) {
	if _, err := Open("relative/dir"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative root: err = %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing root: err = %v", err)
	}
	// The root itself may be reached through a trusted symlink.
	base := t.TempDir()
	mkdir(t, base+"/data", 0o755)
	writeFile(t, base+"/data/f", "x", 0o644)
	symlink(t, base+"/data", base+"/link")
	r, err := Open(base + "/link/")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Path() != base+"/link" {
		t.Errorf("Path = %q", r.Path())
	}
	if st, err := r.Lstat("f"); err != nil || !st.Mode.IsRegular() {
		t.Errorf("Lstat(f) = %+v, %v", st, err)
	}
	if r.openat2 != haveOpenat2() {
		t.Errorf("openat2 = %v, probe says %v", r.openat2, haveOpenat2())
	}
}

func TestMkdirAllModeIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Root) {
		dir := t.TempDir()
		mkdir(t, dir+"/exists", 0o700)
		r := open(t, dir)
		if err := r.MkdirAll("exists/a/b", 0o775|os.ModeSetgid); err != nil {
			t.Fatal(err)
		}
		if err := r.MkdirAll("exists/a/b", 0o700); err != nil { // already there: no change
			t.Fatal(err)
		}
		for p, want := range map[string]os.FileMode{
			"exists":     os.ModeDir | 0o700,
			"exists/a":   os.ModeDir | os.ModeSetgid | 0o775,
			"exists/a/b": os.ModeDir | os.ModeSetgid | 0o775,
		} {
			if fi, err := os.Lstat(dir + "/" + p); err != nil || fi.Mode() != want {
				t.Errorf("%s: mode %v, %v; want %v", p, fi.Mode(), err, want)
			}
		}
		writeFile(t, dir+"/file", "", 0o644)
		if err := r.MkdirAll("file/sub", 0o755); !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("MkdirAll through a file: %v", err)
		}
	})
}

func TestSetOthers(t *testing.T) {
	r, dir := openTemp(t)
	writeFile(t, dir+"/f", "", 0o640)
	mkdir(t, dir+"/d", 0o750)
	if err := os.Chmod(dir+"/d", 0o750|os.ModeSetgid|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		rel         string
		r, w, x     bool
		wantChanged bool
		want        os.FileMode
	}{
		{"f", true, false, false, true, 0o644},
		{"f", true, false, false, false, 0o644},
		{"f", false, true, true, true, 0o643},
		{"f", false, false, false, true, 0o640},
		{"d", true, false, true, true, os.ModeDir | os.ModeSetgid | os.ModeSticky | 0o755},
		{"d", true, false, true, false, os.ModeDir | os.ModeSetgid | os.ModeSticky | 0o755},
	}
	for i, s := range steps {
		changed, err := r.SetOthers(s.rel, s.r, s.w, s.x)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		fi, err := os.Lstat(dir + "/" + s.rel)
		if err != nil {
			t.Fatal(err)
		}
		if changed != s.wantChanged || fi.Mode() != s.want {
			t.Errorf("step %d: changed=%v mode=%v; want %v %v", i, changed, fi.Mode(), s.wantChanged, s.want)
		}
	}
	if _, err := r.SetOthers("missing", true, false, false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func TestChown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another uid needs root")
	}
	r, dir := openTemp(t)
	writeFile(t, dir+"/f", "", 0o644)
	for i, s := range []struct {
		uid, gid    int
		wantChanged bool
	}{{1234, 5678, true}, {1234, 5678, false}, {0, 5678, true}} {
		changed, err := r.Chown("f", s.uid, s.gid)
		if err != nil {
			t.Fatal(err)
		}
		st, err := r.Lstat("f")
		if err != nil {
			t.Fatal(err)
		}
		if changed != s.wantChanged || int(st.Uid) != s.uid || int(st.Gid) != s.gid {
			t.Errorf("step %d: changed=%v owner=%d:%d", i, changed, st.Uid, st.Gid)
		}
	}
}

func TestLinkAcrossRoots(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Root) {
		wpsDir, wsDir := t.TempDir(), t.TempDir()
		writeFile(t, wpsDir+"/out.nc", "data", 0o664)
		mkdir(t, wsDir+"/alice", 0o755)
		wps, ws := open(t, wpsDir), open(t, wsDir)
		if err := ws.Link(wps, "out.nc", "alice/out.nc"); err != nil {
			t.Fatal(err)
		}
		src, _ := wps.Lstat("out.nc")
		dst, _ := ws.Lstat("alice/out.nc")
		if src.Ino != dst.Ino || dst.Nlink != 2 {
			t.Errorf("link: src ino %d, dst ino %d nlink %d", src.Ino, dst.Ino, dst.Nlink)
		}
		if err := ws.Link(wps, "out.nc", "alice/out.nc"); !errors.Is(err, fs.ErrExist) {
			t.Errorf("second link: %v", err)
		}
	})
}

func TestLinkReplace(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Root) {
		dir := t.TempDir()
		writeFile(t, dir+"/new", "new", 0o644)
		writeFile(t, dir+"/old", "old", 0o644)
		mkdir(t, dir+"/pub", 0o755)
		r := open(t, dir)
		if err := r.Link(r, "old", "pub/f"); err != nil {
			t.Fatal(err)
		}
		newSt, _ := r.Lstat("new")

		// A reader must never see the name vanish while it is replaced.
		done, vanished := make(chan struct{}), make(chan error, 1)
		go func() {
			defer close(vanished)
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := r.Lstat("pub/f"); err != nil {
					vanished <- err
					return
				}
			}
		}()
		for i := range 50 {
			src := "new"
			if i%2 == 1 {
				src = "old"
			}
			if err := r.LinkReplace(r, src, "pub/f"); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.LinkReplace(r, "new", "pub/f"); err != nil {
			t.Fatal(err)
		}
		close(done)
		if err := <-vanished; err != nil {
			t.Errorf("pub/f vanished during replace: %v", err)
		}
		got, _ := r.Lstat("pub/f")
		if got.Ino != newSt.Ino {
			t.Errorf("pub/f ino %d, want %d", got.Ino, newSt.Ino)
		}
		// Idempotent, and no temporary names left behind.
		if err := r.LinkReplace(r, "new", "pub/f"); err != nil {
			t.Fatal(err)
		}
		ents, err := r.ReadDir("pub")
		if err != nil || len(ents) != 1 || ents[0].Name != "f" {
			t.Errorf("pub = %+v, %v; want only f", ents, err)
		}
		mkdir(t, dir+"/pub/d", 0o755)
		if err := r.LinkReplace(r, "new", "pub/d"); err == nil {
			t.Error("replacing a directory succeeded")
		}
	})
}

func TestSymlinkAndReadlink(t *testing.T) {
	r, dir := openTemp(t)
	mkdir(t, dir+"/alice", 0o755)
	target := "/data/jupyterhub_user_data/alice" // need not exist
	if err := r.Symlink(target, "alice/notebooks"); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Readlink("alice/notebooks"); err != nil || got != target {
		t.Errorf("Readlink = %q, %v", got, err)
	}
	if got, err := os.Readlink(dir + "/alice/notebooks"); err != nil || got != target {
		t.Errorf("on disk = %q, %v", got, err)
	}
	if err := r.Symlink("relative/target", "alice/rel"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative target: %v", err)
	}
	if _, err := r.Readlink("alice"); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Readlink of a dir: %v", err)
	}
}

func TestRemove(t *testing.T) {
	r, dir := openTemp(t)
	writeFile(t, dir+"/f", "", 0o644)
	mkdir(t, dir+"/empty", 0o755)
	mkdir(t, dir+"/full", 0o755)
	writeFile(t, dir+"/full/x", "", 0o644)
	for _, rel := range []string{"f", "empty"} {
		if err := r.Remove(rel); err != nil {
			t.Errorf("Remove(%s): %v", rel, err)
		}
		if _, err := os.Lstat(dir + "/" + rel); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still exists", rel)
		}
	}
	if err := r.Remove("full"); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("Remove(full) = %v", err)
	}
	if err := r.Remove("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove(missing) = %v", err)
	}
}

func TestRemoveAllLeavesSymlinkTargets(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Root) {
		f := newFixture(t, open)
		ws := f.wsDir
		mkdir(t, ws+"/alice/wps_outputs/weaver/deep", 0o755)
		writeFile(t, ws+"/alice/wps_outputs/weaver/deep/out.nc", "x", 0o644)
		mkdir(t, ws+"/alice/ro", 0o555)
		symlink(t, f.outside, ws+"/alice/notebooks")
		symlink(t, f.outside+"/secret", ws+"/alice/wps_outputs/link")
		if err := f.ws.Link(f.wps, "out.txt", "alice/hard"); err != nil {
			t.Fatal(err)
		}
		if err := f.ws.RemoveAll("alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(ws + "/alice"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("alice still exists: %v", err)
		}
		if b, err := os.ReadFile(f.wps.Path() + "/out.txt"); err != nil || string(b) != "output" {
			t.Errorf("hardlink source = %q, %v", b, err)
		}
		f.assertOutsideUntouched(t)
		if err := f.ws.RemoveAll("alice"); err != nil {
			t.Errorf("RemoveAll of a missing dir: %v", err)
		}
		if err := f.ws.RemoveAll("missing/parent/x"); err != nil {
			t.Errorf("RemoveAll under a missing parent: %v", err)
		}
	})
}

func TestRename(t *testing.T) {
	r, dir := openTemp(t)
	mkdir(t, dir+"/alice", 0o755)
	writeFile(t, dir+"/alice/f", "x", 0o644)
	mkdir(t, dir+"/archive", 0o755)
	if err := r.Rename("alice", "archive/alice"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dir + "/archive/alice/f"); err != nil || string(b) != "x" {
		t.Errorf("renamed content = %q, %v", b, err)
	}
	var le *os.LinkError
	if err := r.Rename("missing", "x"); !errors.As(err, &le) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Rename(missing) = %v", err)
	}
}

func TestLstat(t *testing.T) {
	r, dir := openTemp(t)
	writeFile(t, dir+"/f", "abc", 0o604)
	st, err := r.Lstat("f")
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Lstat(dir + "/f")
	sys := fi.Sys().(*syscall.Stat_t)
	want := Stat{Mode: 0o604, Ino: sys.Ino, Dev: sys.Dev, Nlink: 1, Uid: sys.Uid, Gid: sys.Gid, Ctime: sys.Ctim.Nano()}
	if st != want {
		t.Errorf("Lstat = %+v, want %+v", st, want)
	}
	root, err := r.Lstat(".")
	if err != nil || !root.IsDir() {
		t.Errorf("Lstat(.) = %+v, %v", root, err)
	}
	if _, err := r.Lstat("f/x"); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("Lstat through a file: %v", err)
	}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"user.name-1_x", true},
		{"...", true},
		{strings.Repeat("a", 255), true},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"/", false},
		{"a\x00b", false},
		{strings.Repeat("a", 256), false},
	} {
		err := ValidName(tc.name)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidName)) {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func openTemp(t *testing.T) (*Root, string) {
	t.Helper()
	dir := t.TempDir()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, dir
}

func mkdir(t *testing.T, p string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(p, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}
