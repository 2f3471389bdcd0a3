package config

import (
	"regexp"
	"sort"
	"strings"
)

// varRef is Python's posixpath.expandvars pattern (ASCII \w): $NAME or ${ANY}.
var varRef = regexp.MustCompile(`\$(\w+|\{[^}]*\})`)

// expander replaces $VAR and ${VAR} the way Python's os.path.expandvars
// does: defined variables are substituted once (values are not expanded
// again), undefined ones are left exactly as written and remembered.
type expander struct {
	lookup    func(string) (string, bool)
	undefined map[string]bool
}

func newExpander(lookup func(string) (string, bool)) *expander {
	return &expander{lookup: lookup, undefined: map[string]bool{}}
}

// expand returns s with every defined variable reference substituted.
func (e *expander) expand(s string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range varRef.FindAllStringSubmatchIndex(s, -1) {
		ref := s[m[0]:m[1]]
		name := s[m[2]:m[3]]
		if strings.HasPrefix(name, "{") {
			name = name[1 : len(name)-1]
		}
		v, ok := e.lookup(name)
		if !ok {
			e.undefined[ref] = true
			continue
		}
		b.WriteString(s[last:m[0]])
		b.WriteString(v)
		last = m[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// undefinedRefs lists the references left unexpanded, as written, sorted.
func (e *expander) undefinedRefs() []string {
	out := make([]string, 0, len(e.undefined))
	for ref := range e.undefined {
		out = append(out, ref)
	}
	sort.Strings(out)
	return out
}
