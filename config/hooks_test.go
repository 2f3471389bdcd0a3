package config

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The first file that defines an event's hook wins, as for handlers.
func TestLoadHooksDirectoryFirstWins(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yml"), "hooks:\n  max_parallel: 3\n  user_created:\n    run_as: first\n    tasks: [{command: /bin/true}]\n")
	writeFile(t, filepath.Join(dir, "b.yml"), "hooks:\n  max_parallel: 9\n  user_created:\n    run_as: second\n    tasks: [{command: /bin/true}]\n  user_deleted:\n    run_as: x\n    tasks: [{command: /bin/true}]\n")
	cfg, hook := mustLoad(t, dir, nil)
	if cfg.Hooks.MaxParallel != 3 || cfg.Hooks.Events["user_created"].RunAs.String() != "first" || cfg.Hooks.Events["user_deleted"] == nil {
		t.Errorf("merged hooks = %+v", *cfg.Hooks)
	}
	if w := warnings(hook); !slices.Contains(w, "duplicate hooks key ignored file=b.yml key=user_created") {
		t.Errorf("warnings = %q", w)
	}
}

// hooksInvalid are the invalid hooks cases: a file of testdata/hooks-invalid
// and every error it must give.
var hooksInvalid = []struct {
	file string
	want []string
}{
	{"unknown-reference.yml", []string{
		"hooks.user_created.tasks[0].args[1]: unknown reference {{Event.Nope}}"}},
	{"reference-out-of-scope.yml", []string{
		"hooks.user_deleted.run_as: unknown reference {{Session.WorkingDirectory}}",
		"hooks.user_deleted.tasks[0].args[0]: unknown reference {{Event.Path}}"}},
	{"env-reference-order.yml", []string{
		"hooks.user_created.environments[0].variables.A: unknown reference {{Env.B}}",
		"hooks.user_created.environments[1].variables.C: unknown reference {{Env.C}}",
		"hooks.user_created.tasks[0].args[0]: unknown reference {{Env.UNDECLARED}}"}},
	{"template-syntax.yml", []string{
		`hooks.user_created.run_as: "{{Event.UserName": "{{" without "}}"`,
		`hooks.user_created.tasks[0].command: "/opt/{{ Event }}/x": {{ Event }} is not a reference such as {{Event.UserName}}`,
		`hooks.user_created.tasks[0].args[0]: "a}}b": "}}" without "{{"`,
		`hooks.user_created.tasks[0].args[1]: "{{Event.{{UserName}}}}": {{Event.{{UserName}} is not a reference such as {{Event.UserName}}`}},
	{"unknown-keys.yml", []string{
		"hooks.user_renamed: unknown key (events: permission_created, permission_deleted, shapefile_deleted, shapefile_published, user_created, user_deleted, wps_output_created, wps_output_deleted)",
		"hooks.user_created.shell: unknown key",
		"hooks.user_created.environments[0].onEnter.shell: unknown key",
		"hooks.user_created.environments[0].script: unknown key",
		"hooks.user_created.tasks[0].cancelation.signal: unknown key"}},
	{"missing-fields.yml", []string{
		"hooks.user_created.environments[0].name: is required",
		"hooks.user_created.environments[1]: must have variables, onEnter or onExit",
		"hooks.user_created.tasks[0].command: is required",
		"hooks.user_created.run_as: is required",
		"hooks.user_deleted: has nothing to run: add tasks or an environment with onEnter or onExit"}},
	{"empty-mappings.yml", []string{
		"hooks.accounts.bob.uid: is required",
		"hooks.accounts.bob.gid: is required",
		"hooks.user_created.tasks[0].command: is required",
		"hooks.user_deleted.run_as: is required",
		"hooks.user_deleted: has nothing to run: add tasks or an environment with onEnter or onExit"}},
	{"duplicate-environment.yml", []string{
		`hooks.user_created.environments[1].name: duplicate environment name "e"`}},
	{"bad-timeouts.yml", []string{
		"hooks.default_timeout: must be an integer, got a string",
		"hooks.max_parallel: must be at least 1, got 0",
		"hooks.user_created.tasks[0].timeout: must be a positive number of seconds, got 0",
		"hooks.user_created.tasks[1].timeout: must be an integer, got a string",
		`hooks.user_created.tasks[2].cancelation.mode: must be TERMINATE or NOTIFY_THEN_TERMINATE, got "KILL"`,
		"hooks.user_created.tasks[3].cancelation.notifyPeriodInSeconds: must be between 1 and 600 seconds, got 601",
		"hooks.user_created.tasks[4].cancelation.notifyPeriodInSeconds: needs mode NOTIFY_THEN_TERMINATE"}},
	{"bad-settings.yml", []string{
		"hooks.session_root: must be a non-empty string",
		"hooks.allow_run_as_daemon_user: must be a boolean, got a string",
		`hooks.env.BAD-NAME: "BAD-NAME" is not a valid variable name`,
		"hooks.env.OK: must be a string, got a list",
		"hooks.accounts.bob.uid: must be a user or group id, got -1",
		"hooks.accounts.bob.gid: is required",
		"hooks.accounts.carol.groups[0]: must be an integer, got a string",
		"hooks.accounts.carol.home: unknown key",
		`hooks.user_created.environments[0].variables.1X: "1X" is not a valid variable name`,
		"hooks.user_created.tasks[0].command: must be a string, got an integer"}},
}

