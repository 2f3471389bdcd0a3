package geoserver

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/cowbird-go/cowbird/geoserver/geoservertest"
	"github.com/cowbird-go/cowbird/handlers"
)

// explain runs ExplainUser for alice and returns her facts by check.
func (e *env) explain(ctx context.Context) map[string]Fact {
	e.t.Helper()
	facts, err := e.h.ExplainUser(ctx, "alice")
	if err != nil {
		e.t.Fatalf("ExplainUser = %v", err)
	}
	got := map[string]Fact{}
	for _, f := range facts {
		if _, dup := got[f.Check]; dup {
			e.t.Errorf("fact %q twice: %+v", f.Check, facts)
		}
		if f.OK != (f.Fix == "") {
			e.t.Errorf("fact %+v: a fix exactly when not ok", f)
		}
		got[f.Check] = f
	}
	return got
}

// allOK fails the test unless every fact of alice is ok.
func (e *env) allOK(ctx context.Context, when string) map[string]Fact {
	e.t.Helper()
	got := e.explain(ctx)
	for _, f := range got {
		if !f.OK {
			e.t.Errorf("%s: %+v", when, f)
		}
	}
	return got
}

// want fails the test unless fact check is ok as wanted and its detail
// and fix hold the given texts.
func want(t *testing.T, got map[string]Fact, check string, ok bool, detail, fix []string) {
	t.Helper()
	f, found := got[check]
	if !found {
		t.Errorf("no fact %q in %+v", check, got)
		return
	}
	if f.OK != ok {
		t.Errorf("fact %q ok = %v, want %v: %+v", check, f.OK, ok, f)
	}
	for _, d := range detail {
		if !strings.Contains(f.Detail, d) {
			t.Errorf("fact %q detail lacks %q: %s", check, d, f.Detail)
		}
	}
	for _, x := range fix {
		if !strings.Contains(f.Fix, x) {
			t.Errorf("fact %q fix lacks %q: %s", check, x, f.Fix)
		}
	}
}

// sh runs the fix's command in a shell (its # comment included).
func sh(t *testing.T, fix string) {
	t.Helper()
	if out, err := exec.Command("sh", "-c", fix).CombinedOutput(); err != nil {
		t.Fatalf("sh -c %q: %v %s", fix, err, out)
	}
}

