package store

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"
)

// Backups of the state database.
//
// A backup is a plain bbolt file, as bbolt's transaction copy writes it: the
// state as of one read-only transaction, so it is consistent even while the
// daemon keeps writing. The running daemon holds the file's exclusive lock,
// so only it can take an online snapshot (DB.Snapshot); BackupFile reads the
// file of a stopped daemon. Restore installs a backup in place of the
// database of a stopped daemon.

// ErrInUse is returned (wrapped) when the database file is locked by a
// running daemon.
var ErrInUse = errors.New("database is in use by a running cowbird")

// restoredSuffix names the previous database that Restore keeps beside the
// restored one.
const restoredSuffix = ".before-restore"

// requiredBuckets are the buckets every cowbird state database has had
// since its first version; a file without them is not one. Later versions
// may add buckets: they are accepted.
var requiredBuckets = [][]byte{eventsBucket, pendingBucket, monitorsBucket}

// Info describes a state database file.
type Info struct {
	// Size is the size of the database in bytes.
	Size int64
	// TxID is the ID of the last transaction the file holds.
	TxID int
	// Keys maps each top-level bucket to the number of keys it holds
	// (events, pending, monitors, actions, jobs, linkindex, ...).
	Keys map[string]int
}

// String summarizes i on one line, buckets sorted by name.
func (i Info) String() string {
	parts := make([]string, 0, len(i.Keys))
	for _, name := range slices.Sorted(maps.Keys(i.Keys)) {
		parts = append(parts, fmt.Sprintf("%s=%d", name, i.Keys[name]))
	}
	return fmt.Sprintf("%d bytes, transaction %d, keys: %s", i.Size, i.TxID, strings.Join(parts, " "))
}

// Snapshot writes a consistent copy of the database, as of one read-only
// transaction, to w while the database stays in use. begin, when not nil,
// is called with the exact number of bytes that follow before the first one
// is written (e.g. to set a Content-Length). The read transaction lasts as
// long as w takes: pages freed meanwhile are reused only after it ends, so
// the file may grow while a slow reader copies it.
func (db *DB) Snapshot(w io.Writer, begin func(size int64)) (int64, error) {
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if begin != nil {
			begin(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("snapshot %s: %w", db.Path(), err)
	}
	return n, nil
}

// SaveBackup creates the backup file dst from what write writes: to a
// temporary file beside dst, flushed to disk and checked with Verify, then
// renamed over dst, so that dst is either the previous file or a complete,
// valid backup. The parent directory is created (mode 0700) if absent; the
// file has mode 0600, since the journal holds user names and callback URLs.
func SaveBackup(dst string, write func(io.Writer) error) (Info, error) {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Info{}, fmt.Errorf("backup %s: %w", dst, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return Info{}, fmt.Errorf("backup %s: %w", dst, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return Info{}, fmt.Errorf("backup %s: %w", dst, err)
	}
	if err := tmp.Sync(); err != nil {
		return Info{}, fmt.Errorf("backup %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return Info{}, fmt.Errorf("backup %s: %w", dst, err)
	}
	info, err := Verify(tmp.Name())
	if err != nil {
		return Info{}, fmt.Errorf("backup %s: the copy is not valid: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return Info{}, fmt.Errorf("backup %s: %w", dst, err)
	}
	done = true
	return info, syncDir(dir)
}

// BackupFile writes a backup of the database file src, which no daemon may
// be using (ErrInUse otherwise), to dst (see SaveBackup). src is opened
// read-only and never modified.
func BackupFile(src, dst string) (Info, error) {
	if err := distinct(src, dst); err != nil {
		return Info{}, fmt.Errorf("backup %s: %w", dst, err)
	}
	bdb, err := openReadOnly(src)
	if err != nil {
		return Info{}, fmt.Errorf("backup %s: %w", src, err)
	}
	defer bdb.Close()
	return SaveBackup(dst, func(w io.Writer) error {
		return bdb.View(func(tx *bolt.Tx) error {
			_, err := tx.WriteTo(w)
			return err
		})
	})
}

// Verify checks that path is a cowbird state database: a complete bbolt
// file whose pages pass bbolt's consistency check and which has the
// journal and monitor buckets. It opens the file read-only and never
// modifies it; a file locked by a running daemon gives ErrInUse.
func Verify(path string) (Info, error) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return Info{}, fmt.Errorf("verify: %w", err)
	case !fi.Mode().IsRegular():
		return Info{}, fmt.Errorf("verify %s: not a regular file", path)
	case fi.Size() == 0:
		return Info{}, fmt.Errorf("verify %s: the file is empty", path)
	}
	bdb, err := openReadOnly(path)
	if err != nil {
		return Info{}, fmt.Errorf("verify %s: %w", path, err)
	}
	defer bdb.Close()
	var info Info
	err = bdb.View(func(tx *bolt.Tx) (err error) {
		// A page beyond the end of a truncated file would fault in the
		// memory map: check the size first, and turn any fault left into a
		// panic, then an error.
		if tx.Size() > fi.Size() {
			return fmt.Errorf("truncated: the database needs %d bytes, the file has %d", tx.Size(), fi.Size())
		}
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("corrupt: %v", r)
			}
		}()
		var problems []error
		for e := range tx.Check() {
			if len(problems) < 5 {
				problems = append(problems, e)
			}
		}
		if len(problems) > 0 {
			return fmt.Errorf("inconsistent pages: %w", errors.Join(problems...))
		}
		info = Info{Size: tx.Size(), TxID: tx.ID(), Keys: map[string]int{}}
		for _, name := range requiredBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("no %q bucket: not a cowbird state database", name)
			}
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			info.Keys[string(name)] = b.Stats().KeyN
			return nil
		})
	})
	if err != nil {
		return Info{}, fmt.Errorf("verify %s: %w", path, err)
	}
	return info, nil
}

