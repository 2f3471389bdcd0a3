package filesystem

import (
	"sync"
	"time"

	"github.com/cowbird-go/cowbird/safefs"
)

// DefaultIndexAge is how much older than a run's start a directory's ctime
// must be for the run to index it: a change made in the same timestamp
// tick as the listing could otherwise leave the ctime as it was.
const DefaultIndexAge = time.Second

// index remembers, across reconciles, the leaf directories (no
// subdirectory on either side) that a run found in sync, by the inode and
// ctime of the source directory and of the link directory mirroring it,
// both taken before they were listed. Adding, removing or renaming an
// entry changes its directory's ctime, so a later run that finds both
// unchanged knows both listings are unchanged: for a public directory it
// does two fstatat instead of opening and listing both; for a user's
// directory it lists neither, but still lstats each file for its mode and
// asks Magpie for its access, and goes the long way if any access changed.
type index struct {
	mu     sync.Mutex
	gen    uint64           // of the current or last full run
	leaves map[string]*leaf // by source directory, relative to wps_outputs_dir
}

// leaf is one recorded directory pair; it is never modified once stored.
type leaf struct {
	mirror   string // the link directory, relative to workspace_dir
	src, dst dirID
	files    int    // regular files in the source directory
	names    string // a user's directory: its regular files, "/"-separated,
	readable []bool // and whether each was readable (so linked)
	gen      uint64
}

// dirID identifies a directory's state: inode and status change time.
type dirID struct {
	ino   uint64
	ctime int64
}

func idOf(st safefs.Stat) dirID { return dirID{st.Ino, st.Ctime} }

// begin starts a run; a full run gets a new generation, with which every
// leaf it meets is marked, and sweep drops the others at its end.
func (x *index) begin(full bool) uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	if full {
		x.gen++
	}
	return x.gen
}

// get returns the leaf of the source directory src if it is mirrored by
// the link directory mirror, marking it seen in generation gen.
func (x *index) get(src, mirror string, gen uint64) *leaf {
	x.mu.Lock()
	defer x.mu.Unlock()
	l := x.leaves[src]
	if l == nil || l.mirror != mirror {
		return nil
	}
	if l.gen != gen {
		c := *l
		c.gen = gen
		l = &c
		x.leaves[src] = l
	}
	return l
}

// put records the leaf of the source directory src.
func (x *index) put(src string, l *leaf) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.leaves == nil {
		x.leaves = map[string]*leaf{}
	}
	x.leaves[src] = l
}

// drop forgets the source directory src (it changed).
func (x *index) drop(src string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.leaves, src)
}

// sweep forgets the leaves a full run of generation gen did not meet.
func (x *index) sweep(gen uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for k, l := range x.leaves {
		if l.gen != gen {
			delete(x.leaves, k)
		}
	}
}