// TestExplainUser: the facts of a sound workspace are all ok; a layer
// missing in GeoServer, a .shp whose mode differs from the Magpie layer
// permissions, a datastore whose mode differs from the workspace
// permissions, a layer without a .shp and a failed GeoServer job are each
// reported with a fix, and the fixes that are commands fix them (through
// the monitor, as the handler learns of a user's change).
func TestExplainUser(t *testing.T) {
	ctx, e := aliceEnv(t)
	e.writeShapefile("roads", 0o664)
	e.file(ctx, handlers.FileCreated, ds+"/roads.shp")
	e.wait()

	got := e.allOK(ctx, "sound workspace")
	want(t, got, "datastore dir", true, []string{e.path(ds) + ": a real directory, mode drwxr-xrwx, 1 shapefile"}, nil)
	want(t, got, "geoserver workspace", true, []string{"alice exists in GeoServer"}, nil)
	want(t, got, "geoserver datastore", true, []string{"shapefile_datastore_alice in workspace alice, url file:///user_workspaces/alice/shapefile_datastore"}, nil)
	want(t, got, "layers", true, []string{"1 shapefile in " + e.path(ds) + ", all published in GeoServer: roads"}, nil)
	want(t, got, "stale layers", true, nil, nil)
	want(t, got, "datastore mode", true, []string{"others rwx and Magpie gives alice read allow and write allow on workspace alice", "they agree"}, nil)
	want(t, got, "layer modes", true, []string{"all 1 .shp agree"}, nil)
	want(t, got, "geoserver jobs", true, []string{"none pending or failed for alice"}, nil)
	handled := e.runMonitor()

	// The layer is gone from GeoServer (removed there by hand, or its
	// event lost): its fix re-creates the .shp in place, which publishes it.
	if err := e.client.RemoveShapefile(ctx, "alice", "roads"); err != nil {
		t.Fatal(err)
	}
	got = e.explain(ctx)
	want(t, got, "layers", false, []string{"1 shapefile in " + e.path(ds) + ", 0 published; not published: roads (GeoServer has no feature type roads)"},
		[]string{"cd " + e.path(ds) + " && cp -p roads.shp roads.shp.tmp && mv -f roads.shp.tmp roads.shp  # a .shp created in the datastore is published"})
	sh(t, got["layers"].Fix)
	until(t, handled, "roads published again", func() bool { return slices.Equal(e.gs.Layers("alice"), []string{"roads"}) })
	e.wait()
	e.allOK(ctx, "after republishing")

	// The .shp (others rw, as the workspace's write permission gives)
	// loses its others bits without the handler knowing (the monitor was
	// not watching): Magpie still allows read and write.
	if err := e.mon.Unregister(ctx, e.path(ds), HandlerName); err != nil {
		t.Fatal(err)
	}
	e.chmod(ds+"/roads.shp", 0o660)
	got = e.explain(ctx)
	want(t, got, "layer modes", false,
		[]string{"1 of 1 .shp differ from alice's Magpie permissions: roads.shp: others --- but Magpie gives read allow, write allow"},
		[]string{"chmod o=rw " + e.path(ds+"/roads.shp") + "  # applies Magpie's permissions to the file",
			"if others --- is what alice should have instead, run: chmod o-rwx " + e.path(ds+"/roads.shp")})
	// Keeping the mode: the second command of the fix, once watched again.
	if err := e.mon.Register(ctx, e.path(ds), HandlerName, true); err != nil {
		t.Fatal(err)
	}
	sh(t, "chmod o-rwx "+e.path(ds+"/roads.shp"))
	layerID, _ := e.mg.Lookup("geoserver", "alice", "roads")
	until(t, handled, "Magpie to follow the mode", func() bool {
		d, err := e.mg.Effective("alice", layerID, "getmap")
		return err == nil && d.Access == "deny"
	})
	e.allOK(ctx, "after the layer's mode was applied")

	// The datastore directory loses others rwx: no event reaches the
	// handler for the directory itself, so Magpie still allows.
	e.chmod(ds, 0o750)
	got = e.explain(ctx)
	want(t, got, "datastore mode", false,
		[]string{"others --- (read deny, write deny) but Magpie gives alice read allow and write allow on workspace alice", "they differ"},
		[]string{"chmod o=rwx " + e.path(ds) + "  # applies Magpie's permissions to the directory",
			"run: touch " + e.path(ds+"/.cowbird-sync") + " && rm " + e.path(ds+"/.cowbird-sync")})
	sh(t, "touch "+e.path(ds+"/.cowbird-sync")+" && rm "+e.path(ds+"/.cowbird-sync"))
	wsID, _ := e.mg.Lookup("geoserver", "alice")
	until(t, handled, "Magpie to follow the directory", func() bool {
		d, err := e.mg.Effective("alice", wsID, "getmap")
		return err == nil && d.Access == "deny"
	})
	e.allOK(ctx, "after the directory's mode was applied")

	// A published layer whose .shp is gone (removed while cowbird was
	// down) shows nothing. Unwatched first: the monitor would deliver the
	// creation of lakes.* at once, whose publish job would then fail on the
	// removed files.
	if err := e.mon.Unregister(ctx, e.path(ds), HandlerName); err != nil {
		t.Fatal(err)
	}
	e.writeShapefile("lakes", 0o660)
	if err := e.client.PublishShapefile(ctx, "alice", "lakes"); err != nil {
		t.Fatal(err)
	}
	for _, ext := range requiredExts {
		if err := os.Remove(e.path(ds + "/lakes" + ext)); err != nil {
			t.Fatal(err)
		}
	}
	got = e.explain(ctx)
	want(t, got, "stale layers", false, []string{"1 published without a .shp in " + e.path(ds) + " (their layers show nothing): lakes"},
		[]string{`curl -u "$GEOSERVER_ADMIN_USER:$GEOSERVER_ADMIN_PASSWORD" -X DELETE '` + e.gs.URL() +
			"/rest/workspaces/alice/datastores/shapefile_datastore_alice/featuretypes/lakes?recurse=true'"})
	if err := e.client.RemoveShapefile(ctx, "alice", "lakes"); err != nil { // what the curl does
		t.Fatal(err)
	}
	e.allOK(ctx, "after removing the stale layer")

	// GeoServer refuses to publish a new shapefile: the job fails for
	// good, and the fact names its error.
	e.gs.SetFault(geoservertest.RoutePublishFeatureType, geoservertest.Fault{Status: 500, Body: "Error occurred creating the feature type"})
	e.writeShapefile("rivers", 0o664)
	e.file(ctx, handlers.FileCreated, ds+"/rivers.shp")
	e.waitFor("the publish job to fail", func() bool { return len(e.h.Status().Failed) == 1 })
	got = e.explain(ctx)
	want(t, got, "layers", false, []string{"2 shapefiles in " + e.path(ds) + ", 1 published; not published: rivers (GeoServer has no feature type rivers; its publish_shapefile job ",
		"failed: publish shapefile \"rivers\" in workspace \"alice\": Operation [_publish_shapefile_request] failed : Error occurred creating the feature type)"},
		[]string{"cp -p rivers.shp rivers.shp.tmp"})
	want(t, got, "geoserver jobs", false, []string{"failed at publish_shapefile of rivers: publish shapefile"}, []string{"cp -p rivers.shp rivers.shp.tmp"})
	e.gs.ClearFaults()
	if err := e.client.PublishShapefile(ctx, "alice", "rivers"); err != nil { // what the fix's event does
		t.Fatal(err)
	}
	got = e.allOK(ctx, "after publishing rivers")
	want(t, got, "geoserver jobs", true, []string{"none pending; 1 job failed, whose work is done now"}, nil)
}

