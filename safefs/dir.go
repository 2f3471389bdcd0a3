package safefs

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// direntBufSize is the getdents buffer size; larger means fewer syscalls.
const direntBufSize = 32 << 10

// direntBufs recycles getdents buffers across directories.
var direntBufs = sync.Pool{New: func() any { b := make([]byte, direntBufSize); return &b }}

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

// Dir is an open directory beneath a Root, for walks that keep one
// descriptor per directory: its entries (getdents), their lstat
// (fstatat with AT_SYMLINK_NOFOLLOW) and its subdirectories (openat with
// O_NOFOLLOW) are all taken relative to that descriptor, so nothing is
// resolved by path again and no symlink is ever followed. A Dir is not safe
// for concurrent use; Close it when done.
type Dir struct {
	root *Root
	fd   int
	rel  string
}

// OpenDir opens the directory rel (which may be the root). A symlink at any
// component, including rel itself, gives ErrSymlink.
func (r *Root) OpenDir(rel string) (*Dir, error) {
	comps, err := split(rel)
	if err != nil {
		return nil, &fs.PathError{Op: "opendir", Path: r.full(rel), Err: err}
	}
	d, err := r.open(comps, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, &fs.PathError{Op: "opendir", Path: r.full(rel), Err: err}
	}
	return &Dir{root: r, fd: d.fd, rel: strings.Join(comps, "/")}, nil
}

// ReadDir lists the directory rel, sorted by name. A symlink at any
// component, including rel itself, is refused.
func (r *Root) ReadDir(rel string) ([]DirEntry, error) {
	d, err := r.OpenDir(rel)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir()
}

// Rel returns the directory's path relative to its root ("" for the root).
func (d *Dir) Rel() string { return d.rel }

// Close releases the directory's descriptor.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// Join returns the root-relative path of the directory's entry name.
func (d *Dir) Join(name string) string {
	if d.rel == "" {
		return name
	}
	return d.rel + "/" + name
}

// Stat describes the directory itself (fstat on its descriptor).
func (d *Dir) Stat() (Stat, error) {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return Stat{}, &fs.PathError{Op: "fstat", Path: d.root.full(d.rel), Err: err}
	}
	return statOf(&st), nil
}

// Lstat describes the entry name of the directory without following it; an
// entry that vanished gives fs.ErrNotExist.
func (d *Dir) Lstat(name string) (Stat, error) {
	var st unix.Stat_t
	err := ErrInvalidName
	if ValidName(name) == nil {
		err = unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return Stat{}, &fs.PathError{Op: "lstat", Path: d.root.full(d.Join(name)), Err: err}
	}
	return statOf(&st), nil
}

// OpenDir opens the subdirectory name. A symlink there gives ErrSymlink, a
// non-directory unix.ENOTDIR, a missing entry fs.ErrNotExist.
func (d *Dir) OpenDir(name string) (*Dir, error) {
	err := ValidName(name)
	if err == nil {
		var fd int
		fd, err = unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			return &Dir{root: d.root, fd: fd, rel: d.Join(name)}, nil
		}
		err = classify(d.fd, name, err)
	}
	return nil, &fs.PathError{Op: "opendir", Path: d.root.full(d.Join(name)), Err: err}
}

// ReadDir lists the directory's entries (not "." and ".."), sorted by name;
// it reads the directory once: a second call on the same Dir returns nothing.
// Types come from d_type, with an lstat only where the file system does not
// fill it in; entries that vanished meanwhile are left out.
func (d *Dir) ReadDir() ([]DirEntry, error) {
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	// The names are gathered in one buffer and become substrings of one
	// string: two allocations per directory rather than one per entry.
	var (
		names = make([]byte, 0, 512)
		ends  = make([]int, 0, 32) // end of each entry's name in names
		ents  = make([]DirEntry, 0, 32)
	)
	for {
		more, err := readDirents(d.fd, *bp, func(name []byte, typ os.FileMode, ino uint64) {
			names = append(names, name...)
			ends = append(ends, len(names))
			ents = append(ents, DirEntry{Type: typ, Ino: ino})
		})
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: d.root.full(d.rel), Err: err}
		}
		if !more {
			break
		}
	}
	all, start := string(names), 0
	for i, end := range ends {
		ents[i].Name, start = all[start:end], end
	}
	slices.SortFunc(ents, func(a, b DirEntry) int { return strings.Compare(a.Name, b.Name) })
	return ents, nil
}

// readDirents reads one batch of entries of the directory fd into buf and
// calls fn for each, skipping "." and "..". name aliases buf and is valid
// only during the call. Entries whose d_type is unknown are lstat'ed; those
// that vanished meanwhile are skipped. It reports whether the batch was
// non-empty (more may follow).
func readDirents(fd int, buf []byte, fn func(name []byte, typ os.FileMode, ino uint64)) (bool, error) {
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
		fn(name, typ, ino)
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
