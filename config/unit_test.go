package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
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
	m := Magpie{URL: "http://magpie", AdminUser: "admin", AdminPassword: "hunter2"}
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

func TestDaemonSection(t *testing.T) {
	cfg, _ := mustLoad(t, "testdata/daemon-section.yml", nil)
	want := Daemon{JournalRetention: 24 * time.Hour, JournalMaxEvents: 500, DispatchTimeout: 10 * time.Second,
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

	log, _ := newLog()
	_, err := load("testdata/daemon-section.yml", log, env(map[string]string{"COWBIRD_JOURNAL_MAX_EVENTS": "many"}))
	if want := `COWBIRD_JOURNAL_MAX_EVENTS: must be an integer, got "many"`; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestLoadSettings(t *testing.T) {
	dir := t.TempDir()
	ini := filepath.Join(dir, "cowbird.ini")
	body := `# comment
[app:cowbird_app]
use = egg:cowbird
cowbird.url = http://ini.example.org/cowbird
COWBIRD_REQUEST_TIMEOUT = 12
cowbird.request_timeout = 99
cowbird.ssl_verify = false
mongo_uri = mongodb://0.0.0.0:27017/cowbird

[logger_cowbird]
level = DEBUG
handlers =
qualname = cowbird
`
	if err := os.WriteFile(ini, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		env  map[string]string
		want Settings
	}{
		{"defaults", nil, Settings{SSLVerify: true, RequestTimeout: 5 * time.Second, LogLevel: logrus.InfoLevel,
			LogFormat: "text", UserUID: 1000, UserGID: 1000}},
		{"environment", map[string]string{
			"COWBIRD_URL": "http://env", "COWBIRD_CONFIG_PATH": "/config.yml", "COWBIRD_SSL_VERIFY": "no",
			"COWBIRD_REQUEST_TIMEOUT": "7", "COWBIRD_LOG_LEVEL": "warning", "COWBIRD_LOG_FORMAT": "json",
			"COWBIRD_FILESYSTEM_ADMIN_UID": "10", "COWBIRD_FILESYSTEM_ADMIN_GID": "11",
			"COWBIRD_FILESYSTEM_USER_UID": "2000", "COWBIRD_FILESYSTEM_USER_GID": "",
		}, Settings{URL: "http://env", ConfigPath: "/config.yml", RequestTimeout: 7 * time.Second,
			LogLevel: logrus.WarnLevel, LogFormat: "json", AdminUID: 10, AdminGID: 11, UserUID: 2000, UserGID: 1000}},
		{"ini before environment", map[string]string{
			"COWBIRD_INI_FILE_PATH": ini, "COWBIRD_URL": "http://env", "COWBIRD_SSL_VERIFY": "true",
			"COWBIRD_CONFIG_PATH": "/env.yml",
		}, Settings{URL: "http://ini.example.org/cowbird", ConfigPath: "/env.yml", RequestTimeout: 12 * time.Second,
			LogLevel: logrus.DebugLevel, LogFormat: "text", UserUID: 1000, UserGID: 1000}},
		{"environment log level before logger_cowbird", map[string]string{
			"COWBIRD_INI_FILE_PATH": ini, "COWBIRD_LOG_LEVEL": "ERROR",
		}, Settings{URL: "http://ini.example.org/cowbird", RequestTimeout: 12 * time.Second,
			LogLevel: logrus.ErrorLevel, LogFormat: "text", UserUID: 1000, UserGID: 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadSettings(env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("settings =\n%+v, want\n%+v", got, tc.want)
			}
		})
	}
}

func TestLoadSettingsErrors(t *testing.T) {
	_, err := LoadSettings(env(map[string]string{
		"COWBIRD_SSL_VERIFY": "maybe", "COWBIRD_REQUEST_TIMEOUT": "5s", "COWBIRD_LOG_LEVEL": "loud",
		"COWBIRD_LOG_FORMAT": "xml", "COWBIRD_FILESYSTEM_USER_UID": "-1",
	}))
	want := strings.Join([]string{
		`COWBIRD_SSL_VERIFY: must be a boolean (true/false, 1/0, yes/no), got "maybe"`,
		`COWBIRD_FILESYSTEM_USER_UID: must be a non-negative integer, got "-1"`,
		`COWBIRD_REQUEST_TIMEOUT: must be a positive integer number of seconds, got "5s"`,
		`COWBIRD_LOG_LEVEL: must be a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL), got "loud"`,
		`COWBIRD_LOG_FORMAT: must be text or json, got "xml"`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("error =\n%v\nwant\n%s", err, want)
	}

	missing := filepath.Join(t.TempDir(), "none.ini")
	_, err = LoadSettings(env(map[string]string{"COWBIRD_INI_FILE_PATH": missing}))
	if want := "COWBIRD_INI_FILE_PATH: Cannot find INI configuration file [" + missing + "]"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}