// TestExplainUserMissing: a user whose GeoServer workspace is missing, one
// whose datastore directory is missing, GeoServer down with the workspace
// job pending, and a name that cannot be a workspace.
func TestExplainUserMissing(t *testing.T) {
	ctx, e := aliceEnv(t)
	e.chmod(ds, 0o755)

	if err := e.client.RemoveWorkspace(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	got := e.explain(ctx)
	resync := `run the user.resync action for alice: POST /actions/v1/user.resync with body {"user_name": "alice"}`
	want(t, got, "geoserver workspace", false, []string{"GeoServer has no workspace alice"},
		[]string{resync, "it also sets " + e.path(ds) + " to others rwx, as user_created does: run chmod o=rx " + e.path(ds) + " after it"})
	want(t, got, "geoserver datastore", false, []string{"none: its workspace is missing"}, []string{resync})
	want(t, got, "datastore mode", true, []string{"no Magpie workspace resource alice yet"}, nil)

	// GeoServer down: the user_created job waits; the facts say so.
	e.gs.SetDown(true)
	e.userCreated(ctx)
	e.waitFor("a retry", func() bool {
		p := e.h.Status().Pending
		return len(p) == 1 && p[0].Retries > 0
	})
	got = e.explain(ctx)
	want(t, got, "geoserver", false, []string{"GeoServer did not answer: GET " + e.gs.URL() + "/rest/workspaces/alice: "}, []string{"make GeoServer answer"})
	want(t, got, "geoserver jobs", false, []string{"pending at create_workspace (retry "}, []string{"none to run: the pending GeoServer job is retried by itself"})
	if _, found := got["layers"]; found {
		t.Errorf("layers checked with GeoServer down: %+v", got["layers"])
	}
	e.gs.SetDown(false)
	e.wait()
	e.allOK(ctx, "after GeoServer came back")

	if err := os.RemoveAll(e.path(ds)); err != nil {
		t.Fatal(err)
	}
	got = e.explain(ctx)
	want(t, got, "datastore dir", false, []string{e.path(ds) + " is missing"}, []string{resync})
	if f, found := got["datastore mode"]; found {
		t.Errorf("modes checked without a datastore: %+v", f)
	}

	if _, err := e.h.ExplainUser(ctx, "../bob"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("ExplainUser(../bob) = %v, want fs.ErrInvalid", err)
	}
}

// TestNamedList reads GeoServer's listings in their three shapes.
func TestNamedList(t *testing.T) {
	for in, want := range map[string][]string{
		`{"featureTypes": ""}`: nil,
		`{"featureTypes": {"featureType": {"name": "a", "href": "h"}}}`:     {"a"},
		`{"featureTypes": {"featureType": [{"name": "a"}, {"name": "b"}]}}`: {"a", "b"},
		`{"featureTypes": null}`: nil,
		`{"featureTypes": {"featureType": [{"name": "a", "href": "x"}, {"name": "alice:b"}]}}`: {"a", "alice:b"},
	} {
		var l namedList
		if err := json.Unmarshal([]byte(in), &struct {
			FeatureTypes *namedList `json:"featureTypes"`
		}{&l}); err != nil || !slices.Equal(l, want) {
			t.Errorf("%s = %v, %v; want %v", in, l, err, want)
		}
	}
}
