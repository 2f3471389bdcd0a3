package magpie

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
	"github.com/sirupsen/logrus"
)

// exampleSync is config.example.yml's sync_permissions, except that the
// geoserver side of user_workspace nests routes, not workspaces: Magpie
// allows no workspace under a workspace, so the example's path cannot exist.
const exampleSync = `
sync_permissions:
  user_workspace:
    services:
      thredds:
        thredds_workspace:
          - {name: catalog, type: service}
          - {name: workspaces, type: directory}
          - {name: "{user}", type: directory}
          - {name: "**", type: directory}
          - {name: subdir, type: directory}
          - {name: "{synched_file}", type: file}
      geoserver:
        geoserver_workspace:
          - {name: geoserver, type: service}
          - {name: workspaces, type: route}
          - {name: "{user}", type: route}
          - {name: "**", type: route}
          - {name: "{synched_file}", type: workspace}
    permissions_mapping:
      - "geoserver_workspace : [getCapabilities, getFeature, getFeatureInfo] <-> thredds_workspace : read"
      - "geoserver_workspace : createStoredQuery <-> thredds_workspace : write"
  weaver_outputs:
    services:
      api:
        process_description:
          - {name: weaver, type: service}
          - {name: processes, type: route}
          - {name: "{processID}", type: route}
        process_job_status:
          - {name: weaver, type: service}
          - {name: processes, type: route}
          - {name: "{processID}", type: route}
          - {name: jobs, type: route}
          - {name: "{jobID}", type: route}
        job_status:
          - {name: weaver, type: service}
          - {name: jobs, type: route}
          - {name: "{jobID}", type: route}
        job_outputs:
          - {name: weaver, type: service}
          - {name: jobs, type: route}
          - {name: "{jobID}", type: route}
          - {name: outputs, type: route}
        weaver_wps_outputs:
          - {name: weaver, type: service}
          - {name: wpsoutputs, type: route}
          - {name: weaver, type: route}
          - {name: "{jobID}", type: route}
    permissions_mapping:
      - "weaver_wps_outputs : read <-> job_outputs : read"
      - "weaver_wps_outputs : read -> job_status : read"
      - "process_job_status : read -> weaver_wps_outputs : read"
      - "process_job_status : read -> job_status : read"
      - "process_job_status : read -> process_description : read-match"
  stac_permissions:
    services:
      api:
        stac_collection:
          - {name: stac, type: service}
          - {name: stac, type: route}
          - {name: collections, type: route}
          - {type: route, field: resource_display_name, regex: '[\w]+:[\w\/]+'}
        stac_item:
          - {name: stac, type: service}
          - {name: stac, type: route}
          - {name: collections, type: route}
          - {name: "{collectionId}", type: route}
          - {name: items, type: route}
          - {type: route, field: resource_display_name, regex: '[\w]+:[\w\/.-]+'}
      thredds:
        thredd_collection:
          - {name: thredds, type: service}
          - {type: directory, regex: '(?<=:).*\/?(?=\/)'}
        thredd_item:
          - {name: thredds, type: service}
          - {type: directory, regex: '(?<=:).*\/?(?=\/)'}
          - {type: file, regex: '[^\/]+$'}
    permissions_mapping:
      - "stac_collection : read-match -> thredd_collection : browse-match"
      - "stac_collection : read-allow-recursive -> thredd_collection : browse-allow-recursive"
      - "stac_collection : read-deny-match -> thredd_collection : browse-deny-match"
      - "stac_collection : read-deny-recursive -> thredd_collection : browse-deny-recursive"
      - "stac_item : read-match -> thredd_item : browse-match"
      - "stac_item : read-allow-recursive -> thredd_item : browse-allow-recursive"
      - "stac_item : read-deny-match -> thredd_item : browse-deny-match"
      - "stac_item : read-deny-recursive -> thredd_item : browse-deny-recursive"
`

// env is an emulator with users alice (in group editors) and the services
// of the sync config, a client and the handler under test.
type env struct {
	srv *magpietest.Server
	c   *Client
	h   *Handler
}

