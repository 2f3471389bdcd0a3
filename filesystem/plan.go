package filesystem

import (
	"context"
	"errors"
	"io/fs"
	"iter"
	"os"

	"github.com/cowbird-go/cowbird/safefs"
)

// plan is what one directory pair needs, decided from its two listings.
type plan struct {
	stale   []safefs.DirEntry // mirror entries that mirror nothing
	modes   []modeFix         // user files whose others bits differ from their access
	links   []pendingLink     // links to make or replace
	subdirs []subdir          // source subdirectories, jobs of their own
	wanted  bool              // a link is wanted in the mirror
	changed bool              // a stale entry or an unlinkable source: not a leaf in sync

	failed           []failure // changes found failed while planning (reported by apply)
	sources, skipped int       // source files examined; of which not mirrored
	// names are a user's files, and readable whether each may be read
	// (so linked), for the index.
	names    []string
	readable []bool
}

// pendingLink is a link to make: the entry name, its source (relative to
// wps_outputs_dir), and what is in its place.
type pendingLink struct {
	name, src   string
	exists, dir bool
}

// failure is a change that failed (see run.fail).
type failure struct {
	op   Op
	path string
	err  error
}

// modeFix is a user source file (relative to wps_outputs_dir) whose others
// bits are to be r-- when read, else ---.
type modeFix struct {
	rel  string
	read bool
}

// plan compares the sorted listings of j's source directory and of its
// mirror, entry by entry, and decides what each entry needs. It changes
// nothing: when an access it needs is not known yet, s is incomplete and
// the plan is to be made again once it is.
func (r *run) plan(ctx context.Context, s *section, j job, srcEnts, mirrorEnts []safefs.DirEntry) (plan, error) {
	var p plan
	var dirRoute route // the access route of j's user directory
	if j.owner != "" && j.src != nil {
		dirRoute = r.access.dir(j.src.Rel())
	}
	for e, m := range pairs(srcEnts, mirrorEnts) {
		switch {
		case e == nil:
			p.markStale(*m)
		case e.IsDir():
			p.subdirs = append(p.subdirs, subdir{name: e.Name, mirrored: m})
		case e.Type != 0: // symlinks and specials are not linked
			p.changed = true // not indexed: its type is not in a leaf
			if m != nil {
				p.markStale(*m)
			}
		case j.mirror == nil:
			p.sources++
			p.skipped++
		default:
			p.sources++
			if err := r.planFile(ctx, s, j, dirRoute, *e, m, &p); err != nil {
				return p, err
			}
		}
	}
	return p, nil
}

// pairs yields the entries of two listings sorted by name side by side:
// the entries of one name, or one of them and nil when the other listing
// has no entry of that name.
func pairs(a, b []safefs.DirEntry) iter.Seq2[*safefs.DirEntry, *safefs.DirEntry] {
	return func(yield func(*safefs.DirEntry, *safefs.DirEntry) bool) {
		i, k := 0, 0
		for i < len(a) || k < len(b) {
			var x, y *safefs.DirEntry
			switch {
			case k == len(b) || i < len(a) && a[i].Name < b[k].Name:
				x, i = &a[i], i+1
			case i == len(a) || b[k].Name < a[i].Name:
				y, k = &b[k], k+1
			default:
				x, y, i, k = &a[i], &b[k], i+1, k+1
			}
			if !yield(x, y) {
				return
			}
		}
	}
}

// markStale plans the removal of the mirror entry e.
func (p *plan) markStale(e safefs.DirEntry) {
	p.changed = true
	p.stale = append(p.stale, e)
}

// planFile decides what the source file s of j needs, and its mirror entry
// m (nil when missing).
func (r *run) planFile(ctx context.Context, sec *section, j job, dirRoute route, s safefs.DirEntry, m *safefs.DirEntry, p *plan) error {
	ino, link, fixMode, err := r.want(ctx, sec, j, dirRoute, s, p)
	if err != nil {
		return err
	}
	if fixMode {
		p.modes = append(p.modes, modeFix{rel: j.src.Join(s.Name), read: link})
	}
	if j.owner != "" {
		p.names, p.readable = append(p.names, s.Name), append(p.readable, link)
	}
	switch {
	case !link:
		if m != nil {
			p.markStale(*m)
		}
	case m == nil || m.Type != 0 || m.Ino != ino:
		p.links = append(p.links, pendingLink{name: s.Name, src: j.src.Join(s.Name),
			exists: m != nil, dir: m != nil && m.IsDir()})
		p.wanted = true
	default:
		p.wanted = true
	}
	return nil
}

// want reports whether the source file s of j is to be linked, with its
// inode, and whether its others bits differ from those its access gives: a
// user file's are r-- when the user may read it, else --- (write is never
// granted); a public file is always linked, its mode left as it is. A
// failed lstat is added to p.
func (r *run) want(ctx context.Context, sec *section, j job, dirRoute route, s safefs.DirEntry, p *plan) (ino uint64, link, fixMode bool, err error) {
	if j.owner == "" {
		return s.Ino, true, false, nil
	}
	st, err := j.src.Lstat(s.Name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, false, false, nil // removed since it was listed
	case err != nil:
		p.failed = append(p.failed, failure{OpMode, r.srcPath(j.src.Join(s.Name)), err})
		return 0, false, false, nil
	case !st.Mode.IsRegular():
		return 0, false, false, nil // replaced since it was listed
	}
	read, err := r.readable(ctx, sec, j.owner, dirRoute.file(s.Name))
	if err != nil {
		return 0, false, false, err
	}
	return st.Ino, read, st.Mode&0o7 != others(read), nil
}

// others is the others bits of a user file readable or not (write is
// never granted).
func others(read bool) os.FileMode {
	if read {
		return 0o4
	}
	return 0
}
