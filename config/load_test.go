package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/cowbird-go/cowbird/app"
	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/handlers"
)

// The tests of this file load with the real handler kinds (app.Kinds): app
// imports config, so they live in package config_test.

// kinds are the handler kinds of this build.
var kinds = app.ConfigKinds(app.Kinds)

func mustLoad(t *testing.T, path string, vars map[string]string) (*config.Config, *logtest.Hook) {
	t.Helper()
	log, hook := config.NewLog()
	cfg, err := config.LoadWith(path, log, kinds, config.Env(vars))
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return cfg, hook
}

// dispatchOrder orders the handlers of cfg with the real registry.
func dispatchOrder(t *testing.T, cfg *config.Config) []string {
	t.Helper()
	var regs []handlers.Registration
	for _, h := range cfg.Handlers {
		regs = append(regs, handlers.Registration{Handler: handlers.Named(h.Name), Active: h.Active, Priority: h.Priority})
	}
	reg, err := handlers.NewRegistry(regs...)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range reg.Active() {
		out = append(out, h.Name())
	}
	return out
}

// settings returns the typed settings of cfg's entry name.
func settings[T any](t *testing.T, cfg *config.Config, name string) (config.HandlerConfig, *T) {
	t.Helper()
	hc, ok := cfg.Handler(name)
	if !ok {
		t.Fatalf("no %s handler", name)
	}
	s, ok := hc.Settings.(*T)
	if !ok || s == nil {
		t.Fatalf("%s settings = %#v, want a %T", name, hc.Settings, s)
	}
	return hc, s
}

var exampleEnv = map[string]string{
	"HOSTNAME":                             "example.org",
	"MAGPIE_ADMIN_USER":                    "admin",
	"MAGPIE_ADMIN_PASSWORD":                "magpie-pw",
	"GEOSERVER_ADMIN":                      "gsadmin",
	"GEOSERVER_PASSWORD":                   "gs-pw",
	"WORKSPACE_DIR":                        "/data/user_workspaces",
	"JUPYTERHUB_USER_DATA_DIR":             "/data/jupyterhub_user_data",
	"WPS_OUTPUTS_DIR":                      "/data/wps_outputs//",
	"SECURE_DATA_PROXY_NAME":               "secure-data-proxy",
	"WPS_OUTPUTS_RES_NAME":                 "wps_outputs",
	"PUBLIC_WORKSPACE_WPS_OUTPUTS_SUBPATH": "public/wps_outputs",
	"NOTEBOOKS_DIR_NAME":                   "notebooks",
	// USER_WPS_OUTPUTS_DIR_NAME is left undefined on purpose.
}

