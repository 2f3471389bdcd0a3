package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// writeINI writes a cowbird.ini with body and returns its path.
func writeINI(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cowbird.ini")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// resolveSettings resolves the settings from vars with the serve flags
// parsed from args.
func resolveSettings(t *testing.T, vars map[string]string, args ...string) (Settings, error) {
	t.Helper()
	l := NewLayers(env(vars))
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	l.BindServeFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return l.Settings()
}

const testINI = `# comment
[app:cowbird_app]
use = egg:cowbird
cowbird.url = http://ini.example.org/cowbird
COWBIRD_REQUEST_TIMEOUT = 12
cowbird.request_timeout = 99
cowbird.ssl_verify = false
cowbird.config_path = /ini.yml
cowbird.log_format =
mongo_uri = mongodb://0.0.0.0:27017/cowbird

[logger_cowbird]
level = DEBUG
handlers =
qualname = cowbird
`

func TestSettingsPrecedence(t *testing.T) {
	ini := writeINI(t, testINI)
	def := Settings{Addr: ":7000", DataDir: "./data", SSLVerify: true, RequestTimeout: 5 * time.Second,
		LogLevel: logrus.InfoLevel, LogFormat: "text", UserUID: 1000, UserGID: 1000}
	fromINI := def
	fromINI.URL, fromINI.ConfigPath, fromINI.SSLVerify = "http://ini.example.org/cowbird", "/ini.yml", false
	fromINI.RequestTimeout, fromINI.LogLevel = 12*time.Second, logrus.DebugLevel
	with := func(s Settings, f func(*Settings)) Settings { f(&s); return s }

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want Settings
	}{
		{"defaults", nil, nil, def},
		{"environment", map[string]string{
			"COWBIRD_URL": "http://env", "COWBIRD_CONFIG_PATH": "/config.yml", "COWBIRD_SSL_VERIFY": "no",
			"COWBIRD_REQUEST_TIMEOUT": "7", "COWBIRD_LOG_LEVEL": "warning", "COWBIRD_LOG_FORMAT": "json",
			"COWBIRD_FILESYSTEM_ADMIN_UID": "10", "COWBIRD_FILESYSTEM_ADMIN_GID": "11",
			"COWBIRD_FILESYSTEM_USER_UID": "2000", "COWBIRD_FILESYSTEM_USER_GID": "",
		}, nil, with(def, func(s *Settings) {
			s.URL, s.ConfigPath, s.SSLVerify, s.RequestTimeout = "http://env", "/config.yml", false, 7*time.Second
			s.LogLevel, s.LogFormat, s.AdminUID, s.AdminGID, s.UserUID = logrus.WarnLevel, "json", 10, 11, 2000
		})},
		{"empty and blank environment ignored", map[string]string{
			"COWBIRD_URL": "", "COWBIRD_REQUEST_TIMEOUT": "  ", "COWBIRD_LOG_LEVEL": "\t",
		}, nil, def},
		{"environment trimmed", map[string]string{"COWBIRD_URL": " http://env \n"}, nil,
			with(def, func(s *Settings) { s.URL = "http://env" })},
		{"ini over environment", map[string]string{
			"COWBIRD_INI_FILE_PATH": ini, "COWBIRD_URL": "http://env", "COWBIRD_SSL_VERIFY": "true",
			"COWBIRD_CONFIG_PATH": "/env.yml", "COWBIRD_REQUEST_TIMEOUT": "7",
		}, nil, fromINI},
		{"empty ini value ignored", map[string]string{
			"COWBIRD_INI_FILE_PATH": ini, "COWBIRD_LOG_FORMAT": "json",
		}, nil, with(fromINI, func(s *Settings) { s.LogFormat = "json" })},
		{"environment log level before logger_cowbird", map[string]string{
			"COWBIRD_INI_FILE_PATH": ini, "COWBIRD_LOG_LEVEL": "ERROR",
		}, nil, with(fromINI, func(s *Settings) { s.LogLevel = logrus.ErrorLevel })},
		{"flags over all", map[string]string{
			"COWBIRD_INI_FILE_PATH": ini, "COWBIRD_CONFIG_PATH": "/env.yml",
		}, []string{"--config", "/flag.yml", "--addr", "127.0.0.1:0", "--data-dir=/var/lib/cowbird"},
			with(fromINI, func(s *Settings) { s.ConfigPath, s.Addr, s.DataDir = "/flag.yml", "127.0.0.1:0", "/var/lib/cowbird" })},
		{"flag over environment", map[string]string{"COWBIRD_CONFIG_PATH": "/env.yml"}, []string{"--config=/flag.yml"},
			with(def, func(s *Settings) { s.ConfigPath = "/flag.yml" })},
		{"flags left out override nothing", map[string]string{"COWBIRD_CONFIG_PATH": "/env.yml"}, []string{"--addr", ":8000"},
			with(def, func(s *Settings) { s.ConfigPath, s.Addr = "/env.yml", ":8000" })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveSettings(t, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("settings =\n%+v, want\n%+v", got, tc.want)
			}
		})
	}
}

