package filesystem

import "time"

// Op names one kind of change.
type Op string

// The changes a reconcile makes.
const (
	OpLink    Op = "link"    // create a missing hardlink
	OpReplace Op = "replace" // replace a link that points at another inode
	OpRemove  Op = "remove"  // remove a link or entry whose source is gone or unreadable
	OpMode    Op = "mode"    // fix the others bits of a source file or link directory
	OpMkdir   Op = "mkdir"   // create a link directory
	OpRmdir   Op = "rmdir"   // remove a link directory that mirrors nothing
	OpSymlink Op = "symlink" // create or fix a notebooks symlink
)

// Change is one difference between the desired and the actual state.
type Change struct {
	Op   Op     `json:"op"`
	Path string `json:"path"`
	// Source is the WPS output a link points at, for link and replace.
	Source string `json:"source,omitempty"`
}

// Stats reports what a reconcile found and did (or would do, in a dry run).
type Stats struct {
	Sources       int `json:"sources"`        // source files examined
	LinksCreated  int `json:"links_created"`  // missing links made
	LinksReplaced int `json:"links_replaced"` // links that pointed at another inode
	LinksRemoved  int `json:"links_removed"`  // links or entries removed
	ModesFixed    int `json:"modes_fixed"`    // others bits changed on sources and link directories
	DirsCreated   int `json:"dirs_created"`
	DirsRemoved   int `json:"dirs_removed"`
	Symlinks      int `json:"symlinks"` // notebooks symlinks created or fixed
	// Skipped counts sources not mirrored: unknown user id, invalid user
	// name, or a workspace that is missing or a symlink.
	Skipped int `json:"skipped"`
	Failed  int `json:"failed"` // changes that failed (see the error)
	// Indexed counts the directories whose listings were known unchanged
	// from the index of the previous runs.
	Indexed  int           `json:"indexed"`
	Duration time.Duration `json:"duration"`
	// Changes lists the difference, in dry runs only.
	Changes []Change `json:"changes,omitempty"`
}

// Add adds the figures of o to s: every counter, the duration, and o's
// changes after s's (several runs of one action).
func (s *Stats) Add(o Stats) {
	s.Sources += o.Sources
	s.LinksCreated += o.LinksCreated
	s.LinksReplaced += o.LinksReplaced
	s.LinksRemoved += o.LinksRemoved
	s.ModesFixed += o.ModesFixed
	s.DirsCreated += o.DirsCreated
	s.DirsRemoved += o.DirsRemoved
	s.Symlinks += o.Symlinks
	s.Skipped += o.Skipped
	s.Failed += o.Failed
	s.Indexed += o.Indexed
	s.Duration += o.Duration
	s.Changes = append(s.Changes, o.Changes...)
}

// maxDiff bounds the changes a dry run's details list.
const maxDiff = 1000

// Details is s as the details of an admin action run by handler: the
// figures, and for a dry run the changes it would make ("diff", at most
// 1000 of them, with "diff_truncated": true when there were more).
func (s Stats) Details(handler string, dryRun bool) map[string]any {
	details := map[string]any{
		"handler": handler, "dry_run": dryRun, "sources": s.Sources,
		"links_created": s.LinksCreated, "links_replaced": s.LinksReplaced, "links_removed": s.LinksRemoved,
		"modes_fixed": s.ModesFixed, "dirs_created": s.DirsCreated, "dirs_removed": s.DirsRemoved,
		"symlinks": s.Symlinks, "skipped": s.Skipped, "failed": s.Failed, "seconds": s.Duration.Seconds(),
	}
	if dryRun {
		diff := s.Changes
		if len(diff) > maxDiff {
			diff = diff[:maxDiff]
			details["diff_truncated"] = true
		}
		details["diff"] = diff
	}
	return details
}
