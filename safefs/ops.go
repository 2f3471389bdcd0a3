package safefs

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Stat is the part of lstat(2) the handlers need.
type Stat struct {
	Mode  os.FileMode // type and permission bits, as in os.FileInfo
	Ino   uint64
	Dev   uint64
	Nlink uint64
	Uid   uint32
	Gid   uint32
	Ctime int64 // last status change, ns since the epoch
}

// IsDir reports whether the entry is a directory.
func (s Stat) IsDir() bool { return s.Mode.IsDir() }

// IsSymlink reports whether the entry is a symlink.
func (s Stat) IsSymlink() bool { return s.Mode&os.ModeSymlink != 0 }

func statOf(st *unix.Stat_t) Stat {
	return Stat{
		Mode:  fileMode(st.Mode),
		Ino:   st.Ino,
		Dev:   st.Dev,
		Nlink: uint64(st.Nlink),
		Uid:   st.Uid,
		Gid:   st.Gid,
		Ctime: st.Ctim.Nano(),
	}
}

// fileMode converts a unix st_mode to an os.FileMode.
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	}
	if m&unix.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// unixPerm converts the permission, setuid, setgid and sticky bits of perm.
func unixPerm(perm os.FileMode) uint32 {
	m := uint32(perm.Perm())
	if perm&os.ModeSetuid != 0 {
		m |= unix.S_ISUID
	}
	if perm&os.ModeSetgid != 0 {
		m |= unix.S_ISGID
	}
	if perm&os.ModeSticky != 0 {
		m |= unix.S_ISVTX
	}
	return m
}

// MkdirAll creates rel and any missing parents with exactly perm (the umask
// does not apply); existing directories are left as they are. A symlink at
// any component is refused.
func (r *Root) MkdirAll(rel string, perm os.FileMode) error {
	comps, err := split(rel)
	if err != nil {
		return &fs.PathError{Op: "mkdirall", Path: r.full(rel), Err: err}
	}
	cur := dir{fd: r.fd}
	defer func() { cur.close() }()
	for _, c := range comps {
		fd, err := mkdirStep(cur.fd, c, unixPerm(perm))
		if err != nil {
			return &fs.PathError{Op: "mkdirall", Path: r.full(rel), Err: err}
		}
		cur.close()
		cur = dir{fd: fd, owned: true}
	}
	return nil
}

// mkdirStep opens directory name in dirfd, creating it with mode first if it
// is missing. A new directory is made 0700 and then fchmod'ed on a
// descriptor opened with O_NOFOLLOW, so it is never wider than asked and the
// mode lands on the directory we made even if the name is swapped.
func mkdirStep(dirfd int, name string, mode uint32) (int, error) {
	for range 3 {
		fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			return fd, nil
		}
		if err != unix.ENOENT {
			return -1, classify(dirfd, name, err)
		}
		err = unix.Mkdirat(dirfd, name, 0o700)
		if err == unix.EEXIST {
			continue // created concurrently: use it as it is
		}
		if err != nil {
			return -1, err
		}
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, classify(dirfd, name, err)
		}
		if err := unix.Fchmod(fd, mode); err != nil {
			unix.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	return -1, unix.EEXIST
}

// Lstat describes rel without following it; a symlink as the last component
// is described, a symlink before it is refused.
func (r *Root) Lstat(rel string) (Stat, error) {
	var st unix.Stat_t
	d, name, err := r.parent(rel)
	switch {
	case err == errIsRoot:
		err = unix.Fstat(r.fd, &st)
	case err == nil:
		err = unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		d.close()
	}
	if err != nil {
		return Stat{}, &fs.PathError{Op: "lstat", Path: r.full(rel), Err: err}
	}
	return statOf(&st), nil
}

// Link creates dstRel in r as a hardlink to srcRel in src (which may be r).
// A symlink at srcRel is refused; dstRel must not exist.
func (r *Root) Link(src *Root, srcRel, dstRel string) error {
	if err := r.link(src, srcRel, dstRel, false); err != nil {
		return &os.LinkError{Op: "link", Old: src.full(srcRel), New: r.full(dstRel), Err: err}
	}
	return nil
}

