package safefs

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// walk visits every entry beneath d depth-first in name order, the way a
// caller walks a tree with Dir: it descends only into entries getdents
// reports as directories, and only through Dir.OpenDir.
func walk(d *Dir, fn func(d *Dir, e DirEntry) error) error {
	ents, err := d.ReadDir()
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := fn(d, e); err != nil {
			return err
		}
		if !e.IsDir() {
			continue
		}
		sub, err := d.OpenDir(e.Name)
		if err != nil {
			return err
		}
		err = walk(sub, fn)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// assertPathErr checks that err is a *fs.PathError for the absolute path p
// wrapping want.
func assertPathErr(t *testing.T, err, want error, p string) {
	t.Helper()
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != p || !errors.Is(err, want) {
		t.Errorf("err = %#v, want a *fs.PathError for %s wrapping %v", err, p, want)
	}
}

// lstatOf returns what lstat(2) reports for p, as a Stat.
func lstatOf(t *testing.T, p string) Stat {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	sys := fi.Sys().(*syscall.Stat_t)
	return Stat{Mode: fi.Mode(), Ino: sys.Ino, Dev: sys.Dev, Nlink: uint64(sys.Nlink), Uid: sys.Uid, Gid: sys.Gid, Ctime: sys.Ctim.Nano()}
}

// TestDirNeverFollowsSymlinks walks a tree holding planted symlinks (to an
// outside directory and file, and within the tree) and a FIFO: every entry
// is reported as lstat(2) sees it, and opening any non-directory as a
// directory is refused.
func TestDirNeverFollowsSymlinks(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Root) {
		f := newFixture(t, open)
		ws := f.wsDir
		mkdir(t, ws+"/d/a/b", 0o755)
		writeFile(t, ws+"/d/a/file1", "", 0o644)
		writeFile(t, ws+"/d/a/b/file2", "", 0o644)
		symlink(t, f.outside, ws+"/d/link")
		symlink(t, f.outside+"/secret", ws+"/d/flink")
		symlink(t, ws+"/d/a", ws+"/d/inlink")
		if err := syscall.Mkfifo(ws+"/d/fifo", 0o644); err != nil {
			t.Fatal(err)
		}

		d, err := f.ws.OpenDir("./d/")
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if d.Rel() != "d" {
			t.Errorf("Rel = %q, want d", d.Rel())
		}
		got := map[string]os.FileMode{}
		err = walk(d, func(d *Dir, e DirEntry) error {
			rel := path.Join(d.Rel(), e.Name)
			got[rel] = e.Type
			if st := lstatOf(t, ws+"/"+rel); st.Ino != e.Ino || st.Mode.Type() != e.Type {
				t.Errorf("%s: entry %+v, lstat(2) %+v", rel, e, st)
			}
			if e.IsDir() {
				return nil
			}
			want := error(syscall.ENOTDIR)
			if e.IsSymlink() {
				want = ErrSymlink
			}
			sub, err := d.OpenDir(e.Name)
			if err == nil {
				sub.Close()
			}
			assertPathErr(t, err, want, ws+"/"+rel)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]os.FileMode{
			"d/a":         os.ModeDir,
			"d/a/file1":   0,
			"d/a/b":       os.ModeDir,
			"d/a/b/file2": 0,
			"d/link":      os.ModeSymlink,
			"d/flink":     os.ModeSymlink,
			"d/inlink":    os.ModeSymlink,
			"d/fifo":      os.ModeNamedPipe,
		}
		if !maps.Equal(got, want) {
			t.Errorf("walk got %v\nwant %v", got, want)
		}
		_, err = d.OpenDir("missing")
		assertPathErr(t, err, fs.ErrNotExist, ws+"/d/missing")

		root, err := f.ws.OpenDir("")
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		if root.Rel() != "" {
			t.Errorf("root Rel = %q, want empty", root.Rel())
		}
		if sub, err := root.OpenDir("d"); err != nil || sub.Rel() != "d" {
			t.Errorf("root.OpenDir(d) = %v, %v; want Rel d", sub, err)
		} else {
			sub.Close()
		}
		f.assertOutsideUntouched(t)
	})
}

