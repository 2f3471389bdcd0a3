package geoserver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cowbird-go/cowbird/geoserver/geoservertest"
	"github.com/cowbird-go/cowbird/handlers"
)

// magpieWrites counts the requests that change Magpie: resources and user
// or group permissions.
func (e *env) magpieWrites() int {
	n := 0
	for _, r := range []string{
		"POST /resources", "DELETE /resources/{id}", "PATCH /permissions",
		"POST /users/{user}/resources/{id}/permissions", "PUT /users/{user}/resources/{id}/permissions",
		"DELETE /users/{user}/resources/{id}/permissions", "DELETE /users/{user}/resources/{id}/permissions/{perm}",
		"POST /groups/{group}/resources/{id}/permissions", "PUT /groups/{group}/resources/{id}/permissions",
		"DELETE /groups/{group}/resources/{id}/permissions", "DELETE /groups/{group}/resources/{id}/permissions/{perm}",
	} {
		n += e.mg.Hits(r)
	}
	return n
}

// gsWrites counts the requests to GeoServer other than GETs.
func (e *env) gsWrites() int {
	n := 0
	for _, r := range e.gs.Requests() {
		if r.Method != "GET" {
			n++
		}
	}
	return n
}

// resync calls ResyncPath on alice's datastore: it succeeds and never
// reports the monitor's waiting events covered (a .shp's chmod among them
// is not applied by a resync).
func (e *env) resync(ctx context.Context) {
	e.t.Helper()
	covered, err := e.h.ResyncPath(ctx, e.path(ds))
	if err != nil || covered {
		e.t.Fatalf("ResyncPath(datastore) = %v, %v; want false, nil", covered, err)
	}
}

// TestResyncPublishesUnwatchedShapefile: a shapefile written while nothing
// watched (no event delivered) is published by ResyncPath, with its Magpie
// layer resource and permissions as a created .shp gets them.
func TestResyncPublishesUnwatchedShapefile(t *testing.T) {
	ctx, e := aliceEnv(t)
	e.writeShapefile("roads", 0o640)
	e.chmod(ds+"/roads.shp", 0o664)

	e.resync(ctx)
	e.wait()
	if got := e.gs.Layers("alice"); !slices.Equal(got, []string{"roads"}) {
		t.Fatalf("layers = %v, want [roads]", got)
	}
	layerID, ok := e.mg.Lookup("geoserver", "alice", "roads")
	if !ok {
		t.Fatal("magpie layer resource missing")
	}
	if got, want := e.perms(layerID), rows(readableNames, "allow", "match"); !slices.Equal(got, want) {
		t.Errorf("layer permissions = %v, want %v", got, want)
	}
	for _, ext := range []string{".prj", ".dbf", ".shx"} {
		if got := e.mode(ds + "/roads" + ext); got != 0o644 {
			t.Errorf("%s mode = %o, want 644 (the .shp's others bits)", ext, got)
		}
	}
	if st := e.h.Status(); len(st.Failed) != 0 {
		t.Errorf("failed jobs: %+v", st.Failed)
	}
}

// TestResyncRemovesLayerWithoutShapefile: a published layer whose .shp
// went away unseen is removed from GeoServer by ResyncPath, with its
// companions and its Magpie layer resource; the workspace resource stays.
func TestResyncRemovesLayerWithoutShapefile(t *testing.T) {
	ctx, e := aliceEnv(t)
	e.writeShapefile("roads", 0o644)
	e.file(ctx, handlers.FileCreated, ds+"/roads.shp")
	e.wait()
	if _, ok := e.mg.Lookup("geoserver", "alice", "roads"); !ok || len(e.gs.Layers("alice")) != 1 {
		t.Fatalf("setup: roads not published (layers %v, magpie layer %v)", e.gs.Layers("alice"), ok)
	}
	if err := os.Remove(e.path(ds + "/roads.shp")); err != nil {
		t.Fatal(err)
	}

	e.resync(ctx)
	e.wait()
	if got := e.gs.Layers("alice"); len(got) != 0 {
		t.Errorf("layers = %v, want none", got)
	}
	if _, ok := e.mg.Lookup("geoserver", "alice", "roads"); ok {
		t.Error("magpie layer resource still there")
	}
	if _, ok := e.mg.Lookup("geoserver", "alice"); !ok {
		t.Error("magpie workspace resource removed with the layer")
	}
	if entries, err := os.ReadDir(e.path(ds)); err != nil || len(entries) != 0 {
		t.Errorf("datastore holds %v (%v), want the companions removed", entries, err)
	}
}