func discard() *logrus.Entry {
	l := logrus.New()
	l.Out = io.Discard
	return logrus.NewEntry(l)
}

func loadSync(t *testing.T, yml string) []config.SyncPoint {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sync.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, discard(), nil)
	if err != nil {
		t.Fatalf("load sync config: %v", err)
	}
	return cfg.SyncPoints
}

func newEnv(t *testing.T, yml string, opts magpietest.Options) *env {
	t.Helper()
	opts.QuietSeeding = true
	srv := magpietest.NewServer(t, opts)
	for name, typ := range map[string]string{"catalog": "thredds", "thredds": "thredds", "geoserver": "geoserver", "weaver": "api", "stac": "api"} {
		if _, err := srv.AddService(name, typ); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := srv.AddGroup("editors"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.AddUser("alice", "", "editors"); err != nil {
		t.Fatal(err)
	}
	c := NewClient(ClientOptions{URL: srv.URL(), AdminUser: "admin", AdminPassword: "qwertyqwerty"})
	h, err := NewHandler(loadSync(t, yml), c, discard())
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	return &env{srv: srv, c: c, h: h}
}

// add creates the missing resources of path under service svc, given as
// name, type pairs, and returns the last one's id.
func (e *env) add(t *testing.T, svc string, pairs ...string) int {
	t.Helper()
	id, ok := e.srv.Lookup(svc)
	if !ok {
		t.Fatalf("no service %s", svc)
	}
	var names []string
	for i := 0; i < len(pairs); i += 2 {
		names = append(names, pairs[i])
		if next, ok := e.srv.Lookup(svc, names...); ok {
			id = next
			continue
		}
		var err error
		if id, err = e.srv.AddResource(id, pairs[i], pairs[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// addDisplay creates a route with a display name through the REST API.
func (e *env) addDisplay(t *testing.T, parent int, name, display string) int {
	t.Helper()
	in := map[string]any{"resource_name": name, "resource_display_name": display, "resource_type": "route", "parent_id": parent}
	var out struct {
		Resource Resource `json:"resource"`
	}
	if _, err := e.c.call(t.Context(), http.MethodPost, "/resources", nil, in, &out); err != nil {
		t.Fatal(err)
	}
	return out.Resource.ID
}

// perms returns a principal's rows at service/names, or nil if it does not exist.
func (e *env) perms(t *testing.T, group bool, who, svc string, names ...string) []string {
	t.Helper()
	id, ok := e.srv.Lookup(svc, names...)
	if !ok {
		return nil
	}
	if group {
		return e.srv.GroupPermissions(who, id)
	}
	return e.srv.UserPermissions(who, id)
}

// grant stores perm for alice on id and returns the webhook event for it.
func (e *env) grant(t *testing.T, id int, svcType, perm string) handlers.PermissionEvent {
	t.Helper()
	if err := e.srv.SetUserPermission("alice", id, perm); err != nil {
		t.Fatal(err)
	}
	return permEvent(id, svcType, perm, "alice", "")
}

func permEvent(id int, svcType, perm, user, group string) handlers.PermissionEvent {
	p := strings.Split(perm, "-")
	return handlers.PermissionEvent{Action: handlers.Created, ServiceType: svcType, ResourceID: id,
		PermName: p[0], Access: p[1], Scope: p[2], User: user, Group: group}
}

func deleted(ev handlers.PermissionEvent) handlers.PermissionEvent {
	ev.Action = handlers.Deleted
	return ev
}

func wantPerms(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: permissions %q, want %q", what, got, want)
	}
}

var gsRead = []string{"getcapabilities-allow-recursive", "getfeature-allow-recursive", "getfeatureinfo-allow-recursive"}

func TestUserWorkspaceVarsAndMultiToken(t *testing.T) {
	e := newEnv(t, exampleSync, magpietest.Options{})
	ctx := t.Context()

	// thredds -> geoserver: {user} and a two-level ** carried over, camelCase
	// mapping names sent in Magpie's lower case.
	file := e.add(t, "catalog", "workspaces", "directory", "alice", "directory", "d1", "directory", "d2", "directory",
		"subdir", "directory", "f1", "file")
	if err := e.h.PermissionCreated(ctx, e.grant(t, file, "thredds", "read-allow-recursive")); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "geoserver f1", e.perms(t, false, "alice", "geoserver", "workspaces", "alice", "d1", "d2", "f1"), gsRead...)

	// A zero-length ** shortens the target path.
	short := e.add(t, "catalog", "workspaces", "directory", "alice", "directory", "subdir", "directory", "f2", "file")
	if err := e.h.PermissionCreated(ctx, e.grant(t, short, "thredds", "write-allow-recursive")); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "geoserver f2", e.perms(t, false, "alice", "geoserver", "workspaces", "alice", "f2"), "createstoredquery-allow-recursive")

	// geoserver -> thredds (the other direction of <->); the lower-case name
	// Magpie sends matches the camelCase mapping.
	ws := e.add(t, "geoserver", "workspaces", "route", "alice", "route", "d3", "route", "f3", "workspace")
	if err := e.h.PermissionCreated(ctx, e.grant(t, ws, "geoserver", "getfeature-allow-recursive")); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "thredds f3", e.perms(t, false, "alice", "catalog", "workspaces", "alice", "d3", "subdir", "f3"), "read-allow-recursive")
	// The principal is the event's: nothing for the group.
	wantPerms(t, "editors on thredds f3", e.perms(t, true, "editors", "catalog", "workspaces", "alice", "d3", "subdir", "f3"))
}

func TestGroupPermission(t *testing.T) {
	e := newEnv(t, exampleSync, magpietest.Options{})
	ctx := t.Context()
	file := e.add(t, "catalog", "workspaces", "directory", "alice", "directory", "subdir", "directory", "f1", "file")
	if err := e.srv.SetGroupPermission("editors", file, "read"); err != nil {
		t.Fatal(err)
	}
	ev := permEvent(file, "thredds", "read-allow-recursive", "", "editors")
	if err := e.h.PermissionCreated(ctx, ev); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "editors", e.perms(t, true, "editors", "geoserver", "workspaces", "alice", "f1"), gsRead...)
	wantPerms(t, "alice", e.perms(t, false, "alice", "geoserver", "workspaces", "alice", "f1"))

	if err := e.srv.DeleteGroupPermission("editors", file, "read"); err != nil {
		t.Fatal(err)
	}
	if err := e.h.PermissionDeleted(ctx, deleted(ev)); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "editors after delete", e.perms(t, true, "editors", "geoserver", "workspaces", "alice", "f1"))
}

