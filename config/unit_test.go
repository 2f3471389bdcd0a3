package config

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "alpha", "EMPTY": "", "REF": "$A", "A B": "spaced"}
	for _, tc := range []struct{ in, want string }{
		{"${A}", "alpha"},
		{"$A", "alpha"},
		{"x/${A}/$A/y", "x/alpha/alpha/y"},
		{"$A$A", "alphaalpha"},
		{"${EMPTY}z", "z"},
		{"$REF", "$A"}, // values are not expanded again
		{"${A B}", "spaced"},
		{"$AB", "$AB"}, // the name is AB, undefined
		{"${UNDEF}/$UNDEF2", "${UNDEF}/$UNDEF2"},
		{"${}", "${}"},
		{"cost: 5$", "cost: 5$"},
		{"${A", "${A"},
		{"no dollar", "no dollar"},
	} {
		e := newExpander(env(vars))
		if got := e.expand(tc.in); got != tc.want {
			t.Errorf("expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	e := newExpander(env(vars))
	e.expand("${UNDEF}/$UNDEF2 $AB ${UNDEF} $A")
	if got, want := e.undefinedRefs(), []string{"$AB", "$UNDEF2", "${UNDEF}"}; !slices.Equal(got, want) {
		t.Errorf("undefinedRefs = %q, want %q", got, want)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	m := Credentials{AdminUser: "admin", AdminPassword: "hunter2"}
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var decoded map[string]string
	if err := json.Unmarshal(js, &decoded); err != nil || decoded["AdminPassword"] != "<secret>" {
		t.Errorf("JSON %s: AdminPassword = %q (err %v)", js, decoded["AdminPassword"], err)
	}
	ys, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		fmt.Sprint(m), fmt.Sprintf("%+v", m), fmt.Sprintf("%#v", m), m.AdminPassword.String(), string(ys),
	} {
		if strings.Contains(out, "hunter2") || !strings.Contains(out, "<secret>") {
			t.Errorf("output %q leaks the secret or lacks <secret>", out)
		}
	}
	if m.AdminPassword.Reveal() != "hunter2" {
		t.Errorf("Reveal = %q", m.AdminPassword.Reveal())
	}
}

func TestParsePermission(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"read", "read-allow-recursive"},
		{"read-match", "read-allow-match"},
		{"read-deny-match", "read-deny-match"},
		{"getFeature-allow-recursive", "getFeature-allow-recursive"},
		{"read-deny", ""},
		{"read-recursive", ""},
		{"read-maybe-match", ""},
		{"read-allow-everything", ""},
		{"a-b-c-d", ""},
		{"-match", ""},
	} {
		p, err := ParsePermission(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("ParsePermission(%q) = %v, want an error", tc.in, p)
		case tc.want == "" && err.Error() != "Invalid permission found: "+tc.in+". It should use the explicit format `<name>-<access>-<scope>`.":
			t.Errorf("ParsePermission(%q) error = %v", tc.in, err)
		case tc.want != "" && (err != nil || p.String() != tc.want):
			t.Errorf("ParsePermission(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
		}
	}
}

func TestParseMappingIgnoresTrailingText(t *testing.T) {
	m, err := ParseMapping("a:[read ,write]<-b : x-match trailing garbage")
	if err != nil {
		t.Fatal(err)
	}
	if m.LeftKey != "a" || m.RightKey != "b" || m.Direction != RightToLeft ||
		!slices.Equal(perms(m.LeftPerms), []string{"read-allow-recursive", "write-allow-recursive"}) ||
		!slices.Equal(perms(m.RightPerms), []string{"x-allow-match"}) {
		t.Errorf("mapping = %+v", m)
	}
	rules := m.Rules()
	if len(rules) != 1 || rules[0].SourceKey != "b" || rules[0].TargetKey != "a" {
		t.Errorf("rules of <- = %+v", rules)
	}
}

func TestLoadMissingPath(t *testing.T) {
	cfg, hook := mustLoad(t, filepath.Join(t.TempDir(), "absent.yml"), nil)
	if len(cfg.Handlers) != 0 || len(cfg.SyncPoints) != 0 || cfg.Daemon != DefaultDaemon() {
		t.Errorf("config = %+v, want empty with default daemon settings", cfg)
	}
	got := warnings(hook)
	if len(got) != 2 || !strings.HasPrefix(got[0], "No handlers configuration found") ||
		!strings.HasPrefix(got[1], "No permission mapping configuration found") {
		t.Errorf("warnings = %q", got)
	}
}

// TestInactiveHandlerShapeOnly: an inactive handler is checked for its
// shape only, and an empty credential (an unset variable in a template)
// is empty, not a type error; an active one is still checked.
func TestInactiveHandlerShapeOnly(t *testing.T) {
	kind := HandlerKind{Name: "Svc", Decode: func(s *Section) any { return s.Credentials() },
		Validate: func(hc HandlerConfig) Errors {
			c := SettingsOf[Credentials](hc)
			return hc.Require("admin_user", c.AdminUser)
		}}
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"inactive, null and list credentials", "handlers:\n  Svc:\n    active: false\n    admin_user:\n    admin_password: [1]\n", ""},
		{"inactive, bad url type", "handlers:\n  Svc:\n    url: 5\n", ""},
		{"inactive, bad shape", "handlers:\n  Svc: [1]\n", "handlers.Svc: must be a mapping, got a list"},
		{"inactive, bad active", "handlers:\n  Svc:\n    active: maybe\n", "handlers.Svc.active: must be a boolean, got a string"},
		{"active, null credential", "handlers:\n  Svc:\n    active: true\n    admin_user:\n",
			"handlers.Svc.admin_user: Svc handler requires the following missing configuration parameter : [admin_user]"},
		{"active, list credential", "handlers:\n  Svc:\n    active: true\n    admin_user: [1]\n",
			"handlers.Svc.admin_user: must be a string, got a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "c.yml")
			writeFile(t, p, tc.yaml)
			log, _ := newLog()
			_, err := load(p, log, []HandlerKind{kind}, env(nil))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) || (tc.want == "") != (err == nil) {
				t.Fatalf("load = %v, want %q", err, tc.want)
			}
		})
	}
}
