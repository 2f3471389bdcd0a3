package safefs

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWalkNeverFollowsSymlinks(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Root) {
		f := newFixture(t, open)
		ws := f.wsDir
		mkdir(t, ws+"/d/a/b", 0o755)
		writeFile(t, ws+"/d/a/file1", "", 0o644)
		writeFile(t, ws+"/d/a/b/file2", "", 0o644)
		mkdir(t, ws+"/d/skip", 0o755)
		writeFile(t, ws+"/d/skip/x", "", 0o644)
		symlink(t, f.outside, ws+"/d/link")
		symlink(t, f.outside+"/secret", ws+"/d/flink")
		symlink(t, ws+"/d/a", ws+"/d/inlink")
		if err := syscall.Mkfifo(ws+"/d/fifo", 0o644); err != nil {
			t.Fatal(err)
		}

		got := map[string]os.FileMode{}
		err := f.ws.Walk("./d/", func(rel string, e DirEntry) error {
			got[rel] = e.Type
			if e.Name != filepath.Base(rel) {
				t.Errorf("%s: Name = %q", rel, e.Name)
			}
			if st, err := f.ws.Lstat(rel); err != nil || st.Ino != e.Ino || st.Mode.Type() != e.Type {
				t.Errorf("%s: entry %+v, lstat %+v %v", rel, e, st, err)
			}
			if rel == "d/skip" {
				return fs.SkipDir
			}
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
			"d/skip":      os.ModeDir,
			"d/link":      os.ModeSymlink,
			"d/flink":     os.ModeSymlink,
			"d/inlink":    os.ModeSymlink,
			"d/fifo":      os.ModeNamedPipe,
		}
		if !maps.Equal(got, want) {
			t.Errorf("walk got %v\nwant %v", got, want)
		}
		f.assertOutsideUntouched(t)
	})
}

// TestWalkLstat checks that the lstat WalkLstat hands out reports what
// lstat(2) reports, planted symlinks included, and that the walk descends
// only into real directories.
func TestWalkLstat(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Root) {
		f := newFixture(t, open)
		ws := f.wsDir
		mkdir(t, ws+"/d/a", 0o751)
		writeFile(t, ws+"/d/a/file", "", 0o604)
		symlink(t, f.outside, ws+"/d/a/evil")
		symlink(t, f.outside+"/secret", ws+"/d/evilfile")

		got := map[string]Stat{}
		err := f.ws.WalkLstat("d", func(rel string, e DirEntry, lstat func() (Stat, error)) error {
			st, err := lstat()
			if err != nil {
				return err
			}
			if st.Mode.Type() != e.Type || st.Ino != e.Ino {
				t.Errorf("%s: lstat %+v disagrees with entry %+v", rel, st, e)
			}
			got[rel] = st
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]os.FileMode{
			"d/a":        os.ModeDir | 0o751,
			"d/a/file":   0o604,
			"d/a/evil":   os.ModeSymlink | 0o777,
			"d/evilfile": os.ModeSymlink | 0o777,
		}
		if len(got) != len(want) {
			t.Errorf("walked %v, want the entries %v", got, want)
		}
		for rel, mode := range want {
			fi, err := os.Lstat(ws + "/" + rel)
			if err != nil {
				t.Fatal(err)
			}
			sys := fi.Sys().(*syscall.Stat_t)
			wantSt := Stat{Mode: mode, Ino: sys.Ino, Dev: sys.Dev, Nlink: uint64(sys.Nlink), Uid: sys.Uid, Gid: sys.Gid}
			if st, ok := got[rel]; !ok || st != wantSt {
				t.Errorf("%s: got %+v (walked %v), want %+v", rel, st, ok, wantSt)
			}
		}
		for _, rel := range []string{"d/evilfile", "d/a/evil", "evil/sub"} {
			if err := f.ws.WalkLstat(rel, nil); !errors.Is(err, ErrSymlink) {
				t.Errorf("WalkLstat(%s) = %v, want ErrSymlink", rel, err)
			}
		}
		f.assertOutsideUntouched(t)
	})
}