// Restore installs the backup src as the database of dataDir, whose daemon
// must be stopped (ErrInUse otherwise). src is verified first, then copied
// beside the database, flushed and verified again, and renamed over it: the
// database is either the previous one or the backup, never a mix. The
// previous database, if any, is kept as cowbird.db.before-restore.
func Restore(src, dataDir string) (Info, error) {
	if dataDir == "" {
		return Info{}, errors.New("restore: no data directory")
	}
	dst := filepath.Join(dataDir, FileName)
	if err := distinct(src, dst); err != nil {
		return Info{}, fmt.Errorf("restore %s: %w", src, err)
	}
	if _, err := Verify(src); err != nil {
		return Info{}, fmt.Errorf("restore: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return Info{}, fmt.Errorf("restore: %w", err)
	}
	// Hold the lock a daemon would take on the current file until the new
	// one is in place: a daemon starting meanwhile waits, then fails.
	unlock, err := lockExisting(dst)
	if err != nil {
		return Info{}, fmt.Errorf("restore %s: %w", dst, err)
	}
	defer unlock()

	in, err := os.Open(src)
	if err != nil {
		return Info{}, fmt.Errorf("restore: %w", err)
	}
	defer in.Close()
	tmp := filepath.Join(dataDir, "."+FileName+".restore")
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return Info{}, fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp) // a no-op once renamed
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if err = errors.Join(err, out.Close()); err != nil {
		return Info{}, fmt.Errorf("restore: copy %s: %w", src, err)
	}
	info, err := Verify(tmp)
	if err != nil {
		return Info{}, fmt.Errorf("restore: the copy is not valid: %w", err)
	}
	if _, err := os.Lstat(dst); err == nil {
		keep := dst + restoredSuffix
		if err := os.Remove(keep); err != nil && !errors.Is(err, os.ErrNotExist) {
			return Info{}, fmt.Errorf("restore: %w", err)
		}
		if err := os.Link(dst, keep); err != nil {
			return Info{}, fmt.Errorf("restore: keep the previous database: %w", err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return Info{}, fmt.Errorf("restore: %w", err)
	}
	return info, syncDir(dataDir)
}

// openReadOnly opens a bbolt file read-only, with a shared lock: it waits
// about a second for a daemon's exclusive lock, then fails with ErrInUse.
func openReadOnly(path string) (*bolt.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	bdb, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w (stop it first, or take the backup through it)", ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("not a bbolt database: %w", err)
	}
	return bdb, nil
}

// lockExisting takes the exclusive lock a daemon takes (flock) on path, if
// the file exists, without waiting; the lock is held until unlock.
func lockExisting(path string) (unlock func(), err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (stop it first)", ErrInUse)
		}
		return nil, fmt.Errorf("lock: %w", err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// distinct checks that the backup and the database are two files: src
// exists, and dst is absent or another file.
func distinct(src, dst string) error {
	fs, err := os.Stat(src)
	if err != nil {
		return err
	}
	fd, err := os.Stat(dst)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case os.SameFile(fs, fd):
		return errors.New("the backup and the database are the same file")
	}
	return nil
}

// syncDir flushes a directory, so that a rename in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
