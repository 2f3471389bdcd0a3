// Package safefs performs file operations beneath a trusted root directory
// without ever following a symlink below that root.
//
// Users have a shell in their workspace and can replace any directory they
// can write with a symlink to anywhere. Every operation therefore resolves
// its path from the root's directory descriptor, either in one openat2 call
// with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS or, where the
// kernel lacks openat2, one component at a time with openat and O_NOFOLLOW.
// The final change is then made relative to the parent's descriptor
// (mkdirat, linkat, symlinkat, unlinkat, renameat) or on a descriptor opened
// with O_NOFOLLOW (fchmod, fchown), so a symlink planted at any moment cannot
// redirect it outside the root.
package safefs

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

var (
	// ErrEscape reports a path that could leave the root: absolute, with a
	// ".." component, or containing NUL.
	ErrEscape = errors.New("path escapes root")
	// ErrSymlink reports a symlink where the operation would have to follow it.
	ErrSymlink = errors.New("symlink not followed")
	// ErrInvalidName reports a name refused by ValidName.
	ErrInvalidName = errors.New("invalid name")

	errIsRoot = errors.New("operation not allowed on the root itself")
)

const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// haveOpenat2 probes once whether openat2 works (Linux >= 5.6 and not
// blocked by seccomp). When it does not, the per-component walk is used.
var haveOpenat2 = sync.OnceValue(func() bool {
	fd, err := unix.Openat2(unix.AT_FDCWD, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: resolveFlags})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
})

// Root is an open directory beneath which all operations stay. It is safe
// for concurrent use.
type Root struct {
	fd      int
	path    string
	openat2 bool
}

// Open opens the trusted absolute directory root. Symlinks in root itself
// are followed once, here; none beneath it ever are.
func Open(root string) (*Root, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("open root %q: not an absolute path", root)
	}
	root = filepath.Clean(root)
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open root", Path: root, Err: err}
	}
	return &Root{fd: fd, path: root, openat2: haveOpenat2()}, nil
}

// Close releases the root's descriptor.
func (r *Root) Close() error {
	return unix.Close(r.fd)
}

// Path returns the root's path as given to Open (cleaned).
func (r *Root) Path() string { return r.path }

// ValidName checks that s is usable as a single path component taken from an
// event (a user or bird name): not empty, ".", "..", not containing "/" or
// NUL, and at most 255 bytes.
func ValidName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case s == "." || s == "..":
		return fmt.Errorf("%w %q: dot name", ErrInvalidName, s)
	case strings.ContainsAny(s, "/\x00"):
		return fmt.Errorf("%w %q: contains '/' or NUL", ErrInvalidName, s)
	case len(s) > 255:
		return fmt.Errorf("%w %q: longer than 255 bytes", ErrInvalidName, s)
	}
	return nil
}

// split validates rel and returns its components; "" and "." components are
// dropped, so "" and "." name the root itself.
func split(rel string) ([]string, error) {
	if filepath.IsAbs(rel) || strings.IndexByte(rel, 0) >= 0 {
		return nil, ErrEscape
	}
	comps := strings.Split(rel, "/")
	out := comps[:0]
	for _, c := range comps {
		switch c {
		case "", ".":
		case "..":
			return nil, ErrEscape
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

// full returns the absolute path of rel for error messages.
func (r *Root) full(rel string) string {
	if rel == "" || rel == "." {
		return r.path
	}
	return r.path + "/" + rel
}

// dir is a directory descriptor that is closed only if owned (the root's
// own descriptor is shared).
type dir struct {
	fd    int
	owned bool
}

func (d dir) close() {
	if d.owned {
		unix.Close(d.fd)
	}
}

// open opens comps beneath the root, the last one with flags (which must
// include O_DIRECTORY when they include O_PATH), the others as directories.
// No symlink is followed: a symlink component yields ErrSymlink.
func (r *Root) open(comps []string, flags int) (dir, error) {
	if len(comps) == 0 {
		if flags&unix.O_PATH != 0 {
			return dir{fd: r.fd}, nil
		}
		comps = []string{"."}
	}
	if r.openat2 {
		fd, err := unix.Openat2(r.fd, strings.Join(comps, "/"), &unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC),
			Resolve: resolveFlags,
		})
		switch err {
		case nil:
			return dir{fd: fd, owned: true}, nil
		case unix.ELOOP:
			return dir{}, ErrSymlink
		case unix.EXDEV:
			return dir{}, ErrEscape
		}
		return dir{}, err
	}
	cur := dir{fd: r.fd}
	for i, c := range comps {
		f := unix.O_PATH | unix.O_DIRECTORY
		if i == len(comps)-1 {
			f = flags
		}
		fd, err := unix.Openat(cur.fd, c, f|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			err = classify(cur.fd, c, err)
			cur.close()
			return dir{}, err
		}
		cur.close()
		cur = dir{fd: fd, owned: true}
	}
	return cur, nil
}

// classify turns the error of an O_NOFOLLOW open of name in dirfd into
// ErrSymlink when name is a symlink (ELOOP, or ENOTDIR with O_PATH).
func classify(dirfd int, name string, err error) error {
	if err == unix.ELOOP {
		return ErrSymlink
	}
	if err == unix.ENOTDIR {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return ErrSymlink
		}
	}
	return err
}

// parent opens the directory holding rel's last component and returns it
// with that component's name. rel must not name the root itself.
func (r *Root) parent(rel string) (dir, string, error) {
	comps, err := split(rel)
	if err != nil {
		return dir{}, "", err
	}
	if len(comps) == 0 {
		return dir{}, "", errIsRoot
	}
	d, err := r.open(comps[:len(comps)-1], unix.O_PATH|unix.O_DIRECTORY)
	return d, comps[len(comps)-1], err
}

// openFile opens rel (which may be the root) with flags, refusing a symlink
// at any component including the last.
func (r *Root) openFile(rel string, flags int) (dir, error) {
	comps, err := split(rel)
	if err != nil {
		return dir{}, err
	}
	return r.open(comps, flags)
}
