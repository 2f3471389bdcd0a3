package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/app"
	"github.com/cowbird-go/cowbird/config"
)

// runCLI runs the command line in-process and returns the exit code and outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

const cliConfig = `handlers:
  Magpie:
    active: true
    url: http://magpie.example/magpie
    admin_user: admin
    admin_password: s3cr3t-pass
  Geoserver:
    active: false
    url: http://geoserver.example/geoserver
    workspace_dir: /ws
  Thredds:
    active: true
  Nginx:
    active: true
    priority: 3
`

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHandlersListFormats(t *testing.T) {
	cfg := writeConfig(t, cliConfig)
	tests := []struct{ format, want string }{
		{"json", "{\n    \"handlers\": [\n        \"Nginx\",\n        \"Magpie\",\n        \"Thredds\"\n    ]\n}\n"},
		{"yaml", "handlers:\n- Nginx\n- Magpie\n- Thredds\n"},
		{"flat", "Nginx\nMagpie\nThredds\n"},
		{"table", "+----------+\n| handlers |\n+==========+\n| Nginx    |\n| Magpie   |\n| Thredds  |\n+----------+\n"},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			code, out, errOut := runCLI(t, "handlers", "list", "--config", cfg, "--format", tc.format)
			if code != exitOK || out != tc.want {
				t.Fatalf("exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", code, out, tc.want, errOut)
			}
		})
	}
	code, out, _ := runCLI(t, "handlers", "list", "-c", cfg, "--json")
	if code != exitOK || !strings.HasPrefix(out, "{\n    \"handlers\": [") {
		t.Fatalf("--json: exit %d, %q", code, out)
	}
	if code, _, _ := runCLI(t, "handlers", "list", "-c", cfg, "-f", "xml"); code != exitUsage {
		t.Fatalf("unknown format: exit %d, want %d", code, exitUsage)
	}
}

func TestHandlersInfo(t *testing.T) {
	cfg := writeConfig(t, cliConfig)
	for _, format := range []string{"json", "yaml", "flat", "table"} {
		t.Run(format, func(t *testing.T) {
			code, out, errOut := runCLI(t, "handlers", "info", "Magpie", "-c", cfg, "-f", format)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if strings.Contains(out, "s3cr3t-pass") || !strings.Contains(out, "<secret>") {
				t.Fatalf("password not masked:\n%s", out)
			}
			if !strings.Contains(out, "http://magpie.example/magpie") {
				t.Fatalf("url missing:\n%s", out)
			}
		})
	}
	code, out, _ := runCLI(t, "handlers", "info", "Magpie", "-c", cfg, "-f", "flat")
	want := "name: Magpie\nactive: true\npriority: unset\nevents: permission_created, permission_deleted\n" +
		"url: http://magpie.example/magpie\nadmin_user: admin\nadmin_password: <secret>\n"
	if code != exitOK || out != want {
		t.Fatalf("flat info = %q, want %q", out, want)
	}
	for _, name := range []string{"Geoserver", "Nope"} {
		code, _, errOut := runCLI(t, "handlers", "info", name, "-c", cfg)
		if code != exitFailure || !strings.Contains(errOut, "Cannot find handler named: "+name) {
			t.Fatalf("info %s: exit %d, stderr %q", name, code, errOut)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := writeConfig(t, cliConfig)
	if code, out, errOut := runCLI(t, "config", "validate", good); code != exitOK || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("valid config: exit %d, %q %q", code, out, errOut)
	}
	bad := writeConfig(t, "handlers:\n  FileSystem:\n    active: true\n    priority: yes\n")
	code, _, errOut := runCLI(t, "config", "validate", bad)
	if code != exitUsage {
		t.Fatalf("invalid config: exit %d, want %d", code, exitUsage)
	}
	for _, want := range []string{"handlers.FileSystem.priority", "[workspace_dir]", "[wps_outputs_dir]"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if code, _, _ := runCLI(t, "config", "validate"); code != exitUsage {
		t.Fatalf("missing argument: exit %d, want %d", code, exitUsage)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"nope"}, {"serve", "--bogus"}, {"version", "extra"}} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	code, out, _ := runCLI(t, "version")
	if code != exitOK || !strings.Contains(out, "Cowbird API "+api.DefaultVersion) {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

func TestHealthcheck(t *testing.T) {
	dir := t.TempDir()
	s, err := config.LoadSettings(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	s.ConfigPath, s.Addr, s.DataDir = writeConfig(t, "handlers:\n  Thredds:\n    active: true\n"), "127.0.0.1:0", dir
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{Settings: s, Log: log, Ready: func(a string) { addr <- a }})
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("daemon did not start: %v", err)
	}
	if code, _, errOut := runCLI(t, "healthcheck", "--url", base+"/"); code != exitOK {
		t.Fatalf("healthcheck of a live daemon: exit %d, %s", code, errOut)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("daemon stopped with %v", err)
	}
	if code, _, _ := runCLI(t, "healthcheck", "--url", base+"/", "--timeout", "2s"); code != exitFailure {
		t.Fatalf("healthcheck of a stopped daemon: exit %d, want %d", code, exitFailure)
	}
}

func TestHooksTest(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.txt")
	cfg := writeConfig(t, `handlers:
  Hooks:
    active: true
hooks:
  allow_run_as_daemon_user: true
  accounts:
    runner: {uid: `+strconv.Itoa(os.Getuid())+`, gid: `+strconv.Itoa(os.Getgid())+`}
  user_created:
    run_as: runner
    tasks:
      - {command: /bin/sh, args: ["-c", "echo hello $0 > `+out+`", "{{Event.UserName}}"]}
`)
	code, stdout, errOut := runCLI(t, "hooks", "test", "user_created", "--user", "zoe", "-c", cfg, "--data-dir", dir)
	if code != exitOK || !strings.Contains(stdout, "session SUCCESS") {
		t.Fatalf("hooks test: exit %d\n%s\n%s", code, stdout, errOut)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "hello zoe\n" {
		t.Fatalf("hook output = %q, %v", got, err)
	}
	if code, _, _ := runCLI(t, "hooks", "test", "user_created", "-c", cfg); code != exitUsage {
		t.Fatalf("missing --user: exit %d, want %d", code, exitUsage)
	}
}