func TestDeleteOnlyWhenNoOtherSourceGrants(t *testing.T) {
	e := newEnv(t, exampleSync, magpietest.Options{})
	ctx := t.Context()
	ws := e.add(t, "geoserver", "workspaces", "route", "alice", "route", "f1", "workspace")
	var evs []handlers.PermissionEvent
	for _, p := range gsRead {
		evs = append(evs, e.grant(t, ws, "geoserver", p))
		if err := e.h.PermissionCreated(ctx, evs[len(evs)-1]); err != nil {
			t.Fatal(err)
		}
	}
	wantPerms(t, "thredds f1", e.perms(t, false, "alice", "catalog", "workspaces", "alice", "subdir", "f1"), "read-allow-recursive")

	// Deleting two of the three sources keeps read: getfeatureinfo still grants it.
	for i, name := range []string{"getcapabilities", "getfeature"} {
		if err := e.srv.DeleteUserPermission("alice", ws, name); err != nil {
			t.Fatal(err)
		}
		if err := e.h.PermissionDeleted(ctx, deleted(evs[i])); err != nil {
			t.Fatal(err)
		}
		wantPerms(t, "thredds f1 after deleting "+name, e.perms(t, false, "alice", "catalog", "workspaces", "alice", "subdir", "f1"), "read-allow-recursive")
	}
	// The last source gone, read goes.
	if err := e.srv.DeleteUserPermission("alice", ws, "getfeatureinfo"); err != nil {
		t.Fatal(err)
	}
	if err := e.h.PermissionDeleted(ctx, deleted(evs[2])); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "thredds f1 after deleting all", e.perms(t, false, "alice", "catalog", "workspaces", "alice", "subdir", "f1"))
}

