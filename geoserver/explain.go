package geoserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
	"github.com/cowbird-go/cowbird/safefs"
)

// Fact is one thing ExplainUser checked. Its Check is one of: datastore
// dir, geoserver workspace, geoserver datastore, layers, stale layers,
// datastore mode, layer modes, geoserver jobs; geoserver or magpie when
// that service did not answer.
type Fact = handlers.Fact

// DatastoreDir is the shapefile datastore directory of user's workspace,
// the directory the handler watches for that user.
func (h *Handler) DatastoreDir(user string) string { return filepath.Join(h.dir, datastoreRel(user)) }

// ExplainUser checks, now, what decides whether user's shapefiles are
// layers they can use: the datastore directory and its shapefiles, the
// GeoServer workspace, datastore, feature types and layers (read-only
// REST calls), the others bits of the directory and of each .shp against
// the user's effective Magpie permissions on the workspace and layer
// resources, and the GeoServer jobs of the user. It changes nothing and
// takes no lock. GeoServer or Magpie not answering is a fact, not an
// error; a name that cannot be a workspace is refused with an error
// wrapping fs.ErrInvalid.
func (h *Handler) ExplainUser(ctx context.Context, user string) ([]Fact, error) {
	if err := safefs.ValidName(user); err != nil {
		return nil, fmt.Errorf("explain user: %w (%w)", err, fs.ErrInvalid)
	}
	e := &explainer{h: h, ws: user, dir: h.DatastoreDir(user)}
	e.jobs()
	e.disk()
	e.geoserver(ctx)
	e.magpie(ctx)
	e.jobsFact()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return e.facts, nil
}

// explainer gathers the facts of one ExplainUser.
type explainer struct {
	h     *Handler
	ws    string // the user, also their GeoServer workspace
	dir   string // their datastore directory, absolute
	facts []Fact

	// The user's GeoServer jobs.
	pending, failed []Job

	// The disk: the datastore directory (dirOK: a real directory) and its
	// shapefiles, by layer name.
	dirOK   bool
	dirMode fs.FileMode
	shps    []shapefile

	// GeoServer: gsErr when it did not answer (the rest is then unknown).
	gsErr         error
	wsFound, dsOK bool
	listed        bool // the feature types and layers below were listed
	types, layers map[string]bool
	published     map[string]bool // a feature type and a layer
	staleTypes    []string        // feature types without a .shp
}

// shapefile is a .shp in the datastore directory.
type shapefile struct {
	layer   string
	mode    fs.FileMode
	missing []string // required companions that are absent
}

func (e *explainer) ok(check, format string, args ...any) {
	e.facts = append(e.facts, Fact{Check: check, OK: true, Detail: fmt.Sprintf(format, args...)})
}

func (e *explainer) fail(check, fix, format string, args ...any) {
	e.facts = append(e.facts, Fact{Check: check, Detail: fmt.Sprintf(format, args...), Fix: fix})
}

// jobs collects the user's pending and failed GeoServer jobs.
func (e *explainer) jobs() {
	st := e.h.jobs.Status()
	mine := func(j Job) bool { return len(j.Steps) > 0 && j.Steps[0].Workspace == e.ws }
	for _, j := range st.Pending {
		if mine(j) {
			e.pending = append(e.pending, j)
		}
	}
	for _, j := range st.Failed {
		if mine(j) {
			e.failed = append(e.failed, j)
		}
	}
}

// current is the step a pending job is at, or a failed job stopped on.
func current(j Job) Step { return j.Steps[min(j.Next, len(j.Steps)-1)] }

// jobNote says what the user's jobs are doing about a step of kind (of
// shapefile, when given): the last pending job that still has it to run,
// else the last failed job that stopped on it. waiting is set for a
// pending one.
func (e *explainer) jobNote(kind StepKind, shapefile string) (note string, waiting bool) {
	for _, j := range slices.Backward(e.pending) {
		for _, s := range j.Steps[j.Next:] {
			if s.Kind == kind && s.Shapefile == shapefile {
				return fmt.Sprintf("; its %s job %s is pending (at %s, retry %d)", kind, j.ID, current(j).Kind, j.Retries), true
			}
		}
	}
	for _, j := range slices.Backward(e.failed) {
		if s := current(j); s.Kind == kind && s.Shapefile == shapefile {
			return fmt.Sprintf("; its %s job %s failed: %s", kind, j.ID, j.Err), false
		}
	}
	return "", false
}

