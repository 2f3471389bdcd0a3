package filesystem_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
	"github.com/cowbird-go/cowbird/store"
)

// TestIncrementalEqualsFromScratch builds random trees, reconciles them,
// then changes sources and damages the link trees at random; the
// incremental reconcile must leave exactly what a reconcile from scratch
// (link trees wiped) makes, its dry run must predict its counts, and a
// second run must find nothing to do. Run with one worker and with several.
func TestIncrementalEqualsFromScratch(t *testing.T) {
	for seed := range uint64(12) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			e := newEnv(t, []string{"alice", "bob", "carol", "dave"}, "alice", "bob", "carol")
			e.h = e.handler(e.cfg, nil, filesystem.Options{Workers: []int{1, 3, 16}[seed%3], IndexAge: indexAge})
			must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
			must(t, e.mg.SetUserPermission("bob", e.route("weaver"), allow))
			must(t, e.mg.SetUserPermission("carol", e.route("raven/users/"+fmt.Sprint(e.ids["carol"])+"/job1"), allow))

			var sources []string
			for range 60 + rng.IntN(60) {
				sources = append(sources, e.file(randomSource(rng, e), randomMode(rng)))
			}
			e.reconcile(filesystem.Scope{})
			age() // then a run indexes the directories it finds in sync
			if st := e.reconcile(filesystem.Scope{}); changes(st) != 0 {
				t.Fatalf("second run changed things: %+v", st)
			}

			// Sources come and go.
			for range 10 {
				sources = append(sources, e.file(randomSource(rng, e), randomMode(rng)))
			}
			for range 10 {
				i := rng.IntN(len(sources))
				must(t, os.RemoveAll(sources[i]))
				if rng.IntN(3) == 0 && filepath.Dir(sources[i]) != e.wps { // sometimes the whole job
					must(t, os.RemoveAll(filepath.Dir(sources[i])))
				}
			}
			// The link trees and modes drift.
			links := linkTree(t, e)
			for range 12 {
				damage(t, rng, e, links[rng.IntN(len(links))])
			}
			for _, s := range sources[:5] {
				if exists(s) {
					must(t, os.Chmod(s, randomMode(rng)))
				}
			}
			// Access changes (without a webhook): indexed directories of
			// bob's and alice's must notice.
			if seed%2 == 0 {
				must(t, e.mg.DeleteUserPermission("bob", e.route("weaver"), "read"))
				must(t, e.mg.SetUserPermission("alice", e.route("raven"), "read-deny-recursive"))
			}

			before := snapshot(t, e.root)
			dry, err := e.h.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{DryRun: true})
			must(t, err)
			if d := diffSnapshots(before, snapshot(t, e.root)); len(d) > 0 {
				t.Fatalf("dry run changed:\n%s", strings.Join(d, "\n"))
			}
			inc := e.reconcile(filesystem.Scope{})
			if inc.Indexed == 0 {
				t.Error("no directory came from the index")
			}
			if !equalStats(dry, inc) || len(dry.Changes) != changes(inc) {
				t.Errorf("dry run %+v (%d changes), real run %+v", dry, len(dry.Changes), inc)
			}
			got := snapshot(t, e.root)
			if again := e.reconcile(filesystem.Scope{}); !equalStats(again, filesystem.Stats{Sources: again.Sources, Skipped: again.Skipped}) {
				t.Errorf("second run changed things: %+v", again)
			}
			// Link roots stay once made (the public one may be a volume).
			for _, root := range []string{e.pub(""), filepath.Join(e.ws, "alice", "wps_outputs"),
				filepath.Join(e.ws, "bob", "wps_outputs"), filepath.Join(e.ws, "carol", "wps_outputs")} {
				ents, _ := os.ReadDir(root)
				for _, ent := range ents {
					must(t, os.RemoveAll(filepath.Join(root, ent.Name())))
				}
			}
			e.reconcile(filesystem.Scope{})
			if d := diffSnapshots(snapshot(t, e.root), got); len(d) > 0 {
				t.Errorf("incremental result differs from a reconcile from scratch:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

// indexAge is the handler's IndexAge in tests: short, so that age() can
// make every directory old enough to be indexed.
const indexAge = 20 * time.Millisecond

// age waits until the ctimes of everything made so far are older than
// indexAge (the index trusts only directories unchanged for that long).
func age() { time.Sleep(2 * indexAge) }

// changes is the number of changes a run counted.
func changes(s filesystem.Stats) int {
	return s.LinksCreated + s.LinksReplaced + s.LinksRemoved + s.ModesFixed + s.DirsCreated + s.DirsRemoved + s.Symlinks
}

func randomMode(rng *rand.Rand) os.FileMode {
	return []os.FileMode{0o600, 0o640, 0o644, 0o664, 0o666}[rng.IntN(5)]
}

// randomSource is a random WPS output path: public, a user's (alice, bob,
// carol, dave without workspace, or an unknown id), or public under users/.
func randomSource(rng *rand.Rand, e *env) string {
	bird := []string{"weaver", "raven", "bird-x"}[rng.IntN(3)]
	sub := fmt.Sprintf("job%d/%sf%d.nc", rng.IntN(4), []string{"", "d/", "d/e/"}[rng.IntN(3)], rng.IntN(6))
	switch rng.IntN(8) {
	case 0, 1, 2:
		return filepath.Join(bird, "public", sub)
	case 3:
		return fmt.Sprintf("top%d.txt", rng.IntN(3))
	case 4:
		return filepath.Join(bird, "users", "nobody", sub)
	case 5:
		return filepath.Join(bird, "users", "999", sub)
	}
	return e.userFile(bird, []string{"alice", "bob", "carol", "dave"}[rng.IntN(4)], sub)
}

// linkTree lists every entry under the link trees.
func linkTree(t *testing.T, e *env) []string {
	var out []string
	for _, root := range []string{e.pub(""), filepath.Join(e.ws, "alice", "wps_outputs"), filepath.Join(e.ws, "bob", "wps_outputs"), filepath.Join(e.ws, "carol", "wps_outputs")} {
		if !exists(root) {
			continue
		}
		must(t, filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
			if err == nil && p != root {
				out = append(out, p)
			}
			return err
		}))
	}
	return out
}

