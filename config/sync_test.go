package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPythonToNET: the Python-only constructs are rewritten outside
// classes, comments and escapes; the rest is left as written.
func TestPythonToNET(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`(?P<year>\d{4})-(?P=year)`, `(?<year>\d{4})-\k<year>`},
		{`(?<=:)(?P<dirs>.*)\/?(?=\/)`, `(?<=:)(?<dirs>.*)\/?(?=\/)`},
		{`[\w]+:[\w\/.-]+`, `[\w]+:[\w\/.-]+`},
		// Inside a class, escaped, or in a comment: not a group.
		{`[(?P<x>)]`, `[(?P<x>)]`},
		{`[]P<(]+`, `[]P<(]+`},
		{`[^](?P<x>]`, `[^](?P<x>]`},
		{`\(?P<x>\)`, `\(?P<x>\)`},
		{`(?#(?P<a>x)y`, `(?#(?P<a>x)y`},
		{"(?x) (?P<w> \\w+ )  # a [comment (?P<c>\n :", "(?x) (?<w> \\w+ )  # a [comment (?P<c>\n :"},
		{"(?-x:a)#(?P<c>b)", "(?-x:a)#(?<c>b)"},
		{"(?ix)#(?P<c>\n(?P<d>b)", "(?ix)#(?P<c>\n(?<d>b)"},
		// Python's end of text; a [ in a class is a literal in Python.
		{`\w+\Z`, `\w+\z`},
		{`[\Z\\]\\Z`, `[\Z\\]\\Z`},
		{`[a-z-[aeiou]]+`, `[a-z-\[aeiou]]+`},
		// Mixed named and unnamed groups: the unnamed ones are named so that
		// numbers keep Python's order; the conditional's number stays.
		{`(?P<a>x)(y)\2`, `(?<a>x)(?<_g2>y)\2`},
		{`(a)?(?P<n>b)(?(1)c|d)`, `(?<_g1>a)?(?<n>b)(?(1)c|d)`},
		{`(?P<_g2>x)(y)`, `(?<_g2>x)(?<__g2>y)`},
		{`(a)(?:b)(?=c)(?<!d)(e)\2`, `(a)(?:b)(?=c)(?<!d)(e)\2`},
		// Unfinished constructs are left for the compiler to refuse.
		{`(?P<a`, `(?P<a`},
		{`(?P=a`, `(?P=a`},
		{`\`, `\`},
	} {
		if got := pythonToNET(tc.in); got != tc.want {
			t.Errorf("pythonToNET(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestPythonRegexMatches: compiled regexes find what CPython 3.11's
// re.search finds in the same text.
func TestPythonRegexMatches(t *testing.T) {
	for _, tc := range []struct{ pattern, text, want string }{
		{`(?P<year>\d{4})-(?P=year)`, "x 2024-2024 2023-2024", "2024-2024"},
		{`(?P<a>x)(y)\2`, "xyx xyy", "xyy"},
		{`(\w)(?P<n>\w)\1`, "abab aba", "aba"},
		{`(?P<a>x)(?P<_g2>y)(z)\3`, "xyzz", "xyzz"},
		{`(a)?(?P<n>b)(?(1)c|d)`, "bd abc bc", "bd"},
		{`[a-z-[aeiou]]+`, "b]]", "b]]"},
		{`[-a[]+`, "-a[b", "-a["},
		{`(?<=:)(?P<dirs>.*)\/?(?=\/)`, "thredds:birdhouse/testdata/file1.nc", "birdhouse/testdata"},
		{`(?P<file>[^\/]+)$`, "thredds:birdhouse/testdata/file1.nc", "file1.nc"},
		{`\w+\Z`, "abc\n", ""},
		{`\w+$`, "abc\n", "abc"},
		{"(?x) (?P<w> \\w+ )  # a [comment (?P<c>\n :", "abc:", "abc:"},
		{`[]P<(]+`, "]P<(x", "]P<("},
		{`(?#(?P<a>x)y`, "y", "y"},
		{`é\w+`, "éété", "éété"},
	} {
		re, err := compileRegex(tc.pattern)
		if err != nil {
			t.Errorf("compileRegex(%q): %v", tc.pattern, err)
			continue
		}
		if re.MatchTimeout != regexTimeout {
			t.Errorf("compileRegex(%q): match timeout %v, want %v", tc.pattern, re.MatchTimeout, regexTimeout)
		}
		m, err := re.FindStringMatch(tc.text)
		got := ""
		if m != nil {
			got = m.String()
		}
		if err != nil || got != tc.want {
			t.Errorf("%q in %q found %q (err %v), want %q", tc.pattern, tc.text, got, err, tc.want)
		}
	}
}

// TestPythonRegexBounded: a pattern that backtracks for ever stops at the
// per-match bound, named groups or not.
func TestPythonRegexBounded(t *testing.T) {
	re, err := compileRegex(`^(?P<a>(?P<b>a+)+)$`)
	if err != nil {
		t.Fatal(err)
	}
	re.MatchTimeout = 50 * time.Millisecond
	start := time.Now()
	if _, err := re.FindStringMatch(strings.Repeat("a", 40) + "!"); err == nil {
		t.Fatal("catastrophic backtracking ended without the timeout")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("match ran %v", d)
	}
}

// TestLoadPythonSyncConfig: the original's Python regexes and any resource
// field load; an empty field, which no resource has, is refused with its
// path; a syntax error quotes the pattern as written.
func TestLoadPythonSyncConfig(t *testing.T) {
	cfg, _ := mustLoad(t, "testdata/python-regex-sync.yml", nil)
	sp := cfg.SyncPoints[0]
	item, _, _ := sp.Resource("thredds_item")
	m, err := item.Segments[1].Regexp.FindStringMatch("thredds:birdhouse/testdata/file1.nc")
	if err != nil || m == nil || m.String() != "birdhouse/testdata" {
		t.Errorf("thredds_item regex %q found %v (%v)", item.Segments[1].Pattern, m, err)
	}
	if got := item.Segments[1].Pattern; got != `(?<=:)(?P<dirs>.*)\/?(?=\/)` {
		t.Errorf("Pattern = %q, want it as written", got)
	}
	byParent, _, _ := sp.Resource("by_parent")
	if f := byParent.Segments[2].Field; f != "parent_id" {
		t.Errorf("field = %q, want parent_id", f)
	}

	path := filepath.Join(t.TempDir(), "c.yml")
	writeFile(t, path, `sync_permissions:
  sp:
    services:
      thredds:
        r:
          - {name: catalog, type: service, field: ""}
          - {regex: '(?P<a>x)(?P=b)', type: directory}
    permissions_mapping: []
`)
	log, _ := newLog()
	_, err = load(path, log, nil, env(nil))
	want := "c.yml: sync_permissions.sp.services.thredds.r[0].field: must be a non-empty string\n" +
		"c.yml: sync_permissions.sp.services.thredds.r[1].regex: invalid regex \"(?P<a>x)(?P=b)\": " +
		"error parsing regexp: reference to undefined group name b in `(?P<a>x)(?P=b)`"
	if err == nil || err.Error() != want {
		t.Errorf("load = %v\nwant %s", err, want)
	}
}