// fixWait is the fix of a state a pending job is making.
const fixWait = "none to run: the pending GeoServer job is retried by itself (up to 15 times, backoff up to 10 min); " +
	"if GeoServer does not answer, make it answer (cowbird status)"

// fixResync rebuilds the user's datastore directory, GeoServer workspace
// and datastore, and watch.
func (e *explainer) fixResync() string {
	fix := `run the user.resync action for ` + e.ws + `: POST /actions/v1/user.resync with body {"user_name": ` + handlers.QuoteJSON(e.ws) +
		`} (user_created again: the datastore directory, GeoServer workspace and datastore, and watch)`
	if e.dirOK && e.dirMode&0o7 != 0o7 {
		fix += fmt.Sprintf("; it also sets %s to others rwx, as user_created does: run chmod %s %s after it to keep others %s",
			e.dir, chmodArg(e.dirMode&0o7), handlers.ShellQuote(e.dir), rwx(e.dirMode&0o7))
	}
	return fix
}

// shp is the absolute path of layer's .shp.
func (e *explainer) shp(layer string) string { return filepath.Join(e.h.dir, mainFile(e.ws, layer)) }

// fixPublish makes the handler publish layer: a .shp created in the
// datastore is published (re-creating it in place: cp then mv, never a
// removal, which would remove the layer and its companions).
func (e *explainer) fixPublish(layer string) string {
	p, tmp := handlers.ShellQuote(layer+".shp"), handlers.ShellQuote(layer+".shp.tmp")
	return "cd " + handlers.ShellQuote(e.dir) + " && cp -p " + p + " " + tmp + " && mv -f " + tmp + " " + p + "  # a .shp created in the datastore is published"
}

// fixDeleteType removes feature type name, and its layer, from GeoServer.
func (e *explainer) fixDeleteType(name string) string {
	u := e.h.gs.redacted + e.h.gs.featureTypesPath(e.ws) + "/" + url.PathEscape(name) + "?recurse=true"
	return `curl -u "$GEOSERVER_ADMIN_USER:$GEOSERVER_ADMIN_PASSWORD" -X DELETE ` + handlers.ShellQuote(u)
}

// disk checks the datastore directory and lists its shapefiles.
func (e *explainer) disk() {
	const check = "datastore dir"
	root, err := e.h.wsRoot()
	if err != nil {
		e.fail(check, fixReach(e.h.dir), "%v", err)
		return
	}
	if _, err := root.Lstat(e.ws); errors.Is(err, fs.ErrNotExist) {
		e.fail(check, e.fixResync(), "no workspace %s, so no datastore directory (the FileSystem handler makes the workspace first)",
			filepath.Join(e.h.dir, e.ws))
		return
	}
	st, err := root.Lstat(datastoreRel(e.ws))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e.fail(check, e.fixResync(), "%s is missing: the user's shapefiles have nowhere to go", e.dir)
		return
	case errors.Is(err, safefs.ErrSymlink) || err == nil && !st.IsDir():
		e.fail(check, "move "+handlers.ShellQuote(e.dir)+" away, then "+e.fixResync(),
			"%s is not a real directory (a symlink or a file is on the way, never followed)", e.dir)
		return
	case err != nil:
		e.fail(check, fixReach(e.dir), "lstat %s: %v", e.dir, err)
		return
	}
	e.dirOK, e.dirMode = true, st.Mode
	ents, err := root.ReadDir(datastoreRel(e.ws))
	if err != nil {
		e.fail(check, fixReach(e.dir), "%s: a real directory, mode %s, which cannot be listed: %v", e.dir, st.Mode, err)
		e.dirOK = false
		return
	}
	for _, ent := range ents {
		layer, ok := layerOf(ent.Name)
		if !ok || ent.Type != 0 {
			continue
		}
		fst, err := root.Lstat(mainFile(e.ws, layer))
		if err != nil {
			continue // gone meanwhile
		}
		s := shapefile{layer: layer, mode: fst.Mode}
		for _, ext := range requiredExts[1:] {
			if _, err := root.Lstat(datastoreRel(e.ws) + "/" + layer + ext); err != nil {
				s.missing = append(s.missing, layer+ext)
			}
		}
		e.shps = append(e.shps, s)
	}
	slices.SortFunc(e.shps, func(a, b shapefile) int { return strings.Compare(a.layer, b.layer) })
	e.ok(check, "%s: a real directory, mode %s, %s", e.dir, st.Mode, plural(len(e.shps), "shapefile"))
}

