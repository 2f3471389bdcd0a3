package filesystem_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/filesystem"
)

func TestStatsAdd(t *testing.T) {
	a := filesystem.Stats{Sources: 1, LinksCreated: 2, LinksReplaced: 3, LinksRemoved: 4, ModesFixed: 5, DirsCreated: 6,
		DirsRemoved: 7, Symlinks: 8, Skipped: 9, Failed: 10, Indexed: 11, Duration: time.Second,
		Changes: []filesystem.Change{{Op: filesystem.OpLink, Path: "/a"}}}
	var total filesystem.Stats
	total.Add(a)
	total.Add(a)
	want := filesystem.Stats{Sources: 2, LinksCreated: 4, LinksReplaced: 6, LinksRemoved: 8, ModesFixed: 10, DirsCreated: 12,
		DirsRemoved: 14, Symlinks: 16, Skipped: 18, Failed: 20, Indexed: 22, Duration: 2 * time.Second,
		Changes: []filesystem.Change{{Op: filesystem.OpLink, Path: "/a"}, {Op: filesystem.OpLink, Path: "/a"}}}
	if fmt.Sprint(total) != fmt.Sprint(want) {
		t.Errorf("sum %+v, want %+v", total, want)
	}
}

func TestStatsDetails(t *testing.T) {
	st := filesystem.Stats{Sources: 1, LinksCreated: 2, LinksReplaced: 3, LinksRemoved: 4, ModesFixed: 5, DirsCreated: 6,
		DirsRemoved: 7, Symlinks: 8, Skipped: 9, Failed: 10, Indexed: 11, Duration: 1500 * time.Millisecond}
	for range 1001 {
		st.Changes = append(st.Changes, filesystem.Change{Op: filesystem.OpMode, Path: "/x"})
	}
	figures := map[string]any{"handler": "FileSystem", "dry_run": false, "sources": 1, "links_created": 2, "links_replaced": 3,
		"links_removed": 4, "modes_fixed": 5, "dirs_created": 6, "dirs_removed": 7, "symlinks": 8, "skipped": 9,
		"failed": 10, "seconds": 1.5}

	t.Run("run", func(t *testing.T) {
		if got := st.Details("FileSystem", false); !maps.Equal(got, figures) {
			t.Errorf("details %v, want %v", got, figures)
		}
	})
	t.Run("dry run, truncated", func(t *testing.T) {
		got := st.Details("FileSystem", true)
		diff, _ := got["diff"].([]filesystem.Change)
		if len(diff) != 1000 || got["diff_truncated"] != true {
			t.Errorf("diff of %d changes, diff_truncated %v; want 1000, true", len(diff), got["diff_truncated"])
		}
		delete(got, "diff")
		delete(got, "diff_truncated")
		want := maps.Clone(figures)
		want["dry_run"] = true
		if !maps.Equal(got, want) {
			t.Errorf("details %v, want %v", got, want)
		}
	})
	t.Run("dry run", func(t *testing.T) {
		small := st
		small.Changes = st.Changes[:2]
		got := small.Details("FileSystem", true)
		if diff, _ := got["diff"].([]filesystem.Change); !slices.Equal(diff, small.Changes) {
			t.Errorf("diff %v, want %v", diff, small.Changes)
		}
		if _, ok := got["diff_truncated"]; ok {
			t.Error("diff_truncated set for a complete diff")
		}
	})
}