func TestWeaverOutputs(t *testing.T) {
	e := newEnv(t, exampleSync, magpietest.Options{})
	ctx := t.Context()
	job := e.add(t, "weaver", "processes", "route", "p1", "route", "jobs", "route", "j1", "route")
	if err := e.h.PermissionCreated(ctx, e.grant(t, job, "api", "read-allow-recursive")); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "wps outputs", e.perms(t, false, "alice", "weaver", "wpsoutputs", "weaver", "j1"), "read-allow-recursive")
	wantPerms(t, "job status", e.perms(t, false, "alice", "weaver", "jobs", "j1"), "read-allow-recursive")
	wantPerms(t, "process description", e.perms(t, false, "alice", "weaver", "processes", "p1"), "read-allow-match")
	// Not chained within one event: job_outputs comes from wps outputs' own webhook.
	wantPerms(t, "job outputs", e.perms(t, false, "alice", "weaver", "jobs", "j1", "outputs"))

	// Delete on job_status: a target-only key, nothing to do.
	if err := e.h.PermissionDeleted(ctx, deleted(permEvent(e.add(t, "weaver", "jobs", "route", "j1", "route"), "api", "read-allow-recursive", "alice", ""))); err != nil {
		t.Fatal(err)
	}

	// Deleting wps outputs' read removes job_outputs' and job_status' read;
	// process_job_status's read on a job of another process does not map
	// here, so it is checked and does not keep them.
	out := e.add(t, "weaver", "jobs", "route", "j1", "route", "outputs", "route")
	e.grant(t, out, "api", "read-allow-recursive")
	if err := e.srv.DeleteUserPermission("alice", job, "read"); err != nil {
		t.Fatal(err)
	}
	other := e.add(t, "weaver", "processes", "route", "p2", "route", "jobs", "route", "j2", "route")
	e.grant(t, other, "api", "read-allow-recursive")
	wps, _ := e.srv.Lookup("weaver", "wpsoutputs", "weaver", "j1")
	if err := e.srv.DeleteUserPermission("alice", wps, "read"); err != nil {
		t.Fatal(err)
	}
	if err := e.h.PermissionDeleted(ctx, deleted(permEvent(wps, "api", "read-allow-recursive", "alice", ""))); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "job outputs after delete", e.perms(t, false, "alice", "weaver", "jobs", "j1", "outputs"))
	wantPerms(t, "job status after delete", e.perms(t, false, "alice", "weaver", "jobs", "j1"))
}

func TestDeleteKeptByOtherSourceWithMoreVariables(t *testing.T) {
	e := newEnv(t, exampleSync, magpietest.Options{})
	ctx := t.Context()
	// job_status read comes from both wps outputs (jobID) and
	// process_job_status (processID, jobID): the original raised here.
	job := e.add(t, "weaver", "processes", "route", "p1", "route", "jobs", "route", "j1", "route")
	e.grant(t, job, "api", "read-allow-recursive")
	wps := e.add(t, "weaver", "wpsoutputs", "route", "weaver", "route", "j1", "route")
	ev := e.grant(t, wps, "api", "read-allow-recursive")
	if err := e.h.PermissionCreated(ctx, ev); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "job status", e.perms(t, false, "alice", "weaver", "jobs", "j1"), "read-allow-recursive")
	if err := e.srv.DeleteUserPermission("alice", wps, "read"); err != nil {
		t.Fatal(err)
	}
	if err := e.h.PermissionDeleted(ctx, deleted(ev)); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "job status kept", e.perms(t, false, "alice", "weaver", "jobs", "j1"), "read-allow-recursive")
	wantPerms(t, "job outputs removed", e.perms(t, false, "alice", "weaver", "jobs", "j1", "outputs"))
}