// geoserver checks the workspace, the datastore, the feature types and
// the layers in GeoServer.
func (e *explainer) geoserver(ctx context.Context) {
	wsPath := "/workspaces/" + url.PathEscape(e.ws)
	if !e.gsWorkspace(ctx, wsPath) || !e.gsDatastore(ctx, wsPath) {
		return
	}
	e.gsLayers(ctx, wsPath)
}

// gsWorkspace checks the workspace at wsPath (GeoServer REST, relative);
// false when GeoServer did not answer or has none (the facts are
// recorded).
func (e *explainer) gsWorkspace(ctx context.Context, wsPath string) bool {
	var w struct {
		Workspace struct {
			Isolated flexBool `json:"isolated"`
		} `json:"workspace"`
	}
	found, err := e.h.gs.get(ctx, wsPath, &w)
	if err != nil {
		e.gsDown(err)
		return false
	}
	if !found {
		note, waiting := e.jobNote(StepCreateWorkspace, "")
		fix := e.fixResync()
		if waiting {
			fix = fixWait
		}
		e.fail("geoserver workspace", fix, "GeoServer has no workspace %s%s", e.ws, note)
		e.fail("geoserver datastore", fix, "none: its workspace is missing")
		return false
	}
	e.wsFound = true
	e.ok("geoserver workspace", "%s exists in GeoServer", e.ws)
	return true
}

// gsDatastore checks the user's datastore in the workspace at wsPath:
// its url, type and state; false when GeoServer did not answer or has
// none (the facts are recorded).
func (e *explainer) gsDatastore(ctx context.Context, wsPath string) bool {
	gs := e.h.gs
	ds := DatastoreName(e.ws)
	var d struct {
		DataStore struct {
			Type                 string   `json:"type"`
			Enabled              flexBool `json:"enabled"`
			ConnectionParameters struct {
				Entry entryList `json:"entry"`
			} `json:"connectionParameters"`
		} `json:"dataStore"`
	}
	found, err := gs.get(ctx, wsPath+"/datastores/"+url.PathEscape(ds), &d)
	if err != nil {
		e.gsDown(err)
		return false
	}
	note, waiting := e.jobNote(StepCreateDatastore, "")
	fix := e.fixResync()
	if waiting {
		fix = fixWait
	}
	if !found {
		e.fail("geoserver datastore", fix, "workspace %s has no datastore %s%s", e.ws, ds, note)
		return false
	}
	var wrong []string
	if got, want := d.DataStore.ConnectionParameters.Entry.get("url"), gs.DatastoreURL(e.ws); got != want {
		wrong = append(wrong, fmt.Sprintf("url %q, want %q", got, want))
	}
	if d.DataStore.Type != datastoreType {
		wrong = append(wrong, fmt.Sprintf("type %q, want %q", d.DataStore.Type, datastoreType))
	}
	if !d.DataStore.Enabled {
		wrong = append(wrong, "disabled")
	}
	if len(wrong) > 0 {
		e.fail("geoserver datastore", fix, "%s in workspace %s: %s%s", ds, e.ws, strings.Join(wrong, ", "), note)
	} else {
		e.dsOK = true
		e.ok("geoserver datastore", "%s in workspace %s, url %s", ds, e.ws, gs.DatastoreURL(e.ws))
	}
	return true
}

// gsLayers lists the feature types and layers of the workspace at wsPath
// and compares them with the shapefiles (layersFacts).
func (e *explainer) gsLayers(ctx context.Context, wsPath string) {
	gs := e.h.gs
	types, err := gs.FeatureTypes(ctx, e.ws)
	if err != nil {
		e.gsDown(err)
		return
	}
	var layers namedList
	if _, err := gs.get(ctx, wsPath+"/layers", &struct {
		Layers *namedList `json:"layers"`
	}{&layers}); err != nil {
		e.gsDown(err)
		return
	}
	e.listed = true
	e.types, e.layers, e.published = map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, n := range types {
		e.types[n] = true
	}
	for _, n := range layers {
		e.layers[strings.TrimPrefix(n, e.ws+":")] = true
	}
	e.layersFacts()
}