// LinkReplace makes dstRel in r a hardlink to srcRel in src, atomically
// replacing whatever file or symlink dstRel was: the new link is made under
// a temporary name in the same directory and renamed over dstRel, so dstRel
// never disappears. Nothing changes if dstRel already is that inode.
func (r *Root) LinkReplace(src *Root, srcRel, dstRel string) error {
	if err := r.link(src, srcRel, dstRel, true); err != nil {
		return &os.LinkError{Op: "linkreplace", Old: src.full(srcRel), New: r.full(dstRel), Err: err}
	}
	return nil
}

func (r *Root) link(src *Root, srcRel, dstRel string, replace bool) error {
	sd, sname, err := src.parent(srcRel)
	if err != nil {
		return err
	}
	defer sd.close()
	var st unix.Stat_t
	if err := unix.Fstatat(sd.fd, sname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// linkat without AT_SYMLINK_FOLLOW would link the symlink itself, so
		// a swap after this check still cannot reach outside the root.
		return ErrSymlink
	}
	dd, dname, err := r.parent(dstRel)
	if err != nil {
		return err
	}
	defer dd.close()
	if !replace {
		return unix.Linkat(sd.fd, sname, dd.fd, dname, 0)
	}
	var cur unix.Stat_t
	if unix.Fstatat(dd.fd, dname, &cur, unix.AT_SYMLINK_NOFOLLOW) == nil && cur.Dev == st.Dev && cur.Ino == st.Ino {
		return nil
	}
	for range 10 {
		tmp := ".cowbird-link-" + strconv.FormatUint(rand.Uint64(), 36)
		err = unix.Linkat(sd.fd, sname, dd.fd, tmp, 0)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return err
		}
		if err := unix.Renameat(dd.fd, tmp, dd.fd, dname); err != nil {
			unix.Unlinkat(dd.fd, tmp, 0)
			return err
		}
		return nil
	}
	return fmt.Errorf("temporary link name: %w", err)
}

// Symlink creates rel as a symlink to the absolute path target. The target is
// stored as data and never followed.
func (r *Root) Symlink(target, rel string) error {
	err := func() error {
		if !filepath.IsAbs(target) || strings.IndexByte(target, 0) >= 0 {
			return fmt.Errorf("target %q: not an absolute path", target)
		}
		d, name, err := r.parent(rel)
		if err != nil {
			return err
		}
		defer d.close()
		return unix.Symlinkat(target, d.fd, name)
	}()
	if err != nil {
		return &os.LinkError{Op: "symlink", Old: target, New: r.full(rel), Err: err}
	}
	return nil
}

// Readlink returns the target of the symlink rel.
func (r *Root) Readlink(rel string) (string, error) {
	target, err := func() (string, error) {
		d, name, err := r.parent(rel)
		if err != nil {
			return "", err
		}
		defer d.close()
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(d.fd, name, buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}()
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: r.full(rel), Err: err}
	}
	return target, nil
}

// Remove removes the file, symlink (not its target) or empty directory rel.
func (r *Root) Remove(rel string) error {
	err := func() error {
		d, name, err := r.parent(rel)
		if err != nil {
			return err
		}
		defer d.close()
		err = unix.Unlinkat(d.fd, name, 0)
		if err == unix.EISDIR {
			err = unix.Unlinkat(d.fd, name, unix.AT_REMOVEDIR)
		}
		return err
	}()
	if err != nil {
		return &fs.PathError{Op: "remove", Path: r.full(rel), Err: err}
	}
	return nil
}

// RemoveAll removes rel and everything below it; a missing rel is not an
// error. Symlinks met on the way are removed themselves, their targets are
// never touched.
func (r *Root) RemoveAll(rel string) error {
	err := func() error {
		d, name, err := r.parent(rel)
		if err == unix.ENOENT {
			return nil
		}
		if err != nil {
			return err
		}
		defer d.close()
		return removeAt(d.fd, name, make([]byte, direntBufSize))
	}()
	if err != nil {
		return &fs.PathError{Op: "removeall", Path: r.full(rel), Err: err}
	}
	return nil
}

