package filesystem

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

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
//
// With an IndexStore the index is saved after each reconcile (the entries
// that changed) and loaded before the first, so that the reconcile after a
// restart uses it too: what changed while the daemon was down has a new
// ctime.
type index struct {
	mu     sync.Mutex
	gen    uint64           // of the current or last full run
	leaves map[string]*leaf // by source directory, relative to wps_outputs_dir
	dirty  map[string]bool  // changed since the last save (stored, or deleted if not in leaves)
	loaded bool
}

// IndexStore keeps the index across restarts; *store.DB satisfies it. The
// values are the index's own encoding.
type IndexStore interface {
	LinkIndex(ctx context.Context) (map[string][]byte, error)
	UpdateLinkIndex(ctx context.Context, put map[string][]byte, del []string) error
}

// storedLeaf is a leaf as stored: inode and ctime pairs, names, access.
type storedLeaf struct {
	Mirror   string   `json:"m"`
	Src      [2]int64 `json:"s"`
	Dst      [2]int64 `json:"d"`
	Files    int      `json:"f"`
	Names    string   `json:"n,omitempty"`
	Readable []bool   `json:"r,omitempty"`
}

// load reads the stored index once; a failure only costs speed.
func (x *index) load(ctx context.Context, st IndexStore, log *logrus.Entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.loaded || st == nil {
		return
	}
	x.loaded = true
	data, err := st.LinkIndex(ctx)
	if err != nil {
		log.WithError(err).Warn("link index not loaded: the next reconcile lists every directory")
		return
	}
	if x.leaves == nil {
		x.leaves = make(map[string]*leaf, len(data))
	}
	for k, v := range data {
		var s storedLeaf
		if json.Unmarshal(v, &s) != nil || len(s.Readable) != countNames(s.Names) {
			continue // unreadable: as if absent
		}
		x.leaves[k] = &leaf{mirror: s.Mirror, src: dirID{uint64(s.Src[0]), s.Src[1]},
			dst: dirID{uint64(s.Dst[0]), s.Dst[1]}, files: s.Files, names: s.Names, readable: s.Readable, gen: x.gen}
	}
}

// countNames is the number of names in a "/"-separated list.
func countNames(names string) int {
	if names == "" {
		return 0
	}
	n := 1
	for i := range len(names) {
		if names[i] == '/' {
			n++
		}
	}
	return n
}

// save stores the entries changed since the last save; on failure they
// stay to save next time.
func (x *index) save(ctx context.Context, st IndexStore, log *logrus.Entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if st == nil || len(x.dirty) == 0 {
		return
	}
	put := map[string][]byte{}
	var del []string
	for k := range x.dirty {
		l := x.leaves[k]
		if l == nil {
			del = append(del, k)
			continue
		}
		v, err := json.Marshal(storedLeaf{Mirror: l.mirror, Src: [2]int64{int64(l.src.ino), l.src.ctime},
			Dst: [2]int64{int64(l.dst.ino), l.dst.ctime}, Files: l.files, Names: l.names, Readable: l.readable})
		if err != nil {
			continue
		}
		put[k] = v
	}
	if err := st.UpdateLinkIndex(ctx, put, del); err != nil {
		log.WithError(err).Warn("link index not saved: it is kept in memory and saved with the next reconcile")
		return
	}
	clear(x.dirty)
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
	x.markDirty(src)
}

// markDirty notes that src changed since the last save.
func (x *index) markDirty(src string) {
	if x.dirty == nil {
		x.dirty = map[string]bool{}
	}
	x.dirty[src] = true
}

// sweep forgets the leaves a full run of generation gen did not meet.
func (x *index) sweep(gen uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for k, l := range x.leaves {
		if l.gen != gen {
			delete(x.leaves, k)
			x.markDirty(k)
		}
	}
}
