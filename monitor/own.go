package monitor

import (
	"io/fs"
	"os"
	"syscall"
	"time"
)

// changingTTL is how long a Changing record waits for its change: one
// whose change was never made (or whose event was lost in an overflow) is
// swept after that.
const changingTTL = 10 * time.Minute

// fileState is what Changing saw of a path: any change to the path
// (content, mode, owner, links, replacement) changes one of these.
type fileState struct {
	ino    uint64
	mode   fs.FileMode
	ctime  int64       // ns
	others fs.FileMode // the others bits the caller is setting
}

func stateOf(fi fs.FileInfo) (fileState, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileState{}, false
	}
	return fileState{ino: st.Ino, mode: fi.Mode(), ctime: st.Ctim.Nano()}, true
}

// inoOf returns the inode of a directory entry, 0 when unknown (gone).
func inoOf(d fs.DirEntry) uint64 {
	fi, err := d.Info()
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

func (s fileState) same(o fileState) bool {
	return s.ino == o.ino && s.mode == o.mode && s.ctime == o.ctime
}

// Changing tells the monitor that the caller is about to set the others
// bits of path (a chmod) in a watched tree to others: the first attribute
// event read once path has changed and has those bits is the caller's own
// and is not reported, however late it is read; the events of earlier
// changes, and of later ones (unless the kernel merged them into the
// caller's), are. A change that was not made leaves a record that only an
// identical change by someone else would consume (swept after changingTTL).
func (m *Monitor) Changing(path string, others fs.FileMode) {
	path, err := cleanPath(path)
	if err != nil {
		return // such a path cannot be watched either
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return // gone: nothing to change
	}
	st, ok := stateOf(fi)
	if !ok {
		return
	}
	st.others = others & 0o7
	m.mu.Lock()
	defer m.mu.Unlock()
	m.changing.put(path, st, time.Now())
}

// ownLocked reports whether an attribute event of path, which fi shows as
// it is now, is the one of a change announced by Changing; that record is
// then consumed. While path is as Changing saw it, the change is not made
// yet: the event is an earlier one's. A change to other others bits is
// someone else's.
func (m *Monitor) ownLocked(path string, fi fs.FileInfo) bool {
	before, _, ok := m.changing.get(path)
	if !ok {
		return false
	}
	now, ok := stateOf(fi)
	if !ok || now.same(before) {
		return false
	}
	m.changing.delete(path)
	return now.mode&0o7 == before.others
}