// TestResyncLeavesConsistentLayersAlone: a second ResyncPath sends no
// publish or remove to GeoServer and writes nothing to Magpie, even when
// the Magpie permissions and the .shp mode of a published layer were
// changed meanwhile (Magpie's change is kept, the file is left as is).
func TestResyncLeavesConsistentLayersAlone(t *testing.T) {
	ctx, e := aliceEnv(t)
	e.writeShapefile("roads", 0o644)
	e.resync(ctx)
	e.wait()
	layerID, ok := e.mg.Lookup("geoserver", "alice", "roads")
	if !ok {
		t.Fatal("setup: magpie layer resource missing")
	}

	e.resync(ctx) // right after: nothing to do
	e.wait()
	// Changed while cowbird was down: a Magpie grant, and the file's mode.
	if err := e.mg.SetUserPermission("alice", layerID, "transaction-allow-match"); err != nil {
		t.Fatal(err)
	}
	e.chmod(ds+"/roads.shp", 0o640)
	perms := e.perms(layerID)
	publishes, removes := e.client.Requests(OpPublishShapefile), e.client.Requests(OpRemoveShapefile)
	gsWrites, mpWrites := e.gsWrites(), e.magpieWrites()

	e.resync(ctx)
	e.wait()
	if got := e.client.Requests(OpPublishShapefile) - publishes; got != 0 {
		t.Errorf("%d publish requests, want 0", got)
	}
	if got := e.client.Requests(OpRemoveShapefile) - removes; got != 0 {
		t.Errorf("%d remove requests, want 0", got)
	}
	if got := e.gsWrites() - gsWrites; got != 0 {
		t.Errorf("%d GeoServer writes, want 0", got)
	}
	if got := e.magpieWrites() - mpWrites; got != 0 {
		t.Errorf("%d Magpie writes, want 0", got)
	}
	if got := e.perms(layerID); !slices.Equal(got, perms) {
		t.Errorf("layer permissions = %v, want %v (kept)", got, perms)
	}
	if got := e.mode(ds + "/roads.shp"); got != 0o640 {
		t.Errorf(".shp mode = %o, want 640 (kept)", got)
	}
	if got := e.gs.Layers("alice"); !slices.Equal(got, []string{"roads"}) {
		t.Errorf("layers = %v, want [roads]", got)
	}
}

// TestResyncAccountsForPendingJobs: the jobs still queued count as done.
// A shapefile whose publication is queued gets no second job and no
// Magpie write; a layer whose removal is queued but whose .shp came back
// (deleted, then uploaded again) is published again after the removal.
func TestResyncAccountsForPendingJobs(t *testing.T) {
	ctx, e := aliceEnv(t)
	e.writeShapefile("rivers", 0o644)
	e.file(ctx, handlers.FileCreated, ds+"/rivers.shp")
	e.wait()
	e.stop() // the jobs now stay queued

	e.writeShapefile("roads", 0o644)
	e.file(ctx, handlers.FileCreated, ds+"/roads.shp")
	if err := os.Remove(e.path(ds + "/rivers.shp")); err != nil {
		t.Fatal(err)
	}
	e.file(ctx, handlers.FileDeleted, ds+"/rivers.shp")
	e.writeShapefile("rivers", 0o644) // uploaded again, event lost
	before, mpWrites := map[string]bool{}, e.magpieWrites()
	for _, j := range e.h.Status().Pending {
		before[j.ID] = true
	}
	if len(before) != 2 {
		t.Fatalf("setup: %d pending jobs, want 2", len(before))
	}

	e.resync(ctx)
	var kinds []StepKind
	for _, j := range e.h.Status().Pending {
		if before[j.ID] {
			continue
		}
		for _, s := range j.Steps {
			kinds = append(kinds, s.Kind)
			if s.Shapefile != "rivers" {
				t.Errorf("new step %s for %q, want only rivers'", s.Kind, s.Shapefile)
			}
		}
	}
	if !slices.Equal(kinds, []StepKind{StepValidateShapefile, StepPublishShapefile}) {
		t.Errorf("new steps %v, want validate and publish of rivers", kinds)
	}
	if _, ok := e.mg.Lookup("geoserver", "alice", "rivers"); !ok {
		t.Error("rivers' magpie layer resource not created again")
	}
	if e.magpieWrites() == mpWrites {
		t.Error("no Magpie write for rivers")
	}

	e.restart()
	e.wait()
	if got := e.gs.Layers("alice"); !slices.Equal(got, []string{"rivers", "roads"}) {
		t.Errorf("layers = %v, want [rivers roads]", got)
	}
}