func TestLoadHooksInvalid(t *testing.T) {
	for _, tc := range hooksInvalid {
		t.Run(tc.file, func(t *testing.T) {
			log, _ := newLog()
			cfg, err := load(filepath.Join("testdata", "hooks-invalid", tc.file), log, nil, env(nil))
			if err == nil || cfg != nil {
				t.Fatalf("load = %v, %v; want an error", cfg, err)
			}
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				want[i] = tc.file + ": " + w
			}
			if got := err.Error(); got != strings.Join(want, "\n") {
				t.Errorf("error =\n%s\nwant\n%s", got, strings.Join(want, "\n"))
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File != tc.file {
				t.Errorf("first problem %+v is not a FieldError of %s", fe, tc.file)
			}
		})
	}
}

// Every invalid hooks case has its expected errors in hooksInvalid.
func TestHooksInvalidFilesAreTested(t *testing.T) {
	files, err := filepath.Glob("testdata/hooks-invalid/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	tested := map[string]bool{}
	for _, tc := range hooksInvalid {
		tested[tc.file] = true
	}
	for _, f := range files {
		if !tested[filepath.Base(f)] {
			t.Errorf("%s has no expected errors in hooksInvalid", f)
		}
	}
	if len(files) != len(hooksInvalid) {
		t.Errorf("%d files, %d cases", len(files), len(hooksInvalid))
	}
}

func TestTemplate(t *testing.T) {
	vals := map[string]string{"Event.UserName": "alice", "Env.HOME": "/home/alice", "Event.Path": ""}
	for _, tc := range []struct {
		in, want string
		refs     []string
	}{
		{"plain", "plain", nil},
		{"", "", nil},
		{"{{Event.UserName}}", "alice", []string{"Event.UserName"}},
		{"{{ Event.UserName }}", "alice", []string{"Event.UserName"}},
		{"{{Env.HOME}}/{{Event.UserName}}-{{Event.UserName}}", "/home/alice/alice-alice", []string{"Env.HOME", "Event.UserName", "Event.UserName"}},
		{"[{{Event.Path}}]", "[]", []string{"Event.Path"}},
		{"a } b { c", "a } b { c", nil},
	} {
		tmpl, err := ParseTemplate(tc.in)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tc.in, err)
			continue
		}
		got, err := tmpl.Resolve(vals)
		if err != nil || got != tc.want || !slices.Equal(tmpl.Refs(), tc.refs) || tmpl.String() != tc.in {
			t.Errorf("%q: Resolve = %q, %v; Refs = %q; want %q, %q", tc.in, got, err, tmpl.Refs(), tc.want, tc.refs)
		}
	}
	nope, _ := ParseTemplate("{{Event.Nope}}")
	if _, err := nope.Resolve(vals); err == nil || err.Error() != `resolve "{{Event.Nope}}": no value for {{Event.Nope}}` {
		t.Errorf("Resolve of a missing value: %v", err)
	}
	for _, bad := range []string{"{{", "}}", "{{}}", "{{Event}}", "{{Event.}}", "{{1.x}}", "{{Event.User Name}}", "{{a.b}}}}", "{{{{a.b}}"} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("ParseTemplate(%q) = nil error, want one", bad)
		}
	}
}