// TestWalkLstatRaces swaps entries while they are visited: a directory
// replaced by a symlink to the outside is described as the symlink and not
// descended into, a removed entry gives fs.ErrNotExist, and an lstat kept
// past its call is refused.
func TestWalkLstatRaces(t *testing.T) {
	resolvers(t, func(t *testing.T, open func(*testing.T, string) *Root) {
		f := newFixture(t, open)
		ws := f.wsDir
		mkdir(t, ws+"/d/swapped", 0o755)
		writeFile(t, ws+"/d/swapped/inside", "", 0o644)
		writeFile(t, ws+"/d/gone", "", 0o644)

		var late func() (Stat, error)
		seen := map[string]error{}
		err := f.ws.WalkLstat("d", func(rel string, _ DirEntry, lstat func() (Stat, error)) error {
			switch rel {
			case "d/swapped":
				if err := os.Rename(ws+"/d/swapped", ws+"/moved"); err != nil {
					return err
				}
				symlink(t, f.outside, ws+"/d/swapped")
				if st, err := lstat(); err != nil || !st.IsSymlink() {
					t.Errorf("lstat of the swapped directory = %+v, %v; want the symlink", st, err)
				}
			case "d/gone":
				if err := os.Remove(ws + "/d/gone"); err != nil {
					return err
				}
			}
			_, seen[rel] = lstat()
			late = lstat
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != 2 || seen["d/swapped"] != nil || !errors.Is(seen["d/gone"], fs.ErrNotExist) {
			t.Errorf("visited %v, want d/swapped (no error) and d/gone (not exist) only", seen)
		}
		if _, err := late(); !errors.Is(err, errLstatLate) {
			t.Errorf("lstat after the walk = %v, want errLstatLate", err)
		}
		f.assertOutsideUntouched(t)
	})
}

func TestWalkControl(t *testing.T) {
	r, dir := openTemp(t)
	mkdir(t, dir+"/s", 0o755)
	for i := range 5 {
		writeFile(t, fmt.Sprintf("%s/s/f%d", dir, i), "", 0o644)
	}
	mkdir(t, dir+"/t", 0o755)
	writeFile(t, dir+"/t/x", "", 0o644)

	t.Run("SkipDir on a file skips its siblings", func(t *testing.T) {
		var inS int
		var sawT bool
		err := r.Walk("", func(rel string, e DirEntry) error {
			switch {
			case strings.HasPrefix(rel, "s/"):
				inS++
				return fs.SkipDir
			case rel == "t/x":
				sawT = true
			}
			return nil
		})
		if err != nil || inS != 1 || !sawT {
			t.Errorf("err=%v, calls in s=%d, saw t/x=%v", err, inS, sawT)
		}
	})
	t.Run("SkipAll stops", func(t *testing.T) {
		calls := 0
		err := r.Walk(".", func(string, DirEntry) error { calls++; return fs.SkipAll })
		if err != nil || calls != 1 {
			t.Errorf("err=%v calls=%d", err, calls)
		}
	})
	t.Run("fn error returned unchanged", func(t *testing.T) {
		for _, want := range []error{errors.New("boom"), syscall.EPERM} {
			err := r.Walk("s", func(string, DirEntry) error { return want })
			if err != want {
				t.Errorf("err = %#v, want %#v", err, want)
			}
		}
	})
	t.Run("walk of a file", func(t *testing.T) {
		if err := r.Walk("t/x", nopWalk); !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("err = %v", err)
		}
	})
}

// TestManyEntries needs several getdents batches per directory.
func TestManyEntries(t *testing.T) {
	r, dir := openTemp(t)
	mkdir(t, dir+"/big", 0o755)
	const n = 1500 // 1500 * ~(19+40) bytes > 2 * direntBufSize
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprintf("file-%04d-%s", i, strings.Repeat("x", 30))
		writeFile(t, dir+"/big/"+want[i], "", 0o644)
	}
	ents, err := r.ReadDir("big")
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n {
		t.Fatalf("ReadDir: %d entries, want %d", len(ents), n)
	}
	for i, e := range ents {
		if e.Name != want[i] || e.Type != 0 || e.Ino == 0 {
			t.Fatalf("entry %d = %+v, want %s", i, e, want[i])
		}
	}
	seen := 0
	if err := r.Walk("big", func(string, DirEntry) error { seen++; return nil }); err != nil || seen != n {
		t.Errorf("Walk: %d entries, %v", seen, err)
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
}

// BenchmarkWalk compares Walk with filepath.WalkDir over 100 directories of
// 100 files each.
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
					n := 0
					if err := r.Walk("", func(string, DirEntry) error { n++; return nil }); err != nil || n != want {
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
			f.ws.Walk(rel, nopWalk)
			f.ws.WalkLstat(rel, func(_ string, _ DirEntry, lstat func() (Stat, error)) error { _, err := lstat(); return err })
			f.ws.Rename(rel+"-s", rel+"-t")
			f.ws.Remove(rel + "-t")
			f.ws.RemoveAll(rel + "/m")
		}
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