func TestStacRegexAndField(t *testing.T) {
	e := newEnv(t, exampleSync, magpietest.Options{})
	ctx := t.Context()
	colls := e.add(t, "stac", "stac", "route", "collections", "route")
	coll := e.addDisplay(t, colls, "testdata", "thredds:birdhouse/testdata/")
	items := e.add(t, "stac", "stac", "route", "collections", "route", "testdata", "route", "items", "route")
	item := e.addDisplay(t, items, "file1", "thredds:birdhouse/testdata/file1.nc")

	for _, tc := range []struct {
		id     int
		perm   string
		path   []string
		result string
	}{
		{coll, "read-allow-match", []string{"birdhouse", "testdata"}, "browse-allow-match"},
		{item, "read-deny-recursive", []string{"birdhouse", "testdata", "file1.nc"}, "browse-deny-recursive"},
	} {
		if err := e.h.PermissionCreated(ctx, e.grant(t, tc.id, "api", tc.perm)); err != nil {
			t.Fatal(err)
		}
		wantPerms(t, strings.Join(tc.path, "/"), e.perms(t, false, "alice", "thredds", tc.path...), tc.result)
	}
	// The collection's permission landed only on the directory.
	wantPerms(t, "birdhouse", e.perms(t, false, "alice", "thredds", "birdhouse"))
}

// specSync holds the token and regex examples of cowbird.md §4.2-§4.4.
const specSync = `
sync_permissions:
  examples:
    services:
      thredds:
        private_multi:
          - {name: catalog, type: service}
          - {name: private, type: directory}
          - {name: "**", type: directory}
          - {name: "{file}", type: file}
        public_multi:
          - {name: catalog, type: service}
          - {name: public, type: directory}
          - {name: "**", type: directory}
          - {name: "{file}", type: file}
        named1:
          - {name: catalog, type: service}
          - {name: named_dir1, type: directory}
          - {name: "{dir1}", type: directory}
          - {name: "{dir2}", type: directory}
        named2:
          - {name: catalog, type: service}
          - {name: named_dir2, type: directory}
          - {name: "{dir2}", type: directory}
          - {name: "{dir1}", type: directory}
        shared_any:
          - {name: catalog, type: service}
          - {name: shared, type: directory}
          - {name: "**", type: directory}
        shared_deep:
          - {name: catalog, type: service}
          - {name: shared, type: directory}
          - {name: d1, type: directory}
          - {name: d2, type: directory}
          - {name: "**", type: directory}
        service_root:
          - {name: catalog, type: service}
          - {name: "**", type: directory}
        deep_target:
          - {name: catalog, type: service}
          - {name: deep, type: directory}
          - {name: "**", type: directory}
        by_display:
          - {name: catalog, type: service}
          - {type: file, field: resource_display_name, regex: '[\w]+:[\w\/.-]+'}
        display_target:
          - {name: catalog, type: service}
          - {type: directory, regex: '(?<=catalog:)[\w\/]*\/?(?=\/)'}
          - {type: file, regex: '[^\/]+$'}
      api:
        amb1:
          - {name: weaver, type: service}
          - {name: "{a}", type: route}
        amb2:
          - {name: weaver, type: service}
          - {name: "{a}", type: route}
    permissions_mapping:
      - "private_multi : read -> public_multi : read"
      - "named1 : read -> named2 : read"
      - "shared_any : write -> service_root : write"
      - "shared_deep : write -> deep_target : write"
      - "by_display : read -> display_target : read-match"
      - "amb1 : read -> amb2 : write"
      - "amb2 : read -> amb1 : write"
`