// TestResyncOtherPathsAndGeoServerDown: a path that is no datastore
// directory gives false, nil and does nothing; GeoServer not answering
// the listing gives an error, and nothing is queued nor written.
func TestResyncOtherPathsAndGeoServerDown(t *testing.T) {
	ctx, e := aliceEnv(t)
	e.writeShapefile("roads", 0o644)
	gsRequests, mpRequests := len(e.gs.Requests()), e.mc.Requests()

	for _, p := range []string{e.dir, e.path("alice"), e.path(ds + "/roads.shp"), e.path("alice/other"),
		e.path(ds + "/sub/x"), filepath.Join(t.TempDir(), "alice", datastoreDirName)} {
		covered, err := e.h.ResyncPath(ctx, p)
		if covered || err != nil {
			t.Errorf("ResyncPath(%s) = %v, %v; want false, nil", p, covered, err)
		}
	}
	if len(e.gs.Requests()) != gsRequests || e.mc.Requests() != mpRequests {
		t.Errorf("other paths sent %d GeoServer and %d Magpie requests, want none",
			len(e.gs.Requests())-gsRequests, e.mc.Requests()-mpRequests)
	}

	for _, down := range []struct {
		name string
		set  func(bool)
	}{
		{"down", e.gs.SetDown},
		{"503", func(on bool) {
			if on {
				e.gs.SetFault(geoservertest.RouteListFeatureTypes, geoservertest.Fault{Status: 503})
			} else {
				e.gs.ClearFaults()
			}
		}},
	} {
		down.set(true)
		covered, err := e.h.ResyncPath(ctx, e.path(ds))
		down.set(false)
		if covered || err == nil {
			t.Errorf("%s: ResyncPath = %v, %v; want false and an error", down.name, covered, err)
		}
		if st := e.h.Status(); len(st.Pending) != 0 {
			t.Errorf("%s: queued %+v, want nothing", down.name, st.Pending)
		}
		if e.mc.Requests() != mpRequests {
			t.Errorf("%s: %d Magpie requests, want none", down.name, e.mc.Requests()-mpRequests)
		}
	}
	e.resync(ctx) // GeoServer back
	e.wait()
	if got := e.gs.Layers("alice"); !slices.Equal(got, []string{"roads"}) {
		t.Errorf("layers once GeoServer answers = %v, want [roads]", got)
	}
}

// TestResyncSkipsSymlinkedShapefile: x.shp planted as a symlink to a file
// outside the datastore is neither followed nor published, by ResyncPath
// as by its created event: no job, no publish, no Magpie layer resource,
// the symlink and its target untouched.
func TestResyncSkipsSymlinkedShapefile(t *testing.T) {
	ctx, e := aliceEnv(t)
	target := filepath.Join(t.TempDir(), "secret.shp")
	if err := os.WriteFile(target, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{".shx", ".dbf", ".prj"} { // so validation would pass
		e.write(ds+"/x"+ext, 0o644)
	}
	if err := os.Symlink(target, e.path(ds+"/x.shp")); err != nil {
		t.Fatal(err)
	}

	check := func(how string) {
		t.Helper()
		e.wait()
		if got := e.client.Requests(OpPublishShapefile); got != 0 {
			t.Errorf("%s: %d publish requests, want 0", how, got)
		}
		if got := e.gs.Layers("alice"); len(got) != 0 {
			t.Errorf("%s: layers = %v, want none", how, got)
		}
		if st := e.h.Status(); len(st.Pending)+len(st.Failed) != 0 {
			t.Errorf("%s: jobs %+v, want none", how, st)
		}
		if _, ok := e.mg.Lookup("geoserver", "alice", "x"); ok {
			t.Errorf("%s: magpie layer resource created", how)
		}
		if fi, err := os.Lstat(e.path(ds + "/x.shp")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: x.shp no longer the symlink: %v, %v", how, fi, err)
		}
		if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: target changed: %v, %v", how, fi, err)
		}
	}
	e.resync(ctx)
	check("resync")
	e.file(ctx, handlers.FileCreated, ds+"/x.shp")
	check("created event")
	e.file(ctx, handlers.FileModified, ds+"/x.shp")
	check("modified event")
}

// A .shp whose companion is a symlink is not published: GeoServer would
// read what the link points at.
func TestSymlinkedCompanionNotPublished(t *testing.T) {
	ctx, e := aliceEnv(t)
	target := filepath.Join(t.TempDir(), "secret.dbf")
	if err := os.WriteFile(target, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{".shx", ".prj", ".shp"} {
		e.write(ds+"/y"+ext, 0o644)
	}
	if err := os.Symlink(target, e.path(ds+"/y.dbf")); err != nil {
		t.Fatal(err)
	}
	// Giving the companions the .shp's mode refuses the symlink too.
	err := e.h.HandleFile(ctx, handlers.FileEvent{Op: handlers.FileCreated, Path: e.path(ds + "/y.shp"), Handler: HandlerName})
	if err == nil || !strings.Contains(err.Error(), "symlink not followed") {
		t.Errorf("created event: %v, want the symlink refused", err)
	}
	e.waitFor("the validation to be retried", func() bool {
		p := e.h.Status().Pending
		return len(p) == 1 && p[0].Retries > 0
	})
	if got := e.client.Requests(OpPublishShapefile); got != 0 {
		t.Errorf("%d publish requests, want 0", got)
	}
	if got := e.gs.Layers("alice"); len(got) != 0 {
		t.Errorf("layers = %v, want none", got)
	}
}
