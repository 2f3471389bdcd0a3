package config

import (
	"os"
	"slices"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// env is a lookup function over a fixed map.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func newLog() (*logrus.Entry, *logtest.Hook) {
	l, hook := logtest.NewNullLogger()
	return logrus.NewEntry(l), hook
}

// warnings returns the messages and fields of the logged warnings.
func warnings(hook *logtest.Hook) []string {
	var out []string
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			s := e.Message
			keys := make([]string, 0, len(e.Data))
			for k := range e.Data {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				s += " " + k + "=" + e.Data[k].(string)
			}
			out = append(out, s)
		}
	}
	return out
}

// mustLoad loads path with no handler kinds (the tests of this package
// need none; those that do are in package config_test) and env vars.
func mustLoad(t *testing.T, path string, vars map[string]string) (*Config, *logtest.Hook) {
	t.Helper()
	log, hook := newLog()
	cfg, err := load(path, log, nil, env(vars))
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return cfg, hook
}

func perms(ps []Permission) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