func TestSpecPathExamples(t *testing.T) {
	e := newEnv(t, specSync, magpietest.Options{})
	ctx := t.Context()
	for _, tc := range []struct {
		name   string
		source []string // name, type pairs under catalog
		perm   string
		target []string // names under catalog
		want   string
	}{
		{"multi and var", []string{"private", "directory", "dir1", "directory", "dir2", "directory", "workspace_file", "file"},
			"read-allow-recursive", []string{"public", "dir1", "dir2", "workspace_file"}, "read-allow-recursive"},
		{"swapped vars", []string{"named_dir1", "directory", "x", "directory", "y", "directory"},
			"read-allow-recursive", []string{"named_dir2", "y", "x"}, "read-allow-recursive"},
		{"zero-length multi on the service", []string{"shared", "directory"},
			"write-allow-recursive", nil, "write-allow-recursive"},
		{"more literals win", []string{"shared", "directory", "d1", "directory", "d2", "directory", "d3", "directory"},
			"write-allow-recursive", []string{"deep", "d3"}, "write-allow-recursive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.add(t, "catalog", tc.source...)
			if err := e.h.PermissionCreated(ctx, e.grant(t, id, "thredds", tc.perm)); err != nil {
				t.Fatal(err)
			}
			wantPerms(t, strings.Join(tc.target, "/"), e.perms(t, false, "alice", "catalog", tc.target...), tc.want)
		})
	}
	if _, ok := e.srv.Lookup("catalog", "d1"); ok {
		t.Error("the less specific key shared_any synced too")
	}
}

func TestSpecDisplayNameRegex(t *testing.T) {
	e := newEnv(t, specSync, magpietest.Options{})
	in := map[string]any{"resource_name": "file0", "resource_display_name": "catalog:directory/file.nc", "resource_type": "file"}
	svc, _ := e.srv.Lookup("catalog")
	in["parent_id"] = svc
	var out struct {
		Resource Resource `json:"resource"`
	}
	if _, err := e.c.call(t.Context(), http.MethodPost, "/resources", nil, in, &out); err != nil {
		t.Fatal(err)
	}
	if err := e.h.PermissionCreated(t.Context(), e.grant(t, out.Resource.ID, "thredds", "read-allow-recursive")); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "directory/file.nc", e.perms(t, false, "alice", "catalog", "directory", "file.nc"), "read-allow-match")
}

func TestNoOpCases(t *testing.T) {
	e := newEnv(t, specSync, magpietest.Options{})
	ctx := t.Context()
	cases := []struct {
		name string
		ev   handlers.PermissionEvent
	}{
		// A resource of the wrong type matches no key.
		{"no match", e.grant(t, e.add(t, "catalog", "private", "directory", "f", "directory"), "thredds", "read-allow-recursive")},
		// A mapped resource, an unmapped permission: logged, not an error
		// (the original answered 500).
		{"unmapped permission", e.grant(t, e.add(t, "catalog", "named_dir1", "directory", "a", "directory", "b", "directory"), "thredds", "write-allow-recursive")},
		{"unmapped access", e.grant(t, e.add(t, "catalog", "named_dir1", "directory", "a", "directory", "b", "directory"), "thredds", "read-deny-recursive")},
		// A service type with no key in any sync point.
		{"other service type", e.grant(t, e.add(t, "geoserver"), "geoserver", "getmap-allow-recursive")},
	}
	before := len(e.srv.Resources())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			patches := e.srv.Hits("PATCH /permissions")
			if err := e.h.PermissionCreated(ctx, tc.ev); err != nil {
				t.Fatal(err)
			}
			if got := e.srv.Hits("PATCH /permissions"); got != patches {
				t.Errorf("%d PATCH /permissions sent, want none", got-patches)
			}
		})
	}
	if got := len(e.srv.Resources()); got != before {
		t.Errorf("%d resources, want the %d seeded", got, before)
	}
}