func TestLoadSettingsWithoutFlags(t *testing.T) {
	got, err := LoadSettings(env(map[string]string{"COWBIRD_CONFIG_PATH": "/env.yml"}))
	if err != nil {
		t.Fatal(err)
	}
	if got.ConfigPath != "/env.yml" || got.Addr != ":7000" || got.DataDir != "./data" {
		t.Errorf("settings = %+v", got)
	}
}

func TestBindServeFlags(t *testing.T) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	NewLayers(env(nil)).BindServeFlags(fs)
	for name, def := range map[string]string{"config": "", "addr": ":7000", "data-dir": "./data"} {
		f := fs.Lookup(name)
		if f == nil || f.DefValue != def || f.Usage == "" {
			t.Errorf("flag --%s = %+v, want default %q and a help text", name, f, def)
		}
	}
}

func TestSettingsErrors(t *testing.T) {
	ini := writeINI(t, `[app:cowbird_app]
cowbird.ssl_verify = maybe
COWBIRD_FILESYSTEM_ADMIN_UID = root
cowbird.request_timeout = 10
[logger_cowbird]
level = LOUD
`)
	missing := filepath.Join(t.TempDir(), "none.ini")
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"environment", map[string]string{
			"COWBIRD_SSL_VERIFY": "maybe", "COWBIRD_REQUEST_TIMEOUT": "5s", "COWBIRD_LOG_LEVEL": "loud",
			"COWBIRD_LOG_FORMAT": "xml", "COWBIRD_FILESYSTEM_USER_UID": "-1",
		}, []string{
			`COWBIRD_SSL_VERIFY: must be a boolean (true/false, 1/0, yes/no), got "maybe"`,
			`COWBIRD_FILESYSTEM_USER_UID: must be a non-negative integer, got "-1"`,
			`COWBIRD_REQUEST_TIMEOUT: must be a positive integer number of seconds, got "5s"`,
			`COWBIRD_LOG_LEVEL: must be a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL), got "loud"`,
			`COWBIRD_LOG_FORMAT: must be text or json, got "xml"`,
		}},
		{"ini, and an invalid variable it hides", map[string]string{
			"COWBIRD_INI_FILE_PATH": ini, "COWBIRD_REQUEST_TIMEOUT": "soon", "COWBIRD_FILESYSTEM_ADMIN_GID": "wheel",
		}, []string{
			`cowbird.ini: cowbird.ssl_verify: must be a boolean (true/false, 1/0, yes/no), got "maybe"`,
			`cowbird.ini: COWBIRD_FILESYSTEM_ADMIN_UID: must be a non-negative integer, got "root"`,
			`COWBIRD_FILESYSTEM_ADMIN_GID: must be a non-negative integer, got "wheel"`,
			`cowbird.ini: [logger_cowbird] level: must be a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL), got "LOUD"`,
		}},
		{"missing ini", map[string]string{"COWBIRD_INI_FILE_PATH": missing}, []string{
			"COWBIRD_INI_FILE_PATH: Cannot find INI configuration file [" + missing + "]",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resolveSettings(t, tc.env, "--addr", ":1")
			if want := strings.Join(tc.want, "\n"); err == nil || err.Error() != want {
				t.Errorf("error =\n%v\nwant\n%s", err, want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %v is not a FieldError", err)
			}
		})
	}
}