func TestLoadExample(t *testing.T) {
	cfg, hook := mustLoad(t, "testdata/example.yml", exampleEnv)

	if got, want := dispatchOrder(t, cfg), []string{"FileSystem", "Magpie", "Geoserver", "Catalog", "Thredds", "Nginx"}; !slices.Equal(got, want) {
		t.Errorf("dispatch order = %v, want %v", got, want)
	}
	mg, mgs := settings[config.Credentials](t, cfg, "Magpie")
	if mg.URL != "https://example.org/magpie" || mgs.AdminUser != "admin" || mgs.AdminPassword.Reveal() != "magpie-pw" {
		t.Errorf("Magpie = %+v, %+v", mg, *mgs)
	}
	gs, gss := settings[config.Credentials](t, cfg, "Geoserver")
	if gs.URL != "http://example.org:8765/geoserver" || gs.WorkspaceDir != "/data/user_workspaces" ||
		gss.AdminUser != "gsadmin" || gss.AdminPassword.Reveal() != "gs-pw" {
		t.Errorf("Geoserver = %+v, %+v", gs, *gss)
	}
	fs, fss := settings[filesystem.Config](t, cfg, "FileSystem")
	if fs.WorkspaceDir != "/data/user_workspaces" {
		t.Errorf("FileSystem entry workspace_dir = %q", fs.WorkspaceDir)
	}
	want := filesystem.Config{
		WorkspaceDir:                     "/data/user_workspaces",
		JupyterhubUserDataDir:            "/data/jupyterhub_user_data",
		WPSOutputsDir:                    "/data/wps_outputs",
		SecureDataProxyName:              "secure-data-proxy",
		WPSOutputsResName:                "wps_outputs",
		NotebooksDirName:                 "notebooks",
		PublicWorkspaceWPSOutputsSubpath: "public/wps_outputs",
		UserWPSOutputsDirName:            "${USER_WPS_OUTPUTS_DIR_NAME}", // undefined: left as written
		OnUserDeleted:                    filesystem.DeleteWorkspace,
		MagpieConcurrency:                filesystem.DefaultMagpieConcurrency,
	}
	if *fss != want {
		t.Errorf("FileSystem =\n%+v, want\n%+v", *fss, want)
	}
	if fs.Priority == nil || *fs.Priority != 1 || mg.Priority != nil {
		t.Errorf("priorities: FileSystem %v, Magpie %v", fs.Priority, mg.Priority)
	}
	if got, want := config.Warnings(hook), []string{"undefined environment variables left as written in the config variables=${USER_WPS_OUTPUTS_DIR_NAME}"}; !slices.Equal(got, want) {
		t.Errorf("warnings = %q, want %q", got, want)
	}

	var names []string
	for _, sp := range cfg.SyncPoints {
		names = append(names, sp.Name)
	}
	if want := []string{"user_workspace", "weaver_outputs", "stac_permissions"}; !slices.Equal(names, want) {
		t.Errorf("sync points = %v, want %v", names, want)
	}
	if got, want := cfg.ServiceTypes(), []string{"api", "geoserver", "thredds"}; !slices.Equal(got, want) {
		t.Errorf("ServiceTypes = %v, want %v", got, want)
	}
}

func TestExampleSyncPermissions(t *testing.T) {
	cfg, _ := mustLoad(t, "testdata/example.yml", exampleEnv)
	uw, weaver, stac := cfg.SyncPoints[0], cfg.SyncPoints[1], cfg.SyncPoints[2]

	res, svc, ok := uw.Resource("thredds_workspace")
	if !ok || svc != "thredds" {
		t.Fatalf("thredds_workspace: ok %v, service %q", ok, svc)
	}
	var segs []config.SegmentKind
	for _, s := range res.Segments {
		segs = append(segs, s.Kind)
	}
	if want := []config.SegmentKind{config.Literal, config.Literal, config.Var, config.Multi, config.Literal, config.Var}; !slices.Equal(segs, want) {
		t.Errorf("segment kinds = %v, want %v", segs, want)
	}
	if got := res.Vars(); !slices.Equal(got, []string{"user", "synched_file"}) || !res.HasMulti() {
		t.Errorf("Vars = %v, HasMulti = %v", got, res.HasMulti())
	}

	rules := uw.Rules()
	if len(rules) != 4 {
		t.Fatalf("user_workspace has %d rules, want 4 (two <-> lines)", len(rules))
	}
	r := rules[0]
	if r.SourceKey != "geoserver_workspace" || r.TargetKey != "thredds_workspace" ||
		strings.Join(perms(r.SourcePerms), ",") != "getCapabilities-allow-recursive,getFeature-allow-recursive,getFeatureInfo-allow-recursive" ||
		strings.Join(perms(r.TargetPerms), ",") != "read-allow-recursive" {
		t.Errorf("rule 0 = %+v", r)
	}
	if r := rules[1]; r.SourceKey != "thredds_workspace" || r.TargetKey != "geoserver_workspace" {
		t.Errorf("rule 1 (reverse of <->) = %+v", r)
	}

	last := weaver.Rules()[len(weaver.Rules())-1]
	if last.SourceKey != "process_job_status" || last.TargetKey != "process_description" || last.TargetPerms[0].String() != "read-allow-match" {
		t.Errorf("read-match rule = %+v", last)
	}

	// The look-around regexes of the example compile (regexp2) and find
	// what cowbird.md §4.4 says they find.
	item, _, _ := stac.Resource("thredd_item")
	for i, want := range map[int]string{1: "directory", 2: "file.nc"} {
		m, err := item.Segments[i].Regexp.FindStringMatch("catalog:directory/file.nc")
		if err != nil || m == nil || m.String() != want {
			t.Errorf("segment %d regex %q found %v (err %v), want %q", i, item.Segments[i].Pattern, m, err, want)
		}
	}
	if seg := item.Segments[1]; seg.Kind != config.Regex || seg.Type != "directory" {
		t.Errorf("regex segment = %+v", seg)
	}
	coll, _, _ := stac.Resource("stac_collection")
	if seg := coll.Segments[3]; seg.Field != "resource_display_name" {
		t.Errorf("field = %q", seg.Field)
	}
	if r := stac.Rules()[2]; r.SourcePerms[0] != (config.Permission{"read", "deny", "match"}) || r.TargetPerms[0] != (config.Permission{"browse", "deny", "match"}) {
		t.Errorf("explicit deny rule = %+v", r)
	}
}