func TestAmbiguousMatch(t *testing.T) {
	e := newEnv(t, specSync, magpietest.Options{})
	id := e.add(t, "weaver", "r", "route")
	err := e.h.PermissionCreated(t.Context(), e.grant(t, id, "api", "read-allow-recursive"))
	want := "Found multiple matching resources of the same length in the config in the service type api. Ambiguous config resources : ['amb1', 'amb2']"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want it to contain %q", err, want)
	}
	if handlers.IsTransient(err) {
		t.Error("ambiguity is reported as transient")
	}
	wantPerms(t, "weaver/r", e.perms(t, false, "alice", "weaver", "r"), "read-allow-recursive")
}

func TestTransientFailureRetriesWithoutDuplicates(t *testing.T) {
	e := newEnv(t, exampleSync, magpietest.Options{})
	ctx := t.Context()
	file := e.add(t, "catalog", "workspaces", "directory", "alice", "directory", "subdir", "directory", "f1", "file")
	ev := e.grant(t, file, "thredds", "read-allow-recursive")
	e.srv.Inject("PATCH /permissions", magpietest.Fault{}) // the first passes
	e.srv.FailNext("PATCH /permissions", 1, http.StatusServiceUnavailable)

	err := e.h.PermissionCreated(ctx, ev)
	if !handlers.IsTransient(err) {
		t.Fatalf("error %v is not transient", err)
	}
	var me *Error
	if !errors.As(err, &me) || me.Status != http.StatusServiceUnavailable {
		t.Errorf("error %v does not wrap the 503", err)
	}
	wantPerms(t, "after 503", e.perms(t, false, "alice", "geoserver", "workspaces", "alice", "f1"), gsRead[0])

	patches := e.srv.Hits("PATCH /permissions")
	if err := e.h.PermissionCreated(ctx, ev); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "after retry", e.perms(t, false, "alice", "geoserver", "workspaces", "alice", "f1"), gsRead...)
	if got := e.srv.Hits("PATCH /permissions") - patches; got != 2 {
		t.Errorf("retry sent %d PATCH /permissions, want the 2 missing", got)
	}
	// Requests per event: the resource path, the user's permissions, one
	// PATCH per missing target permission (sign-in done already).
	before := e.c.Requests()
	if err := e.h.PermissionCreated(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if got := e.c.Requests() - before; got != 2 {
		t.Errorf("an event with nothing to change sent %d requests, want 2", got)
	}
}

// receiver is cowbird's permission webhook endpoint, reduced to the handler.
type receiver struct {
	h    *Handler
	mu   sync.Mutex
	errs []error
	n    int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Event       string `json:"event"`
		ServiceName string `json:"service_name"`
		ServiceType string `json:"service_type"`
		ResourceID  int    `json:"resource_id"`
		FullName    string `json:"resource_full_name"`
		Name        string `json:"name"`
		Access      string `json:"access"`
		Scope       string `json:"scope"`
		User        string `json:"user"`
		Group       string `json:"group"`
	}
	err := json.NewDecoder(r.Body).Decode(&body)
	if err == nil {
		ev := handlers.PermissionEvent{Action: handlers.Action(body.Event), ServiceName: body.ServiceName, ServiceType: body.ServiceType,
			ResourceID: body.ResourceID, ResourceFullName: body.FullName, PermName: body.Name, Access: body.Access, Scope: body.Scope,
			User: body.User, Group: body.Group}
		if ev.Action == handlers.Created {
			err = rc.h.PermissionCreated(r.Context(), ev)
		} else {
			err = rc.h.PermissionDeleted(r.Context(), ev)
		}
	}
	rc.mu.Lock()
	rc.n++
	if err != nil {
		rc.errs = append(rc.errs, err)
	}
	rc.mu.Unlock()
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
	}
}

