package magpie

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// pythonSync uses what the original's Python regexes allow: named groups
// (?P<name>...) and a named backreference (?P=name).
const pythonSync = `
sync_permissions:
  python:
    services:
      api:
        stac_item:
          - {name: stac, type: service}
          - {name: stac, type: route}
          - {name: collections, type: route}
          - {name: "{collectionId}", type: route}
          - {name: items, type: route}
          - {type: route, field: resource_display_name, regex: '(?P<svc>[\w]+):(?P<path>[\w\/.-]+)'}
        mirror_route:
          - {name: weaver, type: service}
          - {type: route, regex: '(?<=/)(?P<name>\w+)(?=::)'}
      thredds:
        thredd_item:
          - {name: thredds, type: service}
          - {type: directory, regex: '(?<=:)(?P<dirs>.*)\/?(?=\/)'}
          - {type: file, regex: '(?P<file>[^\/]+)$'}
        mirror_dir:
          - {name: catalog, type: service}
          - {type: directory, regex: '/(?P<d>\w+)::directory/(?P=d)::directory$'}
    permissions_mapping:
      - "stac_item : read-match -> thredd_item : browse-match"
      - "mirror_dir : read -> mirror_route : read"
`

// fieldSync reads parent_id, which Magpie's resources have, to name a
// target route.
const fieldSync = `
sync_permissions:
  fields:
    services:
      thredds:
        by_parent:
          - {name: catalog, type: service}
          - {name: by_parent, type: directory}
          - {name: "{parent}", type: file, field: parent_id}
      api:
        by_parent_route:
          - {name: weaver, type: service}
          - {name: parents, type: route}
          - {name: "{parent}", type: route}
    permissions_mapping:
      - "by_parent : read -> by_parent_route : read"
`

// missingFieldSync names a key Magpie's resources do not have.
const missingFieldSync = `
sync_permissions:
  typo:
    services:
      thredds:
        by_color:
          - {name: catalog, type: service}
          - {name: "{x}", type: directory, field: resource_color}
      api:
        route:
          - {name: weaver, type: service}
          - {name: "{x}", type: route}
    permissions_mapping:
      - "by_color : read -> route : read"
`

// TestSyncPythonRegex: regex segments in Python's syntax, which the
// original accepts, compile and match as Python's re would.
func TestSyncPythonRegex(t *testing.T) {
	e := newEnv(t, pythonSync, magpietest.Options{})
	ctx := t.Context()

	items := e.add(t, "stac", "stac", "route", "collections", "route", "testdata", "route", "items", "route")
	item := e.addDisplay(t, items, "file1", "thredds:birdhouse/testdata/file1.nc")
	if err := e.h.PermissionCreated(ctx, e.grant(t, item, "api", "read-allow-match")); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "thredds item", e.perms(t, false, "alice", "thredds", "birdhouse", "testdata", "file1.nc"), "browse-allow-match")

	// (?P=d): the same name twice in a row matches, different names do not.
	same := e.add(t, "catalog", "mirror", "directory", "mirror", "directory")
	if err := e.h.PermissionCreated(ctx, e.grant(t, same, "thredds", "read-allow-recursive")); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "weaver/mirror", e.perms(t, false, "alice", "weaver", "mirror"), "read-allow-recursive")
	other := e.add(t, "catalog", "left", "directory", "right", "directory")
	if err := e.h.PermissionCreated(ctx, e.grant(t, other, "thredds", "read-allow-recursive")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"left", "right"} {
		if _, ok := e.srv.Lookup("weaver", name); ok {
			t.Errorf("weaver/%s created: the backreference matched different names", name)
		}
	}
}

