package safefs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// direntBufSize is the getdents buffer size; larger means fewer syscalls.
const direntBufSize = 32 << 10

// DirEntry is one directory entry as getdents reports it.
type DirEntry struct {
	Name string
	Type os.FileMode // type bits only (os.ModeDir, os.ModeSymlink, ...); 0 for a regular file
	Ino  uint64
}

// IsDir reports whether the entry is a directory.
func (e DirEntry) IsDir() bool { return e.Type.IsDir() }

// IsSymlink reports whether the entry is a symlink.
func (e DirEntry) IsSymlink() bool { return e.Type&os.ModeSymlink != 0 }

// ReadDir lists the directory rel, sorted by name. A symlink at any
// component, including rel itself, is refused.
func (r *Root) ReadDir(rel string) ([]DirEntry, error) {
	ents, err := func() ([]DirEntry, error) {
		d, err := r.openFile(rel, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return nil, err
		}
		defer d.close()
		var ents []DirEntry
		buf := make([]byte, direntBufSize)
		for more := true; more; {
			more, err = readDirents(d.fd, buf, func(name []byte, typ os.FileMode, ino uint64) error {
				ents = append(ents, DirEntry{Name: string(name), Type: typ, Ino: ino})
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		return ents, nil
	}()
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: r.full(rel), Err: err}
	}
	slices.SortFunc(ents, func(a, b DirEntry) int { return strings.Compare(a.Name, b.Name) })
	return ents, nil
}

var (
	// errSkipRest stops reading a directory after fn returned fs.SkipDir
	// for a non-directory entry.
	errSkipRest = errors.New("skip rest of directory")
	// errLstatLate reports a WalkLstat lstat called after its fn returned.
	errLstatLate = errors.New("lstat called after the walk function returned")
)

// Walk calls fn for every entry beneath the directory rel (not for rel
// itself), in directory order, with the entry's path relative to the root.
// It never descends into symlinks: they are reported with their own type.
// fn may return fs.SkipDir (for a directory: do not descend; otherwise: skip
// the rest of its directory) or fs.SkipAll; any other error stops the walk
// and is returned unchanged. Types come from d_type, with an lstat only where
// the file system does not fill it in.
func (r *Root) Walk(rel string, fn func(rel string, e DirEntry) error) error {
	return r.WalkLstat(rel, func(rel string, e DirEntry, _ func() (Stat, error)) error { return fn(rel, e) })
}

// WalkLstat is Walk whose fn may also lstat the entry it is given: lstat
// runs one fstatat(AT_SYMLINK_NOFOLLOW) on the walker's already-open
// directory descriptor (no path resolution, no open per entry), so the
// entry is described, never followed. lstat is valid only until fn
// returns; an entry that vanished since getdents gives fs.ErrNotExist.
// Entries whose lstat is not asked for cost no syscall.
func (r *Root) WalkLstat(rel string, fn func(rel string, e DirEntry, lstat func() (Stat, error)) error) error {
	comps, err := split(rel)
	if err != nil {
		return &fs.PathError{Op: "walk", Path: r.full(rel), Err: err}
	}
	d, err := r.open(comps, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return &fs.PathError{Op: "walk", Path: r.full(rel), Err: err}
	}
	defer d.close()
	w := walker{root: r, fn: fn, cur: entry{dirfd: -1}}
	w.lstat = w.lstatCur
	err = w.walk(d.fd, strings.Join(comps, "/"), 0)
	if fe, ok := err.(fnError); ok {
		err = fe.err
	}
	if err == fs.SkipAll {
		return nil
	}
	return err
}

// fnError carries an error returned by the walk function up unchanged, so
// it is not mistaken for a getdents error of an enclosing directory.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// walker keeps one getdents buffer per depth, reused across directories.
type walker struct {
	root  *Root
	fn    func(string, DirEntry, func() (Stat, error)) error
	bufs  [][]byte
	cur   entry                // the entry fn is being called for
	lstat func() (Stat, error) // w.lstatCur, made once
}

// entry is the entry being visited: its name in the open directory dirfd
// (-1 outside calls of fn) and its path relative to the root.
type entry struct {
	dirfd     int
	name, rel string
}

// lstatCur describes the entry fn is being called for, with one fstatat on
// its directory's open descriptor.
func (w *walker) lstatCur() (Stat, error) {
	var st unix.Stat_t
	err := errLstatLate
	if w.cur.dirfd >= 0 {
		err = unix.Fstatat(w.cur.dirfd, w.cur.name, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return Stat{}, &fs.PathError{Op: "lstat", Path: w.root.full(w.cur.rel), Err: err}
	}
	return statOf(&st), nil
}

func (w *walker) walk(fd int, prefix string, depth int) error {
	if depth == len(w.bufs) {
		w.bufs = append(w.bufs, make([]byte, direntBufSize))
	}
	buf := w.bufs[depth]
	visit := func(name []byte, typ os.FileMode, ino uint64) error {
		var p string
		if prefix == "" {
			p = string(name)
		} else {
			p = prefix + "/" + string(name)
		}
		e := DirEntry{Name: p[len(p)-len(name):], Type: typ, Ino: ino}
		w.cur = entry{dirfd: fd, name: e.Name, rel: p}
		err := w.fn(p, e, w.lstat)
		w.cur = entry{dirfd: -1}
		if err != nil {
			if err == fs.SkipDir {
				if typ.IsDir() {
					return nil
				}
				return errSkipRest
			}
			return fnError{err}
		}
		if !typ.IsDir() {
			return nil
		}
		cfd, err := unix.Openat(fd, e.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch err {
		case nil:
		case unix.ENOENT, unix.ELOOP, unix.ENOTDIR:
			return nil // gone, or swapped for a symlink or file since getdents: not followed
		default:
			return &fs.PathError{Op: "walk", Path: w.root.full(p), Err: err}
		}
		defer unix.Close(cfd)
		return w.walk(cfd, p, depth+1)
	}
	for {
		more, err := readDirents(fd, buf, visit)
		if err == errSkipRest {
			return nil
		}
		if errno, ok := err.(unix.Errno); ok {
			return &fs.PathError{Op: "walk", Path: w.root.full(prefix), Err: errno}
		}
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
	}
}

// readDirents reads one batch of entries of the directory fd into buf and
// calls fn for each, skipping "." and "..". name aliases buf and is valid
// only during the call. Entries whose d_type is unknown are lstat'ed; those
// that vanished meanwhile are skipped. It reports whether the batch was
// non-empty (more may follow).
func readDirents(fd int, buf []byte, fn func(name []byte, typ os.FileMode, ino uint64) error) (bool, error) {
	n, err := unix.Getdents(fd, buf)
	for err == unix.EINTR {
		n, err = unix.Getdents(fd, buf)
	}
	if err != nil || n <= 0 {
		return false, err
	}
	// struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
	const nameOff = 19
	for off := 0; off+nameOff <= n; {
		rec := buf[off:n]
		reclen := int(binary.NativeEndian.Uint16(rec[16:18]))
		if reclen < nameOff || reclen > len(rec) {
			return false, unix.EIO
		}
		off += reclen
		ino := binary.NativeEndian.Uint64(rec[0:8])
		name := rec[nameOff:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if string(name) == "." || string(name) == ".." {
			continue
		}
		typ, ok := direntType(rec[18])
		if !ok {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, string(name), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if err == unix.ENOENT {
					continue
				}
				return false, err
			}
			typ = fileMode(st.Mode).Type()
		}
		if err := fn(name, typ, ino); err != nil {
			return false, err
		}
	}
	return true, nil
}

// direntType maps d_type to os.FileMode type bits; ok is false for DT_UNKNOWN.
func direntType(t uint8) (typ os.FileMode, ok bool) {
	switch t {
	case unix.DT_REG:
		return 0, true
	case unix.DT_DIR:
		return os.ModeDir, true
	case unix.DT_LNK:
		return os.ModeSymlink, true
	case unix.DT_FIFO:
		return os.ModeNamedPipe, true
	case unix.DT_SOCK:
		return os.ModeSocket, true
	case unix.DT_CHR:
		return os.ModeDevice | os.ModeCharDevice, true
	case unix.DT_BLK:
		return os.ModeDevice, true
	}
	return 0, false
}
