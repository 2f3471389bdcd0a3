package hooks

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
)

// The values of secret variables (env setting and environment variables)
// reach the hook's processes but no log record at any level, no recorded
// line, status or error, and no returned result.
func TestSecretVariablesNeverWritten(t *testing.T) {
	const (
		envSecret = "pw-from-env-5f2c"       // hooks.env QUOTA_PASSWORD
		varSecret = "alice-tok-from-var-9d1" // environment variable API_TOKEN, templated
		plain     = "plain-value-visible"    // hooks.env QUOTA_SERVER: not secret
	)
	out := t.TempDir()
	cfg := loadHooks(t, `
hooks:
  env: {QUOTA_PASSWORD: `+envSecret+`, QUOTA_SERVER: `+plain+`}
`+selfAccount("alice")+`
  user_created:
    run_as: "{{Event.UserName}}"
    environments:
      - name: creds
        variables: {API_TOKEN: "{{Event.UserName}}-tok-from-var-9d1"}
        onEnter:
          command: /bin/sh
          args: [-c, 'echo "entering with $QUOTA_PASSWORD"; echo "cowbird_status: using $API_TOKEN"', "{{Env.API_TOKEN}}"]
    tasks:
      - command: /bin/sh
        args:
          - -c
          - |
            printf '%s\n%s\n' "$QUOTA_PASSWORD" "$API_TOKEN" > "$1/seen"
            echo "token $API_TOKEN, server $QUOTA_SERVER"
            echo "cowbird_fail: quota refused $QUOTA_PASSWORD"
            exit 3
          - sh
          - `+out+`
          - "{{Env.QUOTA_PASSWORD}}"
`)
	var logs bytes.Buffer
	l := logrus.New()
	l.SetOutput(&logs)
	l.SetLevel(logrus.TraceLevel)
	l.SetFormatter(&logrus.JSONFormatter{})
	rec := newRecorder()
	h, err := New(cfg, Options{SessionRoot: t.TempDir(), Recorder: rec, Log: logrus.NewEntry(l)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.RunOnce(context.Background(), "user_created", handlers.UserEvent{Action: handlers.Created, UserName: "alice"})
	var he *HookError
	if !errors.As(err, &he) {
		t.Fatalf("RunOnce = %v, want a HookError", err)
	}

	seen, rerr := os.ReadFile(filepath.Join(out, "seen"))
	if rerr != nil || string(seen) != envSecret+"\n"+varSecret+"\n" {
		t.Fatalf("the hook saw %q, %v; want both secrets", seen, rerr)
	}
	run := await(t, rec.started)
	finished := await(t, run.finished)
	run.mu.Lock()
	statuses := strings.Join(run.statuses, "\n")
	run.mu.Unlock()
	var results strings.Builder
	for _, a := range res.Actions {
		results.WriteString(a.StatusMessage + "\n" + a.FailMessage + "\n")
	}
	written := map[string]string{
		"log":            logs.String(),
		"recorded lines": strings.Join(run.log(), "\n"),
		"statuses":       statuses,
		"finish error":   finished.Error(),
		"error":          err.Error(),
		"result":         results.String(),
	}
	for where, text := range written {
		for _, secret := range []string{envSecret, varSecret} {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds secret %q:\n%s", where, secret, text)
			}
		}
	}
	for where, want := range map[string]string{
		"log":          "token ********, server " + plain, // output, masked; plain values stay
		"error":        "quota refused ********",
		"finish error": "quota refused ********",
		"statuses":     "using ********",
	} {
		if !strings.Contains(written[where], want) {
			t.Errorf("%s lacks %q:\n%s", where, want, written[where])
		}
	}
	if !strings.Contains(logs.String(), "run /bin/sh") {
		t.Errorf("the log has no command line, so the test proves nothing about it:\n%s", logs.String())
	}
}

func TestIsSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"QUOTA_PASSWORD": true, "db_passwd": true, "CHAT_SECRET_URL": true, "GITHUB_TOKEN": true,
		"AWS_ACCESS_KEY": true, "API_KEY": true, "APIKEY": true, "KEY": true, "SMB_PASS": true,
		"BASIC_AUTH": true, "GOOGLE_APPLICATION_CREDENTIALS": true,
		"QUOTA_SERVER": false, "PATH": false, "KEYBOARD": false, "PASSAGE": false, "AUTHOR": false,
		"CHAT_URL": false, "MONKEY": false,
	} {
		if got := IsSecretName(name); got != want {
			t.Errorf("IsSecretName(%s) = %v, want %v", name, got, want)
		}
	}
}

// Multi-line values are masked line by line, longest first; short ones
// (under minSecret) are not.
func TestMasker(t *testing.T) {
	m := &masker{}
	m.add(map[string]string{"A_TOKEN": "line-one\r\nline-two", "B_SECRET": "line-one-longer", "C_KEY": "abc", "PLAIN": "visible"})
	got := m.str("line-one-longer | line-one | line-two | abc | visible")
	if want := "******** | ******** | ******** | abc | visible"; got != want {
		t.Errorf("str = %q, want %q", got, want)
	}
	base := errors.New("failed with line-two")
	err := m.err(base)
	if err.Error() != "failed with ********" || !errors.Is(err, base) {
		t.Errorf("err = %v (Is base: %v)", err, errors.Is(err, base))
	}
	if m.err(errors.New("nothing secret")).Error() != "nothing secret" || m.err(nil) != nil {
		t.Error("err changed an error without secrets")
	}
}

// Event values reach a hook as single arguments, never through a shell:
// a user name with spaces and shell syntax is one argument, verbatim, and
// its command substitution never runs.
func TestEventValuesAreSingleArguments(t *testing.T) {
	out := t.TempDir()
	name := `eve x; touch ` + out + `/pwned $(touch ` + out + `/pwned2) ` + "`touch " + out + "/pwned3`"
	h, _, _ := newHandler(t, "hooks:\n"+selfAccount("runner")+`
  user_created:
    run_as: runner
    tasks:
      - {command: /bin/sh, args: [-c, 'printf "%s\n" "$#" "$1" > "$0"', "`+out+`/args", "{{Event.UserName}}"]}
`)
	if _, err := h.RunOnce(context.Background(), "user_created", handlers.UserEvent{Action: handlers.Created, UserName: name}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(out, "args"))
	if err != nil || string(got) != "1\n"+name+"\n" {
		t.Errorf("the hook got %q, %v; want one argument %q", got, err, name)
	}
	for _, f := range []string{"pwned", "pwned2", "pwned3"} {
		if _, err := os.Stat(filepath.Join(out, f)); err == nil {
			t.Errorf("%s exists: the event value ran as shell code", f)
		}
	}
}