// TestDirLstat checks that Dir.Stat and Dir.Lstat report what lstat(2)
// reports, planted symlinks included, and that Root.OpenDir refuses a
// symlink anywhere on the path.
func TestDirLstat(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Root) {
		f := newFixture(t, open)
		ws := f.wsDir
		mkdir(t, ws+"/d/a", 0o751)
		writeFile(t, ws+"/d/a/file", "", 0o604)
		symlink(t, f.outside, ws+"/d/a/evil")
		symlink(t, f.outside+"/secret", ws+"/d/evilfile")
		writeFile(t, ws+"/d/gone", "", 0o644)

		d, err := f.ws.OpenDir("d")
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		a, err := d.OpenDir("a")
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		for _, tc := range []struct {
			rel  string
			mode os.FileMode
			stat func() (Stat, error)
		}{
			{"d/a", os.ModeDir | 0o751, func() (Stat, error) { return d.Lstat("a") }},
			{"d/a", os.ModeDir | 0o751, a.Stat},
			{"d/a/file", 0o604, func() (Stat, error) { return a.Lstat("file") }},
			{"d/a/evil", os.ModeSymlink | 0o777, func() (Stat, error) { return a.Lstat("evil") }},
			{"d/evilfile", os.ModeSymlink | 0o777, func() (Stat, error) { return d.Lstat("evilfile") }},
		} {
			want := lstatOf(t, ws+"/"+tc.rel)
			if st, err := tc.stat(); err != nil || st != want || st.Mode != tc.mode {
				t.Errorf("%s: got %+v, %v; want %+v with mode %v", tc.rel, st, err, want, tc.mode)
			}
		}
		if st, err := d.Stat(); err != nil || st != lstatOf(t, ws+"/d") {
			t.Errorf("Stat of d = %+v, %v; want %+v", st, err, lstatOf(t, ws+"/d"))
		}

		for _, rel := range []string{"d/evilfile", "d/a/evil", "evil/sub", "evil", "d/a/evil/sub"} {
			if dd, err := f.ws.OpenDir(rel); !errors.Is(err, ErrSymlink) {
				t.Errorf("OpenDir(%s) = %v, want ErrSymlink", rel, err)
				if err == nil {
					dd.Close()
				}
			}
		}

		ents, err := d.ReadDir()
		if err != nil || !slices.ContainsFunc(ents, func(e DirEntry) bool { return e.Name == "gone" }) {
			t.Fatalf("ReadDir = %+v, %v; want gone listed", ents, err)
		}
		if err := os.Remove(ws + "/d/gone"); err != nil {
			t.Fatal(err)
		}
		_, err = d.Lstat("gone")
		assertPathErr(t, err, fs.ErrNotExist, ws+"/d/gone")

		for _, name := range []string{"..", ".", "a/b", "a/file", ""} {
			if _, err := d.Lstat(name); !errors.Is(err, ErrInvalidName) {
				t.Errorf("Lstat(%q) = %v, want ErrInvalidName", name, err)
			}
			if sub, err := d.OpenDir(name); !errors.Is(err, ErrInvalidName) {
				t.Errorf("OpenDir(%q) = %v, want ErrInvalidName", name, err)
				if err == nil {
					sub.Close()
				}
			}
		}
		f.assertOutsideUntouched(t)
	})
}