var perms = config.Perms

func TestLoadBirdhouse(t *testing.T) {
	cfg, hook := mustLoad(t, "testdata/birdhouse.yml", map[string]string{
		"WORKSPACE_DIR": "/data/user_workspaces", "WPS_OUTPUTS_DIR": "/data/wps_outputs",
	})
	fs, fss := settings[filesystem.Config](t, cfg, "FileSystem")
	if got := fss.PublicWorkspaceWPSOutputsSubpath; got != "public/wps_outputs" {
		t.Errorf("subpath from public_workspace_wps_outputs_subdir = %q", got)
	}
	if fss.WPSOutputsResName != "wpsoutputs" || fss.WorkspaceDir != "/data/user_workspaces" || fs.WorkspaceDir != "/data/user_workspaces" {
		t.Errorf("FileSystem = %+v, %+v", fs, *fss)
	}
	tw, _, _ := cfg.SyncPoints[1].Resource("thredds_wps_outputs")
	if tw.Segments[1].Name != "${THREDDS_SERVICE_DATA_URL_PATH}" {
		t.Errorf("undefined variable in a segment name = %q", tw.Segments[1].Name)
	}
	if got, want := config.Warnings(hook), []string{
		"undefined environment variables left as written in the config variables=${GEOSERVER_ADMIN_USER}, ${THREDDS_SERVICE_DATA_URL_PATH}",
	}; !slices.Equal(got, want) {
		t.Errorf("warnings = %q, want %q", got, want)
	}
	if got, want := dispatchOrder(t, cfg), []string{"FileSystem", "Magpie", "Geoserver", "Catalog", "Thredds", "Nginx"}; !slices.Equal(got, want) {
		t.Errorf("dispatch order = %v, want %v", got, want)
	}
}

