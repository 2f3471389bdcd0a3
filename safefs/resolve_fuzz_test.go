package safefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// fuzzOps are the operations FuzzResolve applies to a fuzzed path.
var fuzzOps = []string{"Lstat", "ReadDir", "OpenDir", "Readlink", "MkdirAll", "Symlink", "Remove",
	"RemoveAll", "SetOthers", "Chown", "Rename", "Link", "LinkReplace"}

// fuzzFixture builds, under a fresh directory, a root full of traps next to
// an "outside" directory that no operation beneath the root may touch, and
// returns the root's and outside's paths.
func fuzzFixture(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{outside, filepath.Join(outside, "d"), filepath.Join(root, "a", "b"), filepath.Join(root, "empty")} {
		must(os.MkdirAll(d, 0o755))
	}
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("outside"), 0o600))
	must(os.WriteFile(filepath.Join(root, "a", "f"), []byte("inside"), 0o644))
	must(os.WriteFile(filepath.Join(root, "file"), nil, 0o640))
	for link, target := range map[string]string{
		"up":       "../outside",
		"abs":      outside,
		"secret":   filepath.Join(outside, "secret"),
		"a/esc":    "../../outside",
		"a/self":   ".",
		"a/loop":   "loop",
		"dangling": "nowhere",
	} {
		must(os.Symlink(target, filepath.Join(root, link)))
	}
	return root, outside
}

// treeSnapshot describes every entry below dir, without following symlinks:
// type, permissions, owner, size, link target, and file contents.
func treeSnapshot(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := fmt.Sprintf("%s %v %s", rel, fi.Mode(), owner(fi))
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + strings.ReplaceAll(target, filepath.Dir(dir), "<base>")
		case fi.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %q", data)
		}
		if !strings.HasPrefix(filepath.Base(p), ".cowbird-link-") {
			out = append(out, line)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fuzzApply runs operation op of fuzzOps on r and describes its outcome.
func fuzzApply(r *Root, op int, rel, rel2 string) (string, error) {
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 4242, 4242 // as root, a chown that escaped would show
	}
	switch fuzzOps[op] {
	case "Lstat":
		st, err := r.Lstat(rel)
		return fmt.Sprintf("%v %d %d:%d", st.Mode, st.Nlink, st.Uid, st.Gid), err
	case "ReadDir":
		ents, err := r.ReadDir(rel)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name)
		}
		return strings.Join(names, ","), err
	case "OpenDir":
		d, err := r.OpenDir(rel)
		if err != nil {
			return "", err
		}
		defer d.Close()
		return d.Rel(), nil
	case "Readlink":
		return r.Readlink(rel)
	case "MkdirAll":
		return "", r.MkdirAll(rel, 0o755)
	case "Symlink":
		return "", r.Symlink("/fuzz/target", rel)
	case "Remove":
		return "", r.Remove(rel)
	case "RemoveAll":
		return "", r.RemoveAll(rel)
	case "SetOthers":
		changed, err := r.SetOthers(rel, true, true, true)
		return fmt.Sprint(changed), err
	case "Chown":
		changed, err := r.Chown(rel, uid, gid)
		return fmt.Sprint(changed), err
	case "Rename":
		return "", r.Rename(rel, rel2)
	case "Link":
		return "", r.Link(r, rel, rel2)
	case "LinkReplace":
		return "", r.LinkReplace(r, rel, rel2)
	}
	panic("unknown op")
}

// escapes reports whether rel is one that split must refuse.
func escapes(rel string) bool {
	return filepath.IsAbs(rel) || strings.ContainsRune(rel, 0) || slices.Contains(strings.Split(rel, "/"), "..")
}

// errClass is what both resolvers must agree on about an error.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrEscape):
		return "escape"
	case errors.Is(err, ErrSymlink):
		return "symlink"
	}
	return "error"
}

// FuzzResolve applies one operation to fuzzed paths beneath a root full of
// symlinks to an outside directory, once with openat2 and once with the
// per-component walk of older kernels. Nothing outside may change; a path
// that is absolute, holds NUL or a ".." component is an escape; and both
// resolvers must give the same outcome and leave the same tree.
func FuzzResolve(f *testing.F) {
	for i, s := range [][2]string{
		{"up/secret", "x"}, {"abs/d", "a/x"}, {"secret", "a/f"}, {"a/esc/secret", "a/b/s"}, {"a/self/f", "a/g"},
		{"a/loop/x", "y"}, {"a/../up", "z"}, {"/etc", "a"}, {"a//b/./c", "a/b/d"}, {"dangling", "a/dd"},
		{"a/f/x", "file"}, {"", "."}, {".", "a/b"}, {"a\x00b", "c"}, {"file", "up/new"}, {"a", "a/b/a"},
		{"empty", "abs"}, {"a/b", "up"},
	} {
		for _, op := range []int{i, i + 5, i + 9} {
			f.Add(uint8(op%len(fuzzOps)), s[0], s[1])
		}
	}
	if !haveOpenat2() {
		f.Log("openat2 unavailable: both runs use the per-component walk")
	}
	f.Fuzz(func(t *testing.T, opByte uint8, rel, rel2 string) {
		if len(rel) > 300 || len(rel2) > 300 {
			return
		}
		op := int(opByte) % len(fuzzOps)
		var outcomes, trees []string
		for _, openat2 := range []bool{true, false} {
			root, outside := fuzzFixture(t)
			before := treeSnapshot(t, outside)
			r, err := Open(root)
			if err != nil {
				t.Fatal(err)
			}
			r.openat2 = openat2 && haveOpenat2()
			out, err := fuzzApply(r, op, rel, rel2)
			r.Close()
			if after := treeSnapshot(t, outside); !slices.Equal(before, after) {
				t.Fatalf("%s(%q, %q) (openat2 %v) changed the outside:\nbefore %q\nafter  %q", fuzzOps[op], rel, rel2, openat2, before, after)
			}
			if escapes(rel) && !errors.Is(err, ErrEscape) {
				t.Fatalf("%s(%q) (openat2 %v) = %v, want ErrEscape", fuzzOps[op], rel, openat2, err)
			}
			if err != nil {
				out = ""
			}
			out = strings.ReplaceAll(out, filepath.Dir(root), "<base>")
			outcomes = append(outcomes, errClass(err)+" "+out)
			trees = append(trees, strings.Join(treeSnapshot(t, root), "\n"))
		}
		if outcomes[0] != outcomes[1] {
			t.Fatalf("%s(%q, %q): openat2 gives %q, the walk %q", fuzzOps[op], rel, rel2, outcomes[0], outcomes[1])
		}
		if trees[0] != trees[1] {
			t.Fatalf("%s(%q, %q): the trees differ:\nopenat2:\n%s\nwalk:\n%s", fuzzOps[op], rel, rel2, trees[0], trees[1])
		}
	})
}

// owner is fi's uid:gid.
func owner(fi fs.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
	}
	return "?"
}