// TestDirRaces swaps entries between ReadDir and the calls that act on
// them: an entry swapped for a symlink to the outside is described as that
// symlink and never followed, a removed entry gives fs.ErrNotExist, and a
// Dir whose own path is swapped keeps working on the directory it opened.
func TestDirRaces(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Root) {
		f := newFixture(t, open)
		ws := f.wsDir
		mkdir(t, ws+"/d/swapped", 0o755)
		writeFile(t, ws+"/d/swapped/inside", "", 0o644)
		mkdir(t, ws+"/d/tofile", 0o755)
		writeFile(t, ws+"/d/gone", "", 0o644)

		d, err := f.ws.OpenDir("d")
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		ents, err := d.ReadDir()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, fmt.Sprintf("%s:%v", e.Name, e.IsDir()))
		}
		if got := strings.Join(names, " "); got != "gone:false swapped:true tofile:true" {
			t.Fatalf("ReadDir = %s", got)
		}

		if err := os.Rename(ws+"/d/swapped", ws+"/moved"); err != nil {
			t.Fatal(err)
		}
		symlink(t, f.outside, ws+"/d/swapped")
		if st, err := d.Lstat("swapped"); err != nil || st != lstatOf(t, ws+"/d/swapped") || !st.IsSymlink() {
			t.Errorf("Lstat of the swapped directory = %+v, %v; want the symlink", st, err)
		}
		_, err = d.OpenDir("swapped")
		assertPathErr(t, err, ErrSymlink, ws+"/d/swapped")

		if err := os.Remove(ws + "/d/tofile"); err != nil {
			t.Fatal(err)
		}
		writeFile(t, ws+"/d/tofile", "", 0o644)
		_, err = d.OpenDir("tofile")
		assertPathErr(t, err, syscall.ENOTDIR, ws+"/d/tofile")

		if err := os.Remove(ws + "/d/gone"); err != nil {
			t.Fatal(err)
		}
		_, err = d.Lstat("gone")
		assertPathErr(t, err, fs.ErrNotExist, ws+"/d/gone")
		_, err = d.OpenDir("gone")
		assertPathErr(t, err, fs.ErrNotExist, ws+"/d/gone")

		// d itself swapped for a symlink to the outside: d still reads the
		// directory it opened, never the outside.
		before := lstatOf(t, ws+"/d")
		if err := os.Rename(ws+"/d", ws+"/d-old"); err != nil {
			t.Fatal(err)
		}
		symlink(t, f.outside, ws+"/d")
		if st, err := d.Stat(); err != nil || st.Ino != before.Ino {
			t.Errorf("Stat after the swap = %+v, %v; want the opened directory %+v", st, err, before)
		}
		if _, err := d.Lstat("secret"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Lstat(secret) after the swap = %v, want fs.ErrNotExist", err)
		}
		if sub, err := d.OpenDir("sub"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("OpenDir(sub) after the swap = %v, want fs.ErrNotExist", err)
			if err == nil {
				sub.Close()
			}
		}
		if st, err := d.Lstat("tofile"); err != nil || st != lstatOf(t, ws+"/d-old/tofile") {
			t.Errorf("Lstat(tofile) after the swap = %+v, %v; want d-old/tofile", st, err)
		}
		f.assertOutsideUntouched(t)
	})
}