// gsDown records that GeoServer did not answer what the next facts need.
func (e *explainer) gsDown(err error) {
	e.gsErr = err
	e.fail("geoserver", "make GeoServer answer (cowbird status shows the Geoserver handler; GET /handlers/Geoserver its jobs), then explain again",
		"GeoServer did not answer: %v; the GeoServer facts that need it are not checked", err)
}

// layersFacts compares the shapefiles with the feature types and layers.
func (e *explainer) layersFacts() {
	if !e.dirOK {
		return // the disk is unknown: its datastore dir fact says why
	}
	e.publishedFact()
	e.staleLayersFact()
}

// publishedFact reports the shapefiles that have no feature type and
// layer in GeoServer, and marks the others published.
func (e *explainer) publishedFact() {
	var bad []string
	fix := ""
	for _, s := range e.shps {
		hasType, hasLayer := e.types[s.layer], e.layers[s.layer]
		if hasType && hasLayer {
			e.published[s.layer] = true
			continue
		}
		why, f := e.unpublished(s, hasType)
		bad = append(bad, s.layer+" ("+why+")")
		fix = either(fix, f)
	}
	switch {
	case len(e.shps) == 0:
		e.ok("layers", "none: no .shp in %s", e.dir)
	case len(bad) == 0:
		e.ok("layers", "%s in %s, all published in GeoServer: %s", plural(len(e.shps), "shapefile"), e.dir, names(e.shps))
	default:
		e.fail("layers", fix, "%s in %s, %d published; not published: %s",
			plural(len(e.shps), "shapefile"), e.dir, len(e.published), strings.Join(first(bad, 3), "; "))
	}
}

// unpublished says why the shapefile s, which has a feature type or not,
// is not published, with its job's note, and how to fix it.
func (e *explainer) unpublished(s shapefile, hasType bool) (why, fix string) {
	switch {
	case hasType:
		why = "GeoServer has feature type " + s.layer + " but no layer"
		fix = e.fixDeleteType(s.layer) + " && " + e.fixPublish(s.layer)
	default:
		why = "GeoServer has no feature type " + s.layer
		fix = e.fixPublish(s.layer)
	}
	if len(s.missing) > 0 {
		why += ", and " + strings.Join(s.missing, ", ") + " missing (the .shp is published once .prj, .dbf and .shx are there)"
		fix = "add " + strings.Join(s.missing, ", ") + " to " + e.dir + ", then " + fix
	}
	note, waiting := e.jobNote(StepPublishShapefile, s.layer)
	if note == "" {
		note, waiting = e.jobNote(StepValidateShapefile, s.layer)
	}
	if waiting && len(s.missing) == 0 {
		fix = fixWait
	}
	return why + note, fix
}

// staleLayersFact reports the feature types that have no .shp on disk.
func (e *explainer) staleLayersFact() {
	onDisk := map[string]bool{}
	for _, s := range e.shps {
		onDisk[s.layer] = true
	}
	for _, t := range slices.Sorted(maps.Keys(e.types)) {
		if !onDisk[t] {
			e.staleTypes = append(e.staleTypes, t)
		}
	}
	if len(e.staleTypes) == 0 {
		e.ok("stale layers", "none: every feature type of %s has its .shp", DatastoreName(e.ws))
		return
	}
	t := e.staleTypes[0]
	fix := e.fixDeleteType(t)
	note, waiting := e.jobNote(StepRemoveShapefile, t)
	if waiting {
		fix = fixWait
	}
	e.fail("stale layers", fix, "%d published without a .shp in %s (their layers show nothing): %s%s", len(e.staleTypes), e.dir,
		strings.Join(first(e.staleTypes, 3), ", "), note)
}

// magpie compares the others bits of the datastore directory and of each
// .shp with the user's effective Magpie permissions on the workspace and
// layer resources.
func (e *explainer) magpie(ctx context.Context) {
	if !e.dirOK {
		return
	}
	wsRes, ok := e.workspaceResource(ctx)
	if !ok || !e.datastoreMode(ctx, wsRes) || len(e.shps) == 0 {
		return
	}
	e.layerModes(ctx, wsRes)
}

