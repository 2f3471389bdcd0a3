package magpie

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/config"
)

// matchBound is how long one find, plus the path it builds, may take: two
// regex matches of at most a second each (config's per-match bound), with
// room for a loaded machine. A pattern that backtracks without the bound
// would run for years.
const matchBound = 10 * time.Second

// fuzzSyncConfig is a sync point whose keys use every segment kind: a
// regex (pattern), a literal inserted unescaped into the token pattern
// (literal, as the original does), {var} and **.
func fuzzSyncConfig(pattern, literal string) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return `sync_permissions:
  fuzz:
    services:
      api:
        by_regex:
          - {name: svc, type: service}
          - {regex: ` + q(pattern) + `, type: route}
        by_literal:
          - {name: svc, type: service}
          - {name: ` + q(literal) + `, type: route}
          - {name: "**", type: route}
        by_vars:
          - {name: svc, type: service}
          - {name: "{a}", type: route}
          - {name: "**", type: route}
        regex_target:
          - {name: svc, type: service}
          - {name: out, type: route}
          - {regex: ` + q(pattern) + `, type: route}
        vars_target:
          - {name: svc, type: service}
          - {name: "{a}", type: route}
          - {name: "**", type: route}
        multi_target:
          - {name: svc, type: service}
          - {name: out, type: route}
          - {name: "**", type: route}
    permissions_mapping:
      - "by_regex : read -> regex_target : read"
      - "by_literal : read -> multi_target : read"
      - "by_vars : write -> vars_target : write"
`
}

// loadFuzzPoint loads and compiles the sync point of fuzzSyncConfig; nil
// when the config or the compilation refuses it (an error, not a crash).
func loadFuzzPoint(t *testing.T, pattern, literal string) *syncPoint {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sync.yml")
	if err := os.WriteFile(path, []byte(fuzzSyncConfig(pattern, literal)), 0o600); err != nil {
		t.Fatal(err)
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	cfg, err := config.Load(path, logrus.NewEntry(l), nil)
	if err != nil || len(cfg.SyncPoints) != 1 {
		return nil
	}
	sp, err := compile(cfg.SyncPoints[0])
	if err != nil {
		return nil
	}
	return sp
}

// fuzzTree is the resource path svc/<names split on "/">.
func fuzzTree(names string) []*Resource {
	tree := []*Resource{{ID: 1, Name: "svc", Type: "service"}}
	for i, n := range strings.Split(names, "/") {
		tree = append(tree, &Resource{ID: i + 2, Name: n, Type: "route", ParentID: i + 1, RootServiceID: 1})
	}
	return tree
}

// FuzzSyncMatcher compiles a sync point from a fuzzed regex segment and
// literal, then matches a fuzzed resource path against it and builds every
// target path of the match: nothing may panic, and a pathological regex
// must end on the per-match time bound rather than hang.
func FuzzSyncMatcher(f *testing.F) {
	for _, s := range [][3]string{
		{`^/svc::service/(?P<job>[\w-]+)::route$`, `jobs`, `job1`},
		{`(?<=/)[^/]+(?=::route$)`, `wps.outputs`, `a/b/c`},
		{`(a|b)+c`, `a*`, "abab!"}, // TestSyncMatcherRegexIsTimeBounded has the slow one
		{`(?i)JOB(\d+)`, `(x`, `job42/out`},
		{`\`, `[`, ``},
		{`(?P<a>x)(?P=a)`, `{a}`, `xx/{a}`},
		{`.*.*.*=.*`, `.*`, strings.Repeat("x", 20)},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pattern, literal, names string) {
		if len(pattern) > 200 || len(literal) > 100 || len(names) > 300 {
			return
		}
		sp := loadFuzzPoint(t, pattern, literal)
		if sp == nil {
			return
		}
		start := time.Now()
		m, err := sp.find("api", fuzzTree(names))
		if err == nil && m != nil {
			for _, tgt := range sp.keys {
				if _, err := tgt.path(m); err != nil && time.Since(start) > matchBound {
					break
				}
			}
		}
		if took := time.Since(start); took > matchBound {
			t.Fatalf("pattern %q on %q took %s (bound %s)", pattern, names, took, matchBound)
		}
	})
}

// A regex that backtracks exponentially stops at the per-match bound with
// an error; the event fails for Magpie instead of hanging its user's line.
func TestSyncMatcherRegexIsTimeBounded(t *testing.T) {
	sp := loadFuzzPoint(t, `(a+)+$`, "lit")
	if sp == nil {
		t.Fatal("the sync point did not compile")
	}
	start := time.Now()
	_, err := sp.find("api", fuzzTree(strings.Repeat("a", 64)+"!"))
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("find = %v, want a match timeout", err)
	}
	if took > matchBound {
		t.Errorf("find took %s, bound %s", took, matchBound)
	}
}