// TestSyncFieldAnyKey: a segment's field may name any key of Magpie's
// resource JSON, printed as the original's f-string prints it; a key the
// resource lacks fails the event, as the original's KeyError does.
func TestSyncFieldAnyKey(t *testing.T) {
	e := newEnv(t, fieldSync, magpietest.Options{})
	ctx := t.Context()
	dir := e.add(t, "catalog", "by_parent", "directory")
	file := e.add(t, "catalog", "by_parent", "directory", "f1", "file")
	if err := e.h.PermissionCreated(ctx, e.grant(t, file, "thredds", "read-allow-recursive")); err != nil {
		t.Fatal(err)
	}
	wantPerms(t, "weaver/parents/<id>", e.perms(t, false, "alice", "weaver", "parents", strconv.Itoa(dir)), "read-allow-recursive")

	e = newEnv(t, missingFieldSync, magpietest.Options{})
	odd := e.add(t, "catalog", "d", "directory")
	err := e.h.PermissionCreated(ctx, e.grant(t, odd, "thredds", "read-allow-recursive"))
	if err == nil || !strings.Contains(err.Error(), `resource by_color segment 1: field "resource_color" is not a key of Magpie's resource`) {
		t.Fatalf("PermissionCreated with a field the resource lacks: %v", err)
	}
}

// TestResourceField: the values of the resource JSON's keys, as Python's
// str() prints what json.loads made of them (checked with CPython 3).
func TestResourceField(t *testing.T) {
	var r Resource
	node := `{"resource_name": "f1", "resource_display_name": "a\u00e9b", "resource_type": "file", "resource_id": 6,
		"parent_id": 5, "root_service_id": null, "flag": true, "off": false, "neg": -0, "big": 123456789012345678901234567890,
		"f1": 1.0, "f2": 1e16, "f3": 1e15, "f4": 0.0001, "f5": 0.00001, "f6": 1.5e-07,
		"list": [1, "it's", null, {"k": "v\n"}], "obj": {"b": 1, "a": [true, 2.5]}, "quotes": ["say \"hi\" it's"],
		"odd": ["\u0007\u00a0\u200b"], "empty": [], "none": {},
		"permission_names": ["read", "read-allow-recursive"],
		"permissions": [{"name": "read", "access": "allow", "scope": "recursive", "type": "direct", "reason": "user:3:alice"}],
		"children": {}}`
	if err := json.Unmarshal([]byte(node), &r); err != nil {
		t.Fatal(err)
	}
	r.fields, _ = nodeFields(json.RawMessage(node)) // as ResourcePath does
	for key, want := range map[string]string{
		"resource_name": "f1", "resource_display_name": "aéb", "resource_type": "file", "resource_id": "6",
		"parent_id": "5", "root_service_id": "None", "flag": "True", "off": "False", "neg": "0",
		"big": "123456789012345678901234567890", "f1": "1.0", "f2": "1e+16", "f3": "1000000000000000.0",
		"f4": "0.0001", "f5": "1e-05", "f6": "1.5e-07",
		"list": `[1, "it's", None, {'k': 'v\n'}]`, "obj": "{'b': 1, 'a': [True, 2.5]}",
		"quotes": `['say "hi" it\'s']`, "odd": `['\x07\xa0\u200b']`, "empty": "[]", "none": "{}",
		"permission_names": "['read', 'read-allow-recursive']",
		"permissions":      "[{'name': 'read', 'access': 'allow', 'scope': 'recursive', 'type': 'direct', 'reason': 'user:3:alice'}]",
	} {
		got, ok := r.field(key)
		if !ok || got != want {
			t.Errorf("field(%s) = %q, %v; want %q", key, got, ok, want)
		}
	}
	for _, key := range []string{"children", "resource_color", ""} {
		if got, ok := r.field(key); ok {
			t.Errorf("field(%q) = %q, want no such key", key, got)
		}
	}

	// A Resource built in code knows its typed fields.
	svc := &Resource{ID: 1, Name: "catalog", DisplayName: "catalog", Type: "service"}
	for key, want := range map[string]string{"resource_name": "catalog", "resource_id": "1", "parent_id": "None", "permissions": "[]"} {
		if got, ok := svc.field(key); !ok || got != want {
			t.Errorf("built resource: field(%s) = %q, %v; want %q", key, got, ok, want)
		}
	}
}