// workspaceResource finds the user's workspace resource under the
// geoserver services of Magpie (nil: none); ok is false when there is
// nothing to compare with (the fact is recorded).
func (e *explainer) workspaceResource(ctx context.Context) (wsRes *magpie.Resource, ok bool) {
	trees, err := e.h.services(ctx)
	switch {
	case errors.Is(err, errNoMagpie):
		e.ok("datastore mode", "no Magpie configured: modes are not synced to permissions (the handler's choice without Magpie)")
		return nil, false
	case errors.Is(err, ErrNoGeoserverService):
		e.fail("datastore mode", "create a service of type geoserver in Magpie, then "+e.fixEntry(),
			"Magpie has no service of type geoserver: the modes of %s are not synced to permissions", e.dir)
		return nil, false
	case err != nil:
		e.magpieDown("about the geoserver services", err)
		return nil, false
	}
	for _, t := range trees {
		if c := t.Child(e.ws); c != nil {
			wsRes = c
		}
	}
	return wsRes, true
}

// datastoreMode compares the others bits of the datastore directory with
// the user's permissions on wsRes (nil: Magpie has no workspace resource);
// false when Magpie did not answer (the fact is recorded).
func (e *explainer) datastoreMode(ctx context.Context, wsRes *magpie.Resource) bool {
	dirR, dirW := e.dirMode&0o5 == 0o5, e.dirMode&0o2 != 0
	switch {
	case wsRes == nil && len(e.shps) == 0:
		e.ok("datastore mode", "others %s; no Magpie workspace resource %s yet: made at the first change in %s (as in the original)",
			rwx(e.dirMode&0o7), e.ws, e.dir)
	case wsRes == nil:
		e.fail("datastore mode", e.fixEntry(), "others %s, but Magpie has no workspace resource %s under the geoserver service, "+
			"though %s holds shapefiles: the modes were never applied", rwx(e.dirMode&0o7), e.ws, e.dir)
	default:
		r, w, ok := e.access(ctx, wsRes.ID)
		if !ok {
			return false
		}
		mp := fmt.Sprintf("Magpie gives %s read %s and write %s on workspace %s (resource %d)", e.ws, allowed(r), allowed(w), e.ws, wsRes.ID)
		if r == dirR && w == dirW {
			e.ok("datastore mode", "others %s and %s: they agree", rwx(e.dirMode&0o7), mp)
		} else {
			want := others(r, w, true)
			e.fail("datastore mode", fmt.Sprintf("chmod %s %s  # applies Magpie's permissions to the directory; "+
				"if others %s is what %s should have instead, run: %s", chmodArg(want), handlers.ShellQuote(e.dir), rwx(e.dirMode&0o7), e.ws,
				strings.Replace(e.fixEntry(), "  # ", " (", 1)+")"),
				"others %s (read %s, write %s) but %s: they differ", rwx(e.dirMode&0o7), allowed(dirR), allowed(dirW), mp)
		}
	}
	return true
}

// layerModes compares the others bits of each .shp with the user's
// permissions on its layer resource under wsRes (nil: none).
func (e *explainer) layerModes(ctx context.Context, wsRes *magpie.Resource) {
	var bad []string
	fix := ""
	for _, s := range e.shps {
		var l *magpie.Resource
		if wsRes != nil {
			l = wsRes.Child(s.layer)
		}
		fr, fw := s.mode&0o4 != 0, s.mode&0o2 != 0
		again := fmt.Sprintf("chmod %s %s", chmodArg(s.mode&0o7), handlers.ShellQuote(e.shp(s.layer)))
		if l == nil {
			bad = append(bad, fmt.Sprintf("%s.shp: others %s, no Magpie layer resource", s.layer, rwx(s.mode&0o7)))
			fix = either(fix, again+"  # the mode change makes the layer resource and its permissions")
			continue
		}
		r, w, ok := e.access(ctx, l.ID)
		if !ok {
			return
		}
		if r == fr && w == fw {
			continue
		}
		bad = append(bad, fmt.Sprintf("%s.shp: others %s but Magpie gives read %s, write %s (resource %d)",
			s.layer, rwx(s.mode&0o7), allowed(r), allowed(w), l.ID))
		want := others(r, w, false)
		fix = either(fix, fmt.Sprintf("chmod %s %s  # applies Magpie's permissions to the file; if others %s is what %s should have instead, run: %s "+
			"(a mode change of a .shp sets its layer permissions)", chmodArg(want), handlers.ShellQuote(e.shp(s.layer)), rwx(s.mode&0o7), e.ws, again))
	}
	if len(bad) == 0 {
		e.ok("layer modes", "the others bits of all %s agree with %s's Magpie permissions on their layers", plural(len(e.shps), ".shp"), e.ws)
		return
	}
	e.fail("layer modes", fix, "%d of %s differ from %s's Magpie permissions: %s", len(bad), plural(len(e.shps), ".shp"), e.ws,
		strings.Join(first(bad, 3), "; "))
}

