package filesystem

import (
	"context"
	"encoding/binary"
	"slices"
	"strings"
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

// leafVersion starts an encoded leaf; another value is ignored (as absent).
const leafVersion = 1

// encode is the leaf as stored: the version, then varints and
// length-prefixed strings, then the access bits (binary: JSON took most of
// the load time of a 90 000-leaf index).
func (l *leaf) encode() []byte {
	b := []byte{leafVersion}
	b = binary.AppendUvarint(b, uint64(len(l.mirror)))
	b = append(b, l.mirror...)
	b = binary.AppendUvarint(b, l.src.ino)
	b = binary.AppendVarint(b, l.src.ctime)
	b = binary.AppendUvarint(b, l.dst.ino)
	b = binary.AppendVarint(b, l.dst.ctime)
	b = binary.AppendUvarint(b, uint64(l.files))
	b = binary.AppendUvarint(b, uint64(len(l.names)))
	b = append(b, l.names...)
	b = binary.AppendUvarint(b, uint64(len(l.readable)))
	bits := make([]byte, (len(l.readable)+7)/8)
	for i, r := range l.readable {
		if r {
			bits[i/8] |= 1 << (i % 8)
		}
	}
	return append(b, bits...)
}

// decodeLeaf parses what encode made; ok is false for anything else.
func decodeLeaf(b []byte) (l leaf, ok bool) {
	d := decoder{b: b}
	if d.byte() != leafVersion {
		return leaf{}, false
	}
	l.mirror = d.string()
	l.src = dirID{d.uvarint(), d.varint()}
	l.dst = dirID{d.uvarint(), d.varint()}
	l.files = int(d.uvarint())
	l.names = d.string()
	n := d.uvarint()
	bits := d.bytes((n + 7) / 8)
	if d.bad || len(d.b) != 0 || n != uint64(countNames(l.names)) {
		return leaf{}, false
	}
	if n > 0 {
		l.readable = make([]bool, n)
		for i := range l.readable {
			l.readable[i] = bits[i/8]&(1<<(i%8)) != 0
		}
	}
	return l, true
}

// decoder reads an encoded leaf; bad is set on the first malformed field.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 { return readVarint(d, binary.Uvarint) }

func (d *decoder) varint() int64 { return readVarint(d, binary.Varint) }

// readVarint reads one varint with read (binary.Uvarint or binary.Varint).
func readVarint[T uint64 | int64](d *decoder, read func([]byte) (T, int)) T {
	v, n := read(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes(d.uvarint())) }

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
		if l, ok := decodeLeaf(v); ok { // else unreadable: as if absent
			l.gen = x.gen
			x.leaves[k] = &l
		}
	}
}

// countNames is the number of names in a "/"-separated list.
func countNames(names string) int {
	if names == "" {
		return 0
	}
	return strings.Count(names, "/") + 1
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
		put[k] = l.encode()
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
	x.markDirtyLocked(src)
}

// markDirtyLocked notes that src changed since the last save; x.mu is held.
func (x *index) markDirtyLocked(src string) {
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
			x.markDirtyLocked(k)
		}
	}
}

// leafID is the id of j's source directory, taken before its listing, when
// the pair may become a leaf of the index: a walked mirror that is open,
// and whole listings.
func leafID(j job) (dirID, bool) {
	if j.mirror == nil || !j.mirror.walked || j.only != "" || j.src == nil || j.mirrorDir == nil {
		return dirID{}, false
	}
	st, err := j.src.Stat()
	return idOf(st), err == nil
}

// record indexes j's directory pair, whose source had srcID, when the plan
// p found it a leaf in sync: no subdirectory, every file linked as it
// should be, nothing stale, others r-x on the mirror, and both directories
// old enough (see DefaultIndexAge).
func (r *run) record(j job, srcID dirID, p plan) {
	m := j.mirror
	if len(p.subdirs) > 0 || len(p.links) > 0 || p.changed || !p.wanted || m.mode&0o7 != 0o5 ||
		srcID.ctime >= r.indexBefore || m.id.ctime >= r.indexBefore {
		return
	}
	r.handler.index.put(j.src.Rel(), &leaf{mirror: m.rel, src: srcID, dst: m.id, files: p.sources,
		names: strings.Join(p.names, "/"), readable: slices.Clip(p.readable), gen: r.gen})
}

// indexed settles the subdirectory name of j, mirrored by n, from the
// index when neither directory changed since a run found them in sync: a
// public pair costs two fstatat; a user's pair the open of the source
// directory and an lstat and access check per file. It reports whether it
// did; when not, src is the source directory if it opened it. The error is
// Magpie's, fatal. When an access is not known yet, s is incomplete and
// nothing is done.
func (r *run) indexed(ctx context.Context, s *section, j job, name string, n *node) (done bool, src *safefs.Dir, err error) {
	l := r.handler.index.get(j.src.Join(name), n.rel, r.gen)
	if l == nil {
		return false, nil, nil
	}
	mst, err := j.mirrorDir.Lstat(name)
	if err != nil || !mst.IsDir() || idOf(mst) != l.dst {
		return false, nil, nil
	}
	if j.owner == "" {
		st, err := j.src.Lstat(name)
		if err != nil || !st.IsDir() || idOf(st) != l.src {
			return false, nil, nil
		}
	} else {
		inSync, src, err := r.indexedUserDir(ctx, s, j, name, l)
		if s.incomplete() && src != nil {
			src.Close()
			src = nil
		}
		if !inSync || err != nil || s.incomplete() {
			return false, src, err
		}
	}
	n.state, n.mode, n.id = isDir, mst.Mode, idOf(mst)
	r.mu.Lock()
	r.stats.Sources += l.files
	r.stats.Indexed++
	r.mu.Unlock()
	r.keep(n)
	j.mirror.content.Store(true)
	return true, nil, nil
}

// indexedUserDir checks the user directory name of j against its leaf l:
// the same directory, the same regular files, each with the same access
// (and its mode fixed if it differs). When not in sync, src is the source
// directory if it opened it. When an access is not known yet, s is
// incomplete and nothing is changed.
func (r *run) indexedUserDir(ctx context.Context, s *section, j job, name string, l *leaf) (inSync bool, src *safefs.Dir, err error) {
	if src, err = j.src.OpenDir(name); err != nil {
		return false, nil, nil
	}
	st, err := src.Stat()
	if err != nil || idOf(st) != l.src {
		return false, src, nil
	}
	dirRoute := r.access.dir(src.Rel())
	var modes []modeFix
	i := -1
	for f := range strings.SplitSeq(l.names, "/") {
		i++
		st, err := src.Lstat(f)
		if err != nil || !st.Mode.IsRegular() {
			return false, src, nil
		}
		read, err := r.readable(ctx, s, j.owner, dirRoute.file(f))
		if err != nil {
			src.Close()
			return false, nil, err
		}
		if s.incomplete() {
			continue // ask for the others too
		}
		if read != l.readable[i] {
			return false, src, nil // access changed: the links too
		}
		if st.Mode&0o7 != others(read) {
			modes = append(modes, modeFix{rel: src.Join(f), read: read})
		}
	}
	src.Close()
	if s.incomplete() {
		return false, nil, nil // nothing changed: the section runs again
	}
	for _, m := range modes {
		r.sourceMode(m.rel, m.read)
	}
	return true, nil, nil
}