func TestUnknownNamesKeysAndSubpathAlias(t *testing.T) {
	cfg, hook := mustLoad(t, "testdata/unknown-handler-and-keys.json", nil)
	var names []string
	for _, h := range cfg.Handlers {
		names = append(names, h.Name)
	}
	if want := []string{"Nginx", "FileSystem"}; !slices.Equal(names, want) {
		t.Errorf("handlers = %v, want %v (unknown names left out)", names, want)
	}
	_, fss := settings[filesystem.Config](t, cfg, "FileSystem")
	if got := fss.PublicWorkspaceWPSOutputsSubpath; got != "pub/a" {
		t.Errorf("subpath = %q, want _subpath to win", got)
	}
	want := []string{
		"unknown handler name; it is never instantiated file=unknown-handler-and-keys.json handler=Foo",
		"unknown handler key ignored file=unknown-handler-and-keys.json handler=Nginx key=colour",
		"handlers.FileSystem: public_workspace_wps_outputs_subpath and public_workspace_wps_outputs_subdir differ; using public_workspace_wps_outputs_subpath handler=FileSystem public_workspace_wps_outputs_subdir=pub/b public_workspace_wps_outputs_subpath=pub/a",
		"Config file section [sync_permissions] not found. file=testdata/unknown-handler-and-keys.json",
	}
	if got := config.Warnings(hook); !slices.Equal(got, want) {
		t.Errorf("warnings =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("20-second.yaml", `
handlers:
  Magpie: {active: false}
  Thredds: {active: false, priority: 9}
sync_permissions:
  second: {services: {}, permissions_mapping: []}
`)
	write("10-first.yml", `
handlers:
  Thredds: {active: true, priority: 2}
  Nginx: {active: true, priority: 1}
sync_permissions:
  first: {services: {}, permissions_mapping: []}
`)
	write("notes.txt", "not: [yaml")
	if err := os.Mkdir(filepath.Join(dir, "sub.yml"), 0o755); err != nil {
		t.Fatal(err)
	}

	cfg, hook := mustLoad(t, dir, nil)
	var names []string
	for _, h := range cfg.Handlers {
		names = append(names, h.Name)
	}
	if want := []string{"Thredds", "Nginx", "Magpie"}; !slices.Equal(names, want) {
		t.Errorf("handlers = %v, want %v", names, want)
	}
	th, _ := cfg.Handler("Thredds")
	if !th.Active || *th.Priority != 2 || th.File != "10-first.yml" {
		t.Errorf("Thredds = %+v, want the first file's definition", th)
	}
	if got := []string{cfg.SyncPoints[0].Name, cfg.SyncPoints[1].Name}; !slices.Equal(got, []string{"first", "second"}) {
		t.Errorf("sync points = %v", got)
	}
	if got, want := config.Warnings(hook), []string{"handler already defined in an earlier file; this definition is ignored file=20-second.yaml handler=Thredds"}; !slices.Equal(got, want) {
		t.Errorf("warnings = %q, want %q", got, want)
	}
}

func TestLoadExpandsKeysAndValuesFromProcessEnv(t *testing.T) {
	t.Setenv("COWBIRD_TEST_HANDLER", "Catalog")
	t.Setenv("COWBIRD_TEST_HOST", "cat.example.org")
	path := filepath.Join(t.TempDir(), "c.yml")
	body := "handlers:\n  ${COWBIRD_TEST_HANDLER}:\n    url: http://$COWBIRD_TEST_HOST/x/${COWBIRD_TEST_UNDEFINED}\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	log, _ := config.NewLog()
	cfg, err := config.Load(path, log, kinds)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := cfg.Handler("Catalog")
	if !ok || h.URL != "http://cat.example.org/x/${COWBIRD_TEST_UNDEFINED}" {
		t.Errorf("Catalog = %+v (found %v)", h, ok)
	}
}

func TestLoadInvalid(t *testing.T) {
	for _, tc := range []struct {
		file string
		path string // Path of the first FieldError; empty when the error is not Errors
		text string
	}{
		{"invalid-priority-bool.yml", "handlers.FileSystem.priority",
			"invalid-priority-bool.yml: handlers.FileSystem.priority: must be an integer, got a boolean"},
		{"invalid-skipped-handler.yml", "handlers.Foo.active",
			"invalid-skipped-handler.yml: handlers.Foo.active: must be a boolean, got a string"},
		{"invalid-active-string.yml", "handlers.Thredds.active",
			"invalid-active-string.yml: handlers.Thredds.active: must be a boolean, got a string"},
		{"invalid-active-env-string.yml", "handlers.Thredds.active",
			"invalid-active-env-string.yml: handlers.Thredds.active: must be a boolean, got a string"},
		{"invalid-handler-null.yml", "handlers.Nginx",
			"invalid-handler-null.yml: handlers.Nginx: must be a mapping, got null"},
		{"invalid-handlers-list.yml", "handlers",
			"invalid-handlers-list.yml: handlers: must be a mapping, got a list"},
		{"invalid-empty-notebooks-dir-name.yml", "handlers.Thredds.notebooks_dir_name",
			"invalid-empty-notebooks-dir-name.yml: handlers.Thredds.notebooks_dir_name: must be a non-empty string"},
		{"invalid-url-integer.yml", "handlers.Catalog.url",
			"invalid-url-integer.yml: handlers.Catalog.url: must be a string, got an integer"},
		{"invalid-on-user-deleted.yml", "handlers.FileSystem.on_user_deleted",
			`invalid-on-user-deleted.yml: handlers.FileSystem.on_user_deleted: must be "delete" or "archive", got "shred"`},
		{"invalid-magpie-concurrency.yml", "handlers.FileSystem.magpie_concurrency",
			`invalid-magpie-concurrency.yml: handlers.FileSystem.magpie_concurrency: must be an integer from 1 to 256, got "0"`},
		{"invalid-timestamp-value.yml", "handlers.Thredds.since",
			"invalid-timestamp-value.yml: handlers.Thredds.since: unsupported value type !!timestamp"},
		{"invalid-duplicate-handler-in-file.yml", "handlers.Thredds",
			"invalid-duplicate-handler-in-file.yml: handlers.Thredds: duplicate key"},
		{"missing-filesystem-params.yml", "handlers.FileSystem.jupyterhub_user_data_dir",
			"missing-filesystem-params.yml: handlers.FileSystem.jupyterhub_user_data_dir: FileSystem handler requires the following missing configuration parameter : [jupyterhub_user_data_dir]\n" +
				"missing-filesystem-params.yml: handlers.FileSystem.wps_outputs_dir: FileSystem handler requires the following missing configuration parameter : [wps_outputs_dir]"},
		{"missing-magpie-credentials.yml", "handlers.Magpie",
			"missing-magpie-credentials.yml: handlers.Magpie: Missing Magpie credentials in config. Admin Magpie username and password are required."},
		{"missing-catalog-params.yml", "handlers.Catalog.url",
			"missing-catalog-params.yml: handlers.Catalog.url: Catalog handler requires the following missing configuration parameter : [url]\n" +
				"missing-catalog-params.yml: handlers.Catalog.workspace_dir: Catalog handler requires the following missing configuration parameter : [workspace_dir]"},
		{"sync-unknown-key.yml", "sync_permissions.sp.extra",
			"sync-unknown-key.yml: sync_permissions.sp.extra: unknown key"},
		{"sync-missing-services.yml", "sync_permissions.sp.services",
			"sync-missing-services.yml: sync_permissions.sp.services: is required"},
		{"sync-segment-unknown-key.yml", "sync_permissions.sp.services.thredds.r[0].kind",
			"sync-segment-unknown-key.yml: sync_permissions.sp.services.thredds.r[0].kind: unknown key"},
		{"sync-segment-name-and-regex.yml", "sync_permissions.sp.services.thredds.r[0]",
			"sync-segment-name-and-regex.yml: sync_permissions.sp.services.thredds.r[0]: must have exactly one of name or regex"},
		{"sync-segment-missing-type.yml", "sync_permissions.sp.services.thredds.r[0].type",
			"sync-segment-missing-type.yml: sync_permissions.sp.services.thredds.r[0].type: is required"},
		{"sync-segment-invalid-regex.yml", "sync_permissions.sp.services.thredds.r[0].regex",
			"sync-segment-invalid-regex.yml: sync_permissions.sp.services.thredds.r[0].regex: invalid regex \"(unclosed\": error parsing regexp: missing closing ) in `(unclosed`"},
		{"sync-duplicate-resource-key.yml", "sync_permissions.sp.services.geoserver.same",
			"sync-duplicate-resource-key.yml: sync_permissions.sp.services.geoserver.same: Found duplicate resource key same in config. Config resource keys should be unique even between different services."},
		{"sync-two-multi-tokens.yml", "sync_permissions.sp.services.thredds.r",
			"sync-two-multi-tokens.yml: sync_permissions.sp.services.thredds.r: Invalid config value for resource key r. Only one `**` token is permitted per resource."},
		{"sync-named-token-twice.yml", "sync_permissions.sp.services.thredds.r",
			"sync-named-token-twice.yml: sync_permissions.sp.services.thredds.r: Invalid config value for resource key r. Named token user was found in multiple segments of the resource path. Each named token should only be used once in a resource path."},
		{"sync-mapping-undefined-key.yml", "sync_permissions.sp.permissions_mapping[0]",
			"sync-mapping-undefined-key.yml: sync_permissions.sp.permissions_mapping[0]: Invalid config mapping references resource nowhere which is not defined in any service."},
		{"sync-bidirectional-multi-mismatch.yml", "sync_permissions.sp.permissions_mapping[0]",
			"sync-bidirectional-multi-mismatch.yml: sync_permissions.sp.permissions_mapping[0]: Invalid permission mapping `a : read <-> b : getmap`. For a bidirectional mapping, either all mapped resources should have `**` or none should use them."},
		{"sync-bidirectional-vars-mismatch.yml", "sync_permissions.sp.permissions_mapping[0]",
			"sync-bidirectional-vars-mismatch.yml: sync_permissions.sp.permissions_mapping[0]: Invalid permission mapping `a : read <-> b : getmap`. For a bidirectional mapping, both resources should have exactly the same named_tokens. (a: {'file', 'user'}, b: {'user'})"},
		{"sync-unidirectional-target-multi.yml", "sync_permissions.sp.permissions_mapping[0]",
			"sync-unidirectional-target-multi.yml: sync_permissions.sp.permissions_mapping[0]: Invalid permission mapping `b : getmap -> a : read`. For a unidirectional mapping, the source resource should use a MULTI_TOKEN if the target is using one."},
		{"sync-unidirectional-target-vars.yml", "sync_permissions.sp.permissions_mapping[0]",
			"sync-unidirectional-target-vars.yml: sync_permissions.sp.permissions_mapping[0]: Invalid permission mapping `a : read <- b : getmap`. For a unidirectional mapping, all named tokens found in the target resource should also be found in the source resource, but the tokens `{'user'}` are missing from the source."},
		{"sync-mapping-leading-space.yml", "sync_permissions.sp.permissions_mapping[0]",
			"sync-mapping-leading-space.yml: sync_permissions.sp.permissions_mapping[0]: Error parsing mapping ` a : read -> a : write`. Couldn't find all mapping info because of invalid format."},
		{"sync-mapping-bad-format.yml", "sync_permissions.sp.permissions_mapping[0]",
			"sync-mapping-bad-format.yml: sync_permissions.sp.permissions_mapping[0]: \"a read => b write\" does not match the format `<res_key1> : <permissions> <-|->|<-> <res_key2> : <permissions>`"},
		{"sync-invalid-permission.yml", "sync_permissions.sp.permissions_mapping[0]",
			"sync-invalid-permission.yml: sync_permissions.sp.permissions_mapping[0]: Invalid permission found: read-deny. It should use the explicit format `<name>-<access>-<scope>`."},
		{"daemon-unknown-key.yml", "cowbird.journal_size",
			"daemon-unknown-key.yml: cowbird.journal_size: unknown key"},
		{"daemon-bad-duration.yml", "cowbird.dispatch_timeout",
			`daemon-bad-duration.yml: cowbird.dispatch_timeout: must be a duration such as 30s or 168h, got "30"`},
		{"daemon-bad-url-prefix.yml", "cowbird.url_prefix",
			`cowbird.url_prefix: must start with / and not end with /, got "cowbird/"`},
		{"multiple-problems.yml", "handlers.FileSystem.priority", strings.Join([]string{
			"multiple-problems.yml: handlers.FileSystem.priority: must be an integer, got a string",
			"multiple-problems.yml: sync_permissions.sp.services.thredds.a[0]: must have exactly one of name or regex",
			"multiple-problems.yml: handlers.FileSystem.workspace_dir: FileSystem handler requires the following missing configuration parameter : [workspace_dir]",
			"multiple-problems.yml: handlers.FileSystem.jupyterhub_user_data_dir: FileSystem handler requires the following missing configuration parameter : [jupyterhub_user_data_dir]",
			"multiple-problems.yml: handlers.FileSystem.wps_outputs_dir: FileSystem handler requires the following missing configuration parameter : [wps_outputs_dir]",
			"multiple-problems.yml: handlers.Magpie: Missing Magpie credentials in config. Admin Magpie username and password are required.",
			"multiple-problems.yml: handlers.Magpie.url: Magpie handler requires the following missing configuration parameter : [url]",
			"multiple-problems.yml: sync_permissions.sp.permissions_mapping[0]: Invalid config mapping references resource b which is not defined in any service.",
			"cowbird.body_limit: must be positive",
		}, "\n")},
		{"invalid-top-level-list.yml", "",
			"load config testdata/invalid-top-level-list.yml: top level must be a mapping, got a list"},
		{"invalid-yaml-syntax.yml", "",
			"load config testdata/invalid-yaml-syntax.yml: parse yaml: yaml: line 1: did not find expected ',' or ']'"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			log, _ := config.NewLog()
			cfg, err := config.LoadWith(filepath.Join("testdata", tc.file), log, kinds, config.Env(map[string]string{"COWBIRD_TEST_TRUE": "true"}))
			if err == nil || cfg != nil {
				t.Fatalf("load = %v, %v; want an error", cfg, err)
			}
			if err.Error() != tc.text {
				t.Errorf("error =\n%s\nwant\n%s", err, tc.text)
			}
			var fe *config.FieldError
			if got := errors.As(err, &fe); got != (tc.path != "") || (got && fe.Path != tc.path) {
				t.Errorf("first FieldError = %+v (found %v), want path %q", fe, got, tc.path)
			}
		})
	}
}

// The testdata files named for invalid cases must all be in TestLoadInvalid
// and fail; every other file must load.
func TestTestdataFilesLoad(t *testing.T) {
	for _, f := range testdataFiles(t) {
		base := filepath.Base(f)
		valid := !strings.HasPrefix(base, "invalid-") && !strings.HasPrefix(base, "missing-") &&
			!strings.HasPrefix(base, "sync-") && !strings.HasPrefix(base, "daemon-bad") &&
			!strings.HasPrefix(base, "daemon-unknown") && !strings.HasPrefix(base, "multiple-")
		log, _ := config.NewLog()
		_, err := config.LoadWith(f, log, kinds, config.Env(exampleEnv))
		if valid != (err == nil) {
			t.Errorf("%s: valid by name %v, load error %v", base, valid, err)
		}
	}
}

// Validate checks the required parameters of a loaded entry changed in
// code; an entry built in code has no kind and is not checked.
func TestValidateBuiltConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yml")
	body := "handlers:\n" +
		"  Geoserver: {active: true, url: http://gs, workspace_dir: /ws}\n" +
		"  Magpie: {active: false}\n" +
		"  Thredds: {active: true}\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _ := mustLoad(t, path, nil)
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate = %v, want nil", err)
	}
	cfg.Handlers[0].URL, cfg.Handlers[0].WorkspaceDir = "", ""
	want := "c.yml: handlers.Geoserver.url: Geoserver handler requires the following missing configuration parameter : [url]\n" +
		"c.yml: handlers.Geoserver.workspace_dir: Geoserver handler requires the following missing configuration parameter : [workspace_dir]"
	if err := cfg.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want\n%s", err, want)
	}
	cfg.Handlers[0].URL, cfg.Handlers[0].WorkspaceDir = "http://gs", "/ws"
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate = %v, want nil", err)
	}

	built := &config.Config{Handlers: []config.HandlerConfig{{Name: "Geoserver", Active: true}}, Daemon: config.DefaultDaemon()}
	if err := built.Validate(); err != nil {
		t.Errorf("Validate of an entry built in code = %v, want nil (no kind to check it)", err)
	}
}

func TestDaemonSection(t *testing.T) {
	cfg, _ := mustLoad(t, "testdata/daemon-section.yml", nil)
	want := config.Daemon{JournalRetention: 24 * time.Hour, JournalMaxEvents: 500, DispatchTimeout: 10 * time.Second,
		BodyLimit: 2048, URLPrefix: "/cb", ReconcileInterval: time.Hour}
	if cfg.Daemon != want {
		t.Errorf("Daemon = %+v, want %+v", cfg.Daemon, want)
	}
	th, _ := cfg.Handler("Thredds")
	if !th.Active {
		t.Error("active: yes (YAML 1.1, as PyYAML reads it) was not read as true")
	}

	cfg, _ = mustLoad(t, "testdata/daemon-section.yml", map[string]string{
		"COWBIRD_JOURNAL_RETENTION": "2h", "COWBIRD_URL_PREFIX": "/other", "COWBIRD_BODY_LIMIT": "",
	})
	if cfg.Daemon.JournalRetention != 2*time.Hour || cfg.Daemon.URLPrefix != "/other" || cfg.Daemon.BodyLimit != 2048 {
		t.Errorf("env overrides: %+v", cfg.Daemon)
	}

	log, _ := config.NewLog()
	_, err := config.LoadWith("testdata/daemon-section.yml", log, kinds, config.Env(map[string]string{"COWBIRD_JOURNAL_MAX_EVENTS": "many"}))
	if want := `COWBIRD_JOURNAL_MAX_EVENTS: must be an integer, got "many"`; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}