// fixEntry makes Magpie's workspace permissions follow the datastore
// directory's mode: an entry added to or removed from it does.
func (e *explainer) fixEntry() string {
	f := handlers.ShellQuote(filepath.Join(e.dir, ".cowbird-sync"))
	return "touch " + f + " && rm " + f + "  # an entry added or removed sets the workspace permissions from the directory's mode"
}

// access is whether a readable and a writable permission of the user
// resolve to allow on resource id; ok is false when Magpie did not answer
// (the fact is recorded).
func (e *explainer) access(ctx context.Context, id int) (r, w, ok bool) {
	eff, err := e.h.mp.UserPermissions(ctx, e.ws, id, magpie.Effective)
	if err != nil {
		e.magpieDown(fmt.Sprintf("with the effective permissions of %s on resource %d", e.ws, id), err)
		return false, false, false
	}
	for _, p := range eff {
		if p.Access == accessAllow {
			r = r || slices.Contains(readableNames, p.Name)
			w = w || slices.Contains(writableNames, p.Name)
		}
	}
	return r, w, true
}

// magpieDown records that Magpie did not answer what the next facts need.
func (e *explainer) magpieDown(what string, err error) {
	e.fail("magpie", "make Magpie answer (GET /readyz says what fails), then explain again",
		"Magpie did not answer %s: %v; the mode and permission facts are not checked", what, err)
}

// jobsFact reports the user's GeoServer jobs: pending ones are work not
// done yet; a failed one matters while the state it was to make does not
// hold now.
func (e *explainer) jobsFact() {
	const check = "geoserver jobs"
	if len(e.pending) == 0 && len(e.failed) == 0 {
		e.ok(check, "none pending or failed for %s", e.ws)
		return
	}
	var parts []string
	fix := ""
	for _, j := range e.pending {
		s := current(j)
		parts = append(parts, fmt.Sprintf("job %s pending at %s%s (retry %d)", j.ID, s.Kind, ofShapefile(s), j.Retries))
		fix = either(fix, fixWait)
	}
	done := 0
	for _, j := range e.failed {
		s := current(j)
		holds, f := e.outcome(s)
		if holds {
			done++
			continue
		}
		parts = append(parts, fmt.Sprintf("job %s failed at %s%s: %s", j.ID, s.Kind, ofShapefile(s), j.Err))
		fix = either(fix, f)
	}
	if done > 0 {
		parts = append(parts, fmt.Sprintf("%s failed, whose work is done now", plural(done, "job")))
	}
	if fix == "" {
		e.ok(check, "none pending; %s", strings.Join(parts, "; "))
		return
	}
	e.fail(check, fix, "%s", strings.Join(first(parts, 4), "; "))
}

// outcome reports whether what step s was to do holds now, else its fix.
func (e *explainer) outcome(s Step) (holds bool, fix string) {
	if e.gsErr != nil {
		return false, "make GeoServer answer (cowbird status), then explain again"
	}
	switch s.Kind {
	case StepCreateWorkspace:
		return e.wsFound, e.fixResync()
	case StepCreateDatastore:
		return e.dsOK, e.fixResync()
	case StepValidateShapefile, StepPublishShapefile:
		return e.published[s.Shapefile], e.fixPublish(s.Shapefile)
	case StepRemoveShapefile:
		return e.listed && !e.types[s.Shapefile], e.fixDeleteType(s.Shapefile)
	case StepRemoveWorkspace:
		u := e.h.gs.redacted + "/workspaces/" + url.PathEscape(e.ws) + "?recurse=true"
		return !e.wsFound, `curl -u "$GEOSERVER_ADMIN_USER:$GEOSERVER_ADMIN_PASSWORD" -X DELETE ` + handlers.ShellQuote(u)
	}
	return false, "GET /handlers/Geoserver shows the job"
}

func ofShapefile(s Step) string {
	if s.Shapefile == "" {
		return ""
	}
	return " of " + s.Shapefile
}