// cowbirdSection reads the keys of a cowbird: section given as YAML text.
func cowbirdSection(t *testing.T, file, text string) daemonNodes {
	t.Helper()
	if strings.TrimSpace(text) == "" {
		text = "{}"
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	log, _ := newLog()
	d := &decoder{file: file}
	nodes := daemonNodes{}
	d.daemonSection(doc.Content[0], nodes, log)
	if len(d.errs) > 0 {
		t.Fatal(d.errs)
	}
	return nodes
}

func TestDefaultDaemon(t *testing.T) {
	want := Daemon{JournalRetention: 168 * time.Hour, JournalMaxEvents: 100000, DispatchTimeout: 30 * time.Second,
		BodyLimit: 1 << 20, URLPrefix: "/cowbird"}
	if got := DefaultDaemon(); got != want {
		t.Errorf("DefaultDaemon() = %+v, want %+v", got, want)
	}
	for _, k := range daemonKeys {
		var d Daemon
		if err := k.set(&d, k.def); err != nil {
			t.Errorf("default of %s: %v", k.name, err)
		}
	}
}

func TestDaemonPrecedence(t *testing.T) {
	const file = `
journal_retention: 24h
dispatch_timeout: 10s
url_prefix: ""
admin_tokens:
  ci: s3cret
  ops: sha256:` + sha + `
magpie_auth: true
`
	def := DefaultDaemon()
	with := func(f func(*Daemon)) Daemon { d := def; f(&d); return d }
	fromFile := with(func(d *Daemon) {
		d.JournalRetention, d.DispatchTimeout, d.URLPrefix, d.MagpieAuth = 24*time.Hour, 10*time.Second, "", true
		d.AdminTokens = Secret("ci=s3cret,ops=sha256:" + sha)
	})
	for _, tc := range []struct {
		name string
		file string
		env  map[string]string
		want Daemon
	}{
		{"defaults", "", nil, def},
		{"file", file, nil, fromFile},
		{"environment over file", file, map[string]string{
			"COWBIRD_JOURNAL_RETENTION": "2h", "COWBIRD_URL_PREFIX": "/other", "COWBIRD_ADMIN_TOKENS": "ci=new",
			"COWBIRD_MAGPIE_AUTH": "false", "COWBIRD_BODY_LIMIT": "4096",
		}, with(func(d *Daemon) {
			d.JournalRetention, d.DispatchTimeout, d.URLPrefix, d.BodyLimit = 2*time.Hour, 10*time.Second, "/other", 4096
			d.AdminTokens = Secret("ci=new")
		})},
		{"environment over defaults", "", map[string]string{"COWBIRD_WEBHOOK_SECRET": " hook "},
			with(func(d *Daemon) { d.WebhookSecret = "hook" })},
		{"empty environment ignored", file, map[string]string{
			"COWBIRD_JOURNAL_RETENTION": "", "COWBIRD_URL_PREFIX": "  ", "COWBIRD_ADMIN_TOKENS": "",
		}, fromFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := resolveDaemon(cowbirdSection(t, "config.yml", tc.file), env(tc.env))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if got != tc.want {
				t.Errorf("daemon =\n%#v, want\n%#v", got, tc.want)
			}
			if got.AdminTokens.Reveal() != tc.want.AdminTokens.Reveal() {
				t.Errorf("admin tokens = %q, want %q", got.AdminTokens.Reveal(), tc.want.AdminTokens.Reveal())
			}
		})
	}
}

// sha is a valid sha256: token value.
const sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestDaemonErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		env  map[string]string
		want []string
	}{
		{"file", `
journal_retention: soon
journal_max_events: [1]
dispatch_timeout: 30
admin_tokens: ci=s3cret
magpie_auth: ~
`, nil, []string{
			`config.yml: cowbird.journal_retention: must be a duration such as 30s or 168h, got "soon"`,
			`config.yml: cowbird.journal_max_events: must be a scalar, got a list`,
			`config.yml: cowbird.dispatch_timeout: must be a duration such as 30s or 168h, got "30"`,
			`config.yml: cowbird.admin_tokens: must be a mapping, got a string`,
			`config.yml: cowbird.magpie_auth: must be a scalar, got null`,
		}},
		{"file mapping entries", `
admin_tokens:
  ci: [s3cret]
  "bad name": s3cret
  ops: sha256:abc
  ok: fine
`, nil, []string{
			`config.yml: cowbird.admin_tokens: value of "ci" must be a string without ',', got a list`,
			`config.yml: cowbird.admin_tokens: entry 1: the name before '=' must be letters, digits, '.', '_' or '-'`, // (ci is left out)
			`config.yml: cowbird.admin_tokens: token "ops": sha256: must be followed by 64 hex digits`,
		}},
		{"environment, and the invalid file values it hides", "dispatch_timeout: 30\nbody_limit: big\n", map[string]string{
			"COWBIRD_DISPATCH_TIMEOUT": "1m", "COWBIRD_BODY_LIMIT": "huge", "COWBIRD_MAGPIE_AUTH": "maybe",
			"COWBIRD_ADMIN_TOKENS": "ci=s3cret,ci=again,=x",
		}, []string{
			`COWBIRD_BODY_LIMIT: must be an integer, got "huge"`,
			`COWBIRD_ADMIN_TOKENS: token "ci" is defined twice`,
			`COWBIRD_ADMIN_TOKENS: entry 3: the name before '=' must be letters, digits, '.', '_' or '-'`,
			`COWBIRD_MAGPIE_AUTH: must be true or false, got "maybe"`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := resolveDaemon(cowbirdSection(t, "config.yml", tc.file), env(tc.env))
			if want := strings.Join(tc.want, "\n"); errs.Error() != want {
				t.Errorf("errors =\n%v\nwant\n%s", errs, want)
			}
			for _, e := range errs {
				if strings.Contains(e.Error(), "s3cret") || strings.Contains(e.Error(), "again") {
					t.Errorf("%v quotes a token", e)
				}
			}
			if len(got.validate()) > 0 {
				t.Errorf("an invalid value did not leave the default: %+v", got)
			}
		})
	}
}