// removeAt removes name in dirfd recursively, working only from directory
// descriptors opened with O_NOFOLLOW. It retries a few times when entries
// appear or the name changes type while it works.
func removeAt(dirfd int, name string, buf []byte) error {
	var err error
	for range 5 {
		err = unix.Unlinkat(dirfd, name, 0)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.EISDIR {
			return err
		}
		var fd int
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch err {
		case nil:
		case unix.ENOENT:
			return nil
		case unix.ELOOP, unix.ENOTDIR:
			continue // swapped for a symlink or file: unlink that
		default:
			return err
		}
		err = removeContents(fd, buf)
		unix.Close(fd)
		if err != nil {
			return err
		}
		err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.ENOTEMPTY && err != unix.EEXIST {
			return err
		}
	}
	return err
}

// removeContents removes every entry of the directory fd. Names are copied
// out of buf before recursing, since the recursion reuses buf.
func removeContents(fd int, buf []byte) error {
	var names []string
	for {
		names = names[:0]
		more, err := readDirents(fd, buf, func(name []byte, _ os.FileMode, _ uint64) {
			names = append(names, string(name))
		})
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := removeAt(fd, n, buf); err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
		}
		if !more {
			return nil
		}
	}
}

// Rename renames oldRel to newRel within the root, replacing newRel as
// rename(2) does. Symlinks are renamed themselves, never followed.
func (r *Root) Rename(oldRel, newRel string) error {
	err := func() error {
		od, oname, err := r.parent(oldRel)
		if err != nil {
			return err
		}
		defer od.close()
		nd, nname, err := r.parent(newRel)
		if err != nil {
			return err
		}
		defer nd.close()
		return unix.Renameat(od.fd, oname, nd.fd, nname)
	}()
	if err != nil {
		return &os.LinkError{Op: "rename", Old: r.full(oldRel), New: r.full(newRel), Err: err}
	}
	return nil
}

// SetOthers sets the others read, write and execute bits of rel, leaving all
// other mode bits alone, and changes the mode only when they differ. It
// reports whether it changed anything. A symlink is refused.
func (r *Root) SetOthers(rel string, read, write, exec bool) (changed bool, err error) {
	var want uint32
	if read {
		want |= 0o4
	}
	if write {
		want |= 0o2
	}
	if exec {
		want |= 0o1
	}
	changed, err = r.onFile(rel, func(fd int, st *unix.Stat_t) (bool, error) {
		mode := st.Mode & 0o7777
		if mode&0o7 == want {
			return false, nil
		}
		return true, unix.Fchmod(fd, mode&^0o7|want)
	})
	if err != nil {
		return false, &fs.PathError{Op: "setothers", Path: r.full(rel), Err: err}
	}
	return changed, nil
}

// Chown sets the owner of rel to uid and gid when they differ and reports
// whether it changed anything. A symlink is refused.
func (r *Root) Chown(rel string, uid, gid int) (changed bool, err error) {
	changed, err = r.onFile(rel, func(fd int, st *unix.Stat_t) (bool, error) {
		if int(st.Uid) == uid && int(st.Gid) == gid {
			return false, nil
		}
		return true, unix.Fchown(fd, uid, gid)
	})
	if err != nil {
		return false, &fs.PathError{Op: "chown", Path: r.full(rel), Err: err}
	}
	return changed, nil
}

// onFile runs fn on a descriptor of rel opened with O_NOFOLLOW (and
// O_NONBLOCK, so a FIFO does not block) and its fstat.
func (r *Root) onFile(rel string, fn func(fd int, st *unix.Stat_t) (bool, error)) (bool, error) {
	d, err := r.openFile(rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return false, err
	}
	defer d.close()
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return false, err
	}
	return fn(d.fd, &st)
}