func TestNoPingPong(t *testing.T) {
	rc := &receiver{}
	hs := httptest.NewServer(rc)
	t.Cleanup(hs.Close)
	e := newEnv(t, exampleSync, magpietest.Options{Webhooks: magpietest.CowbirdWebhooks(hs.URL)})
	rc.h = e.h
	ctx := t.Context()
	file := e.add(t, "catalog", "workspaces", "directory", "alice", "directory", "subdir", "directory", "f1", "file")

	run := func(step string, change func() error, wantWebhooks, wantPatches int) {
		t.Helper()
		patches, webhooks := e.srv.Hits("PATCH /permissions"), e.srv.Delivered()
		if err := change(); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := e.srv.WaitWebhooks(wctx); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if got := e.srv.Delivered() - webhooks; got != wantWebhooks {
			t.Errorf("%s: %d webhooks, want %d", step, got, wantWebhooks)
		}
		if got := e.srv.Hits("PATCH /permissions") - patches; got != wantPatches {
			t.Errorf("%s: %d PATCH /permissions, want %d", step, got, wantPatches)
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if len(rc.errs) > 0 {
			t.Fatalf("%s: handler errors %v", step, rc.errs)
		}
	}
	// One read on thredds: 3 PATCHes, whose 3 webhooks find thredds' read in place.
	run("create", func() error {
		_, err := e.c.SetUserPermission(ctx, "alice", file, Permission{Name: "read", Access: "allow", Scope: "recursive"})
		return err
	}, 4, 3)
	wantPerms(t, "geoserver after create", e.perms(t, false, "alice", "geoserver", "workspaces", "alice", "f1"), gsRead...)

	run("delete", func() error { return e.c.DeleteUserPermission(ctx, "alice", file, "read") }, 4, 3)
	wantPerms(t, "geoserver after delete", e.perms(t, false, "alice", "geoserver", "workspaces", "alice", "f1"))
	wantPerms(t, "thredds after delete", e.perms(t, false, "alice", "catalog", "workspaces", "alice", "subdir", "f1"))
}

func TestValidate(t *testing.T) {
	bad := strings.Replace(specSync, "      api:\n", "      wrongtype:\n", 1)
	e := newEnv(t, bad, magpietest.Options{})
	err := e.h.Validate(t.Context())
	want := "sync.yml: sync_permissions.examples.services.wrongtype: Service `wrongtype` used in sync config is not valid since it was not found in Magpie services (['access', 'api', 'geoserver', 'geoserverwfs', 'geoserverwms', 'geoserverwps', 'ncwms', 'thredds', 'wfs', 'wps'])."
	if err == nil || err.Error() != want {
		t.Fatalf("Validate: %v\nwant %s", err, want)
	}
	if handlers.IsTransient(err) {
		t.Error("an unknown service type is reported as transient")
	}

	good := newEnv(t, exampleSync, magpietest.Options{})
	good.srv.FailNext("GET /services/types", 1, http.StatusServiceUnavailable)
	if err := good.h.Validate(t.Context()); !handlers.IsTransient(err) {
		t.Fatalf("Validate with Magpie down: %v, want a transient error", err)
	}
	if err := good.h.Validate(t.Context()); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestNewHandlerRejectsBadPoints(t *testing.T) {
	for _, tc := range []struct {
		name string
		sp   config.SyncPoint
		want string
	}{
		{"undefined key", config.SyncPoint{Name: "p", Services: []config.Service{{Type: "api", Resources: []config.Resource{{Key: "a",
			Segments: []config.Segment{{Name: "s", Type: "service"}}}}}},
			Mappings: []config.Mapping{{LeftKey: "a", RightKey: "b", Direction: config.LeftToRight,
				LeftPerms: []config.Permission{{Name: "read", Access: "allow", Scope: "match"}}, RightPerms: []config.Permission{{Name: "read", Access: "allow", Scope: "match"}}}}},
			"sync point p: mapping references resource b which is not defined in any service"},
		{"literal not a pattern", config.SyncPoint{Name: "p", Services: []config.Service{{Type: "api", Resources: []config.Resource{{Key: "a",
			Segments: []config.Segment{{Name: "s(", Type: "service"}}}}}}},
			"sync point p: resource a: segments do not form a valid pattern"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewHandler([]config.SyncPoint{tc.sp}, NewClient(ClientOptions{URL: "http://127.0.0.1:1"}), discard())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewHandler: %v, want %q", err, tc.want)
			}
		})
	}
}