// damage changes the link-tree entry p: removed, replaced by a copy or a
// planted symlink, a stale file or directory beside it, a wrong mode.
func damage(t *testing.T, rng *rand.Rand, e *env, p string) {
	fi, err := os.Lstat(p)
	if err != nil {
		return // under an entry damaged before
	}
	switch rng.IntN(5) {
	case 0:
		must(t, os.RemoveAll(p))
	case 1:
		must(t, os.RemoveAll(p))
		must(t, os.WriteFile(p, []byte("copy"), 0o644))
	case 2:
		must(t, os.RemoveAll(p))
		must(t, os.Symlink(e.root, p))
	case 3:
		dir := filepath.Dir(p)
		if fi.IsDir() {
			dir = p
		}
		must(t, os.MkdirAll(filepath.Join(dir, "stale", "deeper"), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "stale", "deeper", "x"), nil, 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "stale.txt"), nil, 0o644))
	case 4:
		if fi.IsDir() {
			must(t, os.Chmod(p, 0o750))
		}
	}
}

// TestWideTreeWithFewDescriptors reconciles directories with thousands of
// subdirectories under a low open-file limit: descriptors are opened one
// subdirectory at a time, so their number is bounded by the pool size times
// the depth, not by the width of the tree.
func TestWideTreeWithFewDescriptors(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	const jobs = 1500
	for i := range jobs {
		e.file(fmt.Sprintf("weaver/public/job%d/out.nc", i), 0o644)
		e.file(e.userFile("weaver", "alice", fmt.Sprintf("job%d/out.nc", i)), 0o664)
	}
	var lim syscall.Rlimit
	must(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	low := lim
	low.Cur = 256
	must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	st, err := e.h.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{})
	must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	must(t, err)
	if st.LinksCreated != 2*jobs {
		t.Errorf("stats %+v, want %d links", st, 2*jobs)
	}
	assertLinked(t, filepath.Join(e.wps, "weaver/public/job1499/out.nc"), e.pub("weaver/public/job1499/out.nc"))
	assertLinked(t, filepath.Join(e.wps, e.userFile("weaver", "alice", "job7/out.nc")), e.userLink("alice", "weaver", "job7/out.nc"))
}