// TestManyEntries needs many getdents batches per directory, read by
// several goroutines at once so they share the buffer pool.
func TestManyEntries(t *testing.T) {
	r, dir := openTemp(t)
	mkdir(t, dir+"/big", 0o755)
	const n = 3000 // 3000 * ~(19+120) bytes > 10 * direntBufSize
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprintf("file-%04d-%s", i, strings.Repeat("x", 110))
		writeFile(t, dir+"/big/"+want[i], "", 0o644)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for g := range errs {
		wg.Go(func() {
			ents, err := r.ReadDir("big")
			if err != nil {
				errs[g] = err
				return
			}
			if len(ents) != n {
				errs[g] = fmt.Errorf("ReadDir: %d entries, want %d", len(ents), n)
				return
			}
			for i, e := range ents {
				if e.Name != want[i] || e.Type != 0 || e.Ino == 0 {
					errs[g] = fmt.Errorf("entry %d = %+v, want %s", i, e, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	d, err := r.OpenDir("")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	seen := 0
	if err := walk(d, func(*Dir, DirEntry) error { seen++; return nil }); err != nil || seen != n+1 {
		t.Errorf("walk: %d entries, %v; want %d", seen, err, n+1)
	}
	if err := r.RemoveAll("big"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir + "/big"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("big still there: %v", err)
	}
}

func TestReadDir(t *testing.T) {
	r, dir := openTemp(t)
	mkdir(t, dir+"/b", 0o755)
	writeFile(t, dir+"/c", "", 0o644)
	symlink(t, "/etc", dir+"/a")
	ents, err := r.ReadDir("")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, fmt.Sprintf("%s:%v:%v", e.Name, e.IsDir(), e.IsSymlink()))
	}
	if want := "a:false:true b:true:false c:false:false"; strings.Join(got, " ") != want {
		t.Errorf("ReadDir = %v, want %s", got, want)
	}
	_, err = r.ReadDir("c")
	assertPathErr(t, err, syscall.ENOTDIR, dir+"/c")
	_, err = r.ReadDir("missing")
	assertPathErr(t, err, fs.ErrNotExist, dir+"/missing")
}

// BenchmarkWalk compares a walk over Dir with filepath.WalkDir over 100
// directories of 100 files each.
func BenchmarkWalk(b *testing.B) {
	dir := b.TempDir()
	for d := range 100 {
		sub := fmt.Sprintf("%s/dir%03d", dir, d)
		if err := os.Mkdir(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 100 {
			if err := os.WriteFile(fmt.Sprintf("%s/file%03d.nc", sub, f), nil, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	const want = 100 + 100*100
	b.Run("safefs", func(b *testing.B) {
		for _, openat2 := range []bool{true, false} {
			b.Run(fmt.Sprintf("openat2=%v", openat2), func(b *testing.B) {
				r, err := Open(dir)
				if err != nil {
					b.Fatal(err)
				}
				defer r.Close()
				r.openat2 = openat2 && haveOpenat2()
				b.ReportAllocs()
				for b.Loop() {
					d, err := r.OpenDir("")
					if err != nil {
						b.Fatal(err)
					}
					n := 0
					err = walk(d, func(*Dir, DirEntry) error { n++; return nil })
					d.Close()
					if err != nil || n != want {
						b.Fatalf("walked %d, %v", n, err)
					}
				}
			})
		}
	})
	b.Run("filepath.WalkDir", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			err := filepath.WalkDir(dir, func(_ string, _ fs.DirEntry, err error) error { n++; return err })
			if err != nil || n != want+1 {
				b.Fatalf("walked %d, %v", n, err)
			}
		}
	})
}

// TestNoDescriptorLeak runs every operation, on success and error paths, and
// checks the process holds no more descriptors afterwards.
func TestNoDescriptorLeak(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Root) {
		f := newFixture(t, open)
		// dirOps opens rel and, through it, every entry and a few bad names.
		dirOps := func(rel string) {
			d, err := f.ws.OpenDir(rel)
			if err != nil {
				return
			}
			defer d.Close()
			d.Stat()
			ents, _ := d.ReadDir()
			for _, name := range []string{"missing", "..", ""} {
				ents = append(ents, DirEntry{Name: name})
			}
			for _, e := range ents {
				d.Lstat(e.Name)
				if sub, err := d.OpenDir(e.Name); err == nil {
					sub.ReadDir()
					sub.Close()
				}
			}
		}
		before := openFDs(t)
		for _, rel := range []string{"real/file", "real/x/y", "evil/secret", "evilfile", "real", "missing/x"} {
			f.ws.MkdirAll(rel+"/m", 0o755)
			f.ws.Lstat(rel)
			f.ws.Link(f.wps, "out.txt", rel+"-l")
			f.ws.LinkReplace(f.wps, "out.txt", rel+"-l")
			f.ws.Link(f.wps, rel, "real/l2")
			f.ws.Symlink("/etc", rel+"-s")
			f.ws.Readlink(rel + "-s")
			f.ws.SetOthers(rel, true, false, true)
			f.ws.Chown(rel, 0, 0)
			f.ws.ReadDir(rel)
			dirOps(rel)
			f.ws.Rename(rel+"-s", rel+"-t")
			f.ws.Remove(rel + "-t")
			f.ws.RemoveAll(rel + "/m")
		}
		dirOps("")
		f.ws.RemoveAll("real")
		if after := openFDs(t); after != before {
			t.Errorf("open descriptors: %d before, %d after", before, after)
		}
	})
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}