// get GETs rel (relative to the REST base, escaped) as JSON into out;
// found is false when GeoServer answers 404. It changes nothing, and is
// not counted among the operations of Requests.
func (c *Client) get(ctx context.Context, rel string, out any) (found bool, err error) {
	if c.urlErr != nil {
		return false, c.urlErr
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.rest+rel, nil)
	if err != nil {
		return false, fmt.Errorf("build GET request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if c.user != "" || c.password != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return false, fmt.Errorf("GET %s: %w", c.redacted+rel, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxListing))
	if err != nil {
		return false, fmt.Errorf("GET %s: %w", c.redacted+rel, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return false, nil
	case resp.StatusCode == http.StatusUnauthorized:
		return false, fmt.Errorf("GET %s: 401: GeoServer refuses the admin credentials (admin_user, admin_password)", c.redacted+rel)
	case resp.StatusCode != http.StatusOK:
		text := strings.ToValidUTF8(string(body[:min(len(body), 200)]), "")
		return false, fmt.Errorf("GET %s: %d: %s", c.redacted+rel, resp.StatusCode, strings.TrimSpace(text))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return false, fmt.Errorf("GET %s: decode: %w", c.redacted+rel, err)
	}
	return true, nil
}

// maxListing bounds a GET answer (a listing of thousands of layers).
const maxListing = 16 << 20

// namedList reads a GeoServer listing, {"<kind>": [{"name": …}, …]}: ""
// when empty, and an object instead of a list for one element (XStream).
type namedList []string

// UnmarshalJSON implements json.Unmarshaler.
func (n *namedList) UnmarshalJSON(data []byte) error {
	*n = nil
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil // "" or null: none
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(data, &outer); err != nil {
		return err
	}
	type named struct {
		Name string `json:"name"`
	}
	for _, raw := range outer {
		var list []named
		if err := json.Unmarshal(raw, &list); err != nil {
			var one named
			if err := json.Unmarshal(raw, &one); err != nil {
				return err
			}
			list = []named{one}
		}
		for _, it := range list {
			if it.Name != "" {
				*n = append(*n, it.Name)
			}
		}
	}
	return nil
}

// entryList reads XStream map entries: a list, or one object.
type entryList []entry

// UnmarshalJSON implements json.Unmarshaler.
func (l *entryList) UnmarshalJSON(data []byte) error {
	var list []entry
	if err := json.Unmarshal(data, &list); err != nil {
		var one entry
		if json.Unmarshal(data, &one) != nil {
			return err
		}
		list = []entry{one}
	}
	*l = list
	return nil
}

func (l entryList) get(key string) string {
	for _, e := range l {
		if e.Key == key {
			return e.Value
		}
	}
	return ""
}

// flexBool reads XStream booleans: true or "true".
type flexBool bool

// UnmarshalJSON implements json.Unmarshaler.
func (b *flexBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case bool:
		*b = flexBool(v)
	case string:
		*b = flexBool(strings.EqualFold(v, "true"))
	}
	return nil
}

// others is the others bits that the permissions r and w give (x on the
// datastore directory, never on a file).
func others(r, w, x bool) fs.FileMode {
	var m fs.FileMode
	if r {
		m |= 0o4
	}
	if w {
		m |= 0o2
	}
	if x {
		m |= 0o1
	}
	return m
}

// chmodArg is the symbolic chmod argument that sets the others bits m.
func chmodArg(m fs.FileMode) string {
	if m&0o7 == 0 {
		return "o-rwx"
	}
	s := "o="
	for i, c := range "rwx" {
		if m&(4>>i) != 0 {
			s += string(c)
		}
	}
	return s
}

// rwx is the others bits m (0-7) as r, w, x or -.
func rwx(m fs.FileMode) string {
	b := []byte("---")
	for i, c := range "rwx" {
		if m&(4>>i) != 0 {
			b[i] = byte(c)
		}
	}
	return string(b)
}

func allowed(ok bool) string {
	if ok {
		return accessAllow
	}
	return accessDeny
}

// fixReach is the fix of a path the daemon could not look at.
func fixReach(path string) string {
	return "let the daemon reach " + path + " (it runs as the admin user and must see every file it manages), then explain again"
}

// plural is "<n> <word>", with an s unless n is 1.
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// first is up to n of items, with how many more there are.
func first(items []string, n int) []string {
	if len(items) <= n {
		return items
	}
	return append(slices.Clip(items[:n]), fmt.Sprintf("%d more", len(items)-n))
}

// names lists up to 5 layers.
func names(shps []shapefile) string {
	var out []string
	for _, s := range shps {
		out = append(out, s.layer)
	}
	return strings.Join(first(out, 5), ", ")
}

// either is a, or b when a is empty.
func either(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