// TestIndexedDirectoriesStillConverge checks the changes an indexed leaf
// must still notice: a new source file, a source mode changed (which does
// not touch the directory), access revoked in Magpie, a removed link; and
// that a negative IndexAge disables the index.
func TestIndexedDirectoriesStillConverge(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	e.h = e.handler(e.cfg, nil, filesystem.Options{Workers: 2, IndexAge: indexAge})
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	for i := range 3 {
		e.file(fmt.Sprintf("weaver/public/job%d/out.nc", i), 0o644)
		e.file(e.userFile("weaver", "alice", fmt.Sprintf("job%d/out.nc", i)), 0o664)
	}
	e.reconcile(filesystem.Scope{})
	age()
	e.reconcile(filesystem.Scope{}) // indexes the 6 leaves
	if st := e.reconcile(filesystem.Scope{}); st.Indexed != 6 || changes(st) != 0 || st.Sources != 6 {
		t.Fatalf("stats %+v, want 6 directories from the index and no change", st)
	}

	added := e.file("weaver/public/job0/new.nc", 0o644)
	chmodded := filepath.Join(e.wps, e.userFile("weaver", "alice", "job1/out.nc"))
	must(t, os.Chmod(chmodded, 0o660))
	must(t, os.Remove(e.pub("weaver/public/job2/out.nc")))
	st := e.reconcile(filesystem.Scope{})
	// public job1 and alice's three (a file's mode does not change its
	// directory: it is checked from the index's names).
	if st.Indexed != 4 || st.LinksCreated != 2 || st.ModesFixed != 1 {
		t.Errorf("stats %+v, want 4 directories from the index, 2 links made, 1 mode fixed", st)
	}
	assertLinked(t, added, e.pub("weaver/public/job0/new.nc"))
	if mode(t, chmodded) != 0o664 {
		t.Errorf("mode %o, want 664", mode(t, chmodded))
	}

	age()
	e.reconcile(filesystem.Scope{}) // indexes job0 and job2 again
	must(t, e.mg.DeleteUserPermission("alice", e.routeID, "read"))
	st = e.reconcile(filesystem.Scope{})
	if st.LinksRemoved != 3 || st.ModesFixed != 3 {
		t.Errorf("after revoking: %+v, want alice's 3 links removed and 3 modes fixed", st)
	}
	assertAbsent(t, e.userLink("alice", "weaver", "job0"))

	off := e.handler(e.cfg, nil, filesystem.Options{Workers: 2, IndexAge: -1})
	for range 2 {
		st, err := off.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{})
		must(t, err)
		if st.Indexed != 0 {
			t.Errorf("index disabled, but %d directories came from it", st.Indexed)
		}
	}
}

// TestIndexSurvivesRestart saves the index in the state database: a new
// handler on the same database (a restarted daemon) reconciles from it at
// once, and still sees what changed while it was "down".
func TestIndexSurvivesRestart(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, allow))
	for i := range 3 {
		e.file(fmt.Sprintf("weaver/public/job%d/out.nc", i), 0o644)
		e.file(e.userFile("weaver", "alice", fmt.Sprintf("job%d/out.nc", i)), 0o664)
	}
	dataDir := t.TempDir()
	db, err := store.Open(dataDir)
	must(t, err)
	h := e.handler(e.cfg, nil, filesystem.Options{Workers: 2, IndexAge: indexAge, IndexStore: db})
	e.h = h
	e.reconcile(filesystem.Scope{})
	age()
	e.reconcile(filesystem.Scope{}) // indexes and saves the 6 leaves
	must(t, h.Close())
	must(t, db.Close())

	// While stopped: a new file in an indexed directory.
	added := e.file("weaver/public/job1/new.nc", 0o644)

	db, err = store.Open(dataDir)
	must(t, err)
	t.Cleanup(func() { db.Close() })
	e.h = e.handler(e.cfg, nil, filesystem.Options{Workers: 2, IndexAge: indexAge, IndexStore: db})
	st := e.reconcile(filesystem.Scope{})
	if st.Indexed != 5 || st.LinksCreated != 1 || changes(st) != 1 {
		t.Errorf("first run after the restart: %+v, want 5 directories from the stored index and the new link", st)
	}
	assertLinked(t, added, e.pub("weaver/public/job1/new.nc"))
}

// TestPublicLinksWithoutMagpie: when Magpie cannot list the users, a full
// reconcile still links the public outputs, leaves the users' links as they
// are, and reports the error.
func TestPublicLinksWithoutMagpie(t *testing.T) {
	e := newEnv(t, []string{"alice"}, "alice")
	must(t, e.mg.SetUserPermission("alice", e.routeID, "read-allow-recursive"))
	e.file(e.userFile("finch", "alice", "a.nc"), 0o644)
	e.reconcile(filesystem.Scope{})
	userLink := filepath.Join(e.ws, "alice", "wps_outputs", "finch", "a.nc")
	if _, err := os.Lstat(userLink); err != nil {
		t.Fatalf("user link not made while Magpie answers: %v", err)
	}
	e.file("hummingbird/report.txt", 0o644)
	e.mg.Inject("*", magpietest.Fault{Status: 503, Times: 1000})
	_, err := e.h.Reconcile(ctx(t), filesystem.Scope{}, filesystem.ReconcileOptions{})
	if err == nil || !handlers.IsTransient(err) {
		t.Fatalf("reconcile without Magpie = %v, want a transient error", err)
	}
	if _, err := os.Lstat(filepath.Join(e.ws, "public", "wps_outputs", "hummingbird", "report.txt")); err != nil {
		t.Errorf("public link not made without Magpie: %v", err)
	}
	if _, err := os.Lstat(userLink); err != nil {
		t.Errorf("user link removed while Magpie was down: %v", err)
	}
}
