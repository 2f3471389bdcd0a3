package magpie

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cowbird-go/cowbird/config"
)

// tokenName is what {var} and ** match: Python's [\w:-] (cowbird.md §2.5).
const tokenName = `[\p{L}\p{N}_:-]+`

// multiVar is the capture key of "**"; no {var} can be named so.
const multiVar = "**"

// syncPoint is a config.SyncPoint compiled for the synchronizer (§4.1).
type syncPoint struct {
	name, file string
	// svcTypes are the configured service types, in config order.
	svcTypes []string
	keys     map[string]*resKey
	// sources are the keys mapped from, by service type, in config order.
	sources map[string][]*resKey
	// rules maps a source key and an explicit source permission (lower
	// case) to its targets.
	rules map[string]map[string][]target
	// pairs lists the rules' (source key, permission) pairs in config order.
	pairs []pair
}

// resKey is one resource key with its matcher.
type resKey struct {
	key, svcType string
	segs         []config.Segment
	// re is the anchored token pattern; nil when rx is set.
	re *regexp.Regexp
	// rx is the key's first regex segment, which alone matches (§8.5).
	rx       *config.Segment
	literals int
}

// target is a target key and the permissions mapped to it, in mapping order.
type target struct {
	key   string
	perms []config.Permission
}

type pair struct{ key, perm string }

// match is a resource key that matched a resource path (§4.2).
type match struct {
	key   *resKey
	score int
	// vars holds the {var} captures and, under multiVar, the "**" one as
	// "/a/b"; text is the substring a regex key matched.
	vars map[string]string
	text string
}

// lower normalises a permission: Magpie names are lower case, mappings may
// be camelCase (compatibility fix).
func lower(p config.Permission) config.Permission {
	return config.Permission{Name: strings.ToLower(p.Name), Access: strings.ToLower(p.Access), Scope: strings.ToLower(p.Scope)}
}

// compile builds a syncPoint; it rejects what it could not run: a mapping
// to an undefined key, an unknown field or a literal that is not a regex.
func compile(sp config.SyncPoint) (*syncPoint, error) {
	out := &syncPoint{name: sp.Name, file: sp.File, keys: map[string]*resKey{}, sources: map[string][]*resKey{},
		rules: map[string]map[string][]target{}}
	for _, svc := range sp.Services {
		out.svcTypes = append(out.svcTypes, svc.Type)
		for _, r := range svc.Resources {
			k, err := compileKey(svc.Type, r)
			if err != nil {
				return nil, fmt.Errorf("sync point %s: %w", sp.Name, err)
			}
			out.keys[r.Key] = k
		}
	}
	for _, rule := range sp.Rules() {
		for _, key := range []string{rule.SourceKey, rule.TargetKey} {
			if out.keys[key] == nil {
				return nil, fmt.Errorf("sync point %s: mapping references resource %s which is not defined in any service", sp.Name, key)
			}
		}
		if out.rules[rule.SourceKey] == nil {
			out.rules[rule.SourceKey] = map[string][]target{}
			src := out.keys[rule.SourceKey]
			out.sources[src.svcType] = append(out.sources[src.svcType], src)
		}
		for _, sperm := range rule.SourcePerms {
			s := lower(sperm).String()
			targets := out.rules[rule.SourceKey][s]
			if targets == nil {
				out.pairs = append(out.pairs, pair{rule.SourceKey, s})
			}
			i := slices.IndexFunc(targets, func(t target) bool { return t.key == rule.TargetKey })
			if i < 0 {
				targets, i = append(targets, target{key: rule.TargetKey}), len(targets)
			}
			for _, tp := range rule.TargetPerms {
				targets[i].perms = append(targets[i].perms, lower(tp))
			}
			out.rules[rule.SourceKey][s] = targets
		}
	}
	return out, nil
}

// compileKey builds the matcher of one resource key (§4.2 step 2).
func compileKey(svcType string, r config.Resource) (*resKey, error) {
	k := &resKey{key: r.Key, svcType: svcType, segs: r.Segments}
	var expr strings.Builder
	expr.WriteString("^")
	for i, s := range r.Segments {
		switch s.Kind {
		case config.Regex:
			if k.rx == nil {
				k.rx = &r.Segments[i]
			}
		case config.Var:
			fmt.Fprintf(&expr, "/(?P<%s>%s)::%s", s.Var, tokenName, s.Type)
		case config.Multi:
			fmt.Fprintf(&expr, "(?P<multi_token>(?:/%s::%s)*)", tokenName, s.Type)
		default:
			// Inserted unescaped, as the original does (§8.5).
			fmt.Fprintf(&expr, "/%s::%s", s.Name, s.Type)
			k.literals++
		}
	}
	if k.rx != nil {
		return k, nil
	}
	re, err := regexp.Compile(expr.String() + "$")
	if err != nil {
		return nil, fmt.Errorf("resource %s: segments do not form a valid pattern: %w", r.Key, err)
	}
	k.re = re
	return k, nil
}

// namePath is the "/<name>::<type>" path of tree for the key (§4.2 step
// 1): <name> is the value of the segment's field (resource_name by
// default), any key of Magpie's resource JSON, printed as the original's
// f-string prints it. A field the resource lacks is an error, as the
// original's KeyError.
func (k *resKey) namePath(tree []*Resource) (string, error) {
	var b strings.Builder
	for i, r := range tree {
		name := r.Name
		if i < len(k.segs) && k.segs[i].Field != "" {
			var ok bool
			if name, ok = r.field(k.segs[i].Field); !ok {
				return "", fmt.Errorf("resource %s segment %d: field %q is not a key of Magpie's resource %d (%s)",
					k.key, i, k.segs[i].Field, r.ID, r.Name)
			}
		}
		b.WriteString("/" + name + "::" + r.Type)
	}
	return b.String(), nil
}

// match matches the resource path tree against the key.
func (k *resKey) match(tree []*Resource) (*match, error) {
	path, err := k.namePath(tree)
	if err != nil {
		return nil, err
	}
	if k.rx != nil {
		m, err := k.rx.Regexp.FindStringMatch(path)
		if err != nil {
			return nil, fmt.Errorf("resource %s regex %q: %w", k.key, k.rx.Pattern, err)
		}
		if m == nil {
			return nil, nil
		}
		return &match{key: k, score: utf8.RuneCountInString(m.String()), text: m.String()}, nil
	}
	sub := k.re.FindStringSubmatch(path)
	if sub == nil {
		return nil, nil
	}
	m := &match{key: k, score: k.literals, vars: map[string]string{}}
	for i, name := range k.re.SubexpNames() {
		switch name {
		case "":
		case "multi_token":
			v := sub[i]
			for _, s := range k.segs {
				if s.Kind == config.Multi {
					v = strings.ReplaceAll(v, "::"+s.Type, "")
				}
			}
			m.vars[multiVar] = v
		default:
			m.vars[name] = sub[i]
		}
	}
	return m, nil
}

// find selects the best source key matching tree, a resource of service
// type svcType: the highest score wins, a tie is an error (§4.2). Keys that
// are only targets are not candidates: they could only lead nowhere.
func (sp *syncPoint) find(svcType string, tree []*Resource) (*match, error) {
	var best []*match
	for _, k := range sp.sources[svcType] {
		m, err := k.match(tree)
		if err != nil {
			return nil, err
		}
		switch {
		case m == nil:
		case len(best) == 0 || m.score > best[0].score:
			best = []*match{m}
		case m.score == best[0].score:
			best = append(best, m)
		}
	}
	switch len(best) {
	case 0:
		return nil, nil
	case 1:
		return best[0], nil
	}
	keys := make([]string, len(best))
	for i, m := range best {
		keys[i] = m.key.key
	}
	// The original's text (cowbird.md §4.2).
	return nil, fmt.Errorf("Found multiple matching resources of the same length in the config in the service type %s. Ambiguous config resources : %s", svcType, pyList(keys))
}

// path builds the key's resource path from a source match (§4.4).
func (k *resKey) path(m *match) ([]PathElem, error) {
	var out []PathElem
	pieces := func(s, typ string) {
		for _, p := range strings.Split(s, "/") {
			if p != "" {
				out = append(out, PathElem{Name: p, Type: typ})
			}
		}
	}
	for _, s := range k.segs {
		switch s.Kind {
		case config.Literal:
			out = append(out, PathElem{Name: s.Name, Type: s.Type})
		case config.Var, config.Multi:
			name := s.Var
			if s.Kind == config.Multi {
				name = multiVar
			}
			v, ok := m.vars[name]
			if !ok {
				return nil, fmt.Errorf("resource %s: %s is not bound by source %s", k.key, s.Name, m.key.key)
			}
			if s.Kind == config.Var {
				out = append(out, PathElem{Name: v, Type: s.Type})
			} else {
				pieces(v, s.Type)
			}
		case config.Regex:
			if m.key.rx == nil {
				return nil, fmt.Errorf("resource %s: regex %q needs a regex source, not %s", k.key, s.Pattern, m.key.key)
			}
			rm, err := s.Regexp.FindStringMatch(m.text)
			if err != nil {
				return nil, fmt.Errorf("resource %s regex %q: %w", k.key, s.Pattern, err)
			}
			if rm == nil {
				return nil, fmt.Errorf("resource %s: regex %q not found in %q", k.key, s.Pattern, m.text)
			}
			pieces(rm.String(), s.Type)
		}
	}
	return out, nil
}

// pyList formats names as Python prints a list of strings.
func pyList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "'" + n + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// field returns the value of key in Magpie's JSON of the resource as
// Python's str() prints it, which is what the original's f-string puts in
// the name path: a string as is, 3 for an integer, None for null, True or
// False, a list or an object in Python's repr. A Resource without its JSON
// keys (built in code, or from a call the sync does not match) knows only
// its typed fields.
func (r *Resource) field(key string) (string, bool) {
	raw, ok := r.fields[key]
	switch {
	case key == "permission_names" && (ok || r.fields == nil):
		return pyStrings(r.PermissionNames), true
	case key == "permissions" && (ok || r.fields == nil):
		return pyPermissions(r.Permissions), true
	case ok:
		return pyStr(raw), true
	case r.fields != nil:
		return "", false
	}
	switch key {
	case "resource_name":
		return r.Name, true
	case "resource_display_name":
		return r.DisplayName, true
	case "resource_type":
		return r.Type, true
	case "resource_id":
		return strconv.Itoa(r.ID), true
	case "parent_id":
		return pyID(r.ParentID), true
	case "root_service_id":
		return pyID(r.RootServiceID), true
	}
	return "", false
}

// pyID prints an id that is null (0) for a service.
func pyID(id int) string {
	if id == 0 {
		return "None"
	}
	return strconv.Itoa(id)
}

// pyStr prints a JSON value as Python's str() prints what json.loads made
// of it: strings bare, everything else as repr.
func pyStr(raw json.RawMessage) string {
	var s string
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '"' && json.Unmarshal(t, &s) == nil {
		return s
	}
	var b strings.Builder
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if pyRepr(dec, &b) != nil {
		return string(raw)
	}
	return b.String()
}

// pyRepr writes the next JSON value of dec as Python's repr() of it.
func pyRepr(dec *json.Decoder, b *strings.Builder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		end := "]"
		if t == '{' {
			end = "}"
		}
		b.WriteString(string(t))
		for i := 0; dec.More(); i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			if t == '{' {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				b.WriteString(pyQuote(k.(string)) + ": ")
			}
			if err := pyRepr(dec, b); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
		b.WriteString(end)
	case string:
		b.WriteString(pyQuote(t))
	case json.Number:
		b.WriteString(pyNumber(t))
	case bool:
		b.WriteString(map[bool]string{true: "True", false: "False"}[t])
	case nil:
		b.WriteString("None")
	}
	return nil
}

// pyNumber prints a JSON number as Python prints the int or float that
// json.loads makes of it.
func pyNumber(n json.Number) string {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return strconv.FormatInt(i, 10) // -0 is 0
		}
		return s
	}
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) {
		return s
	}
	// repr(float): the shortest digits, in exponent form below 1e-4 and
	// from 1e16 on, with a ".0" when fixed and integral.
	e := strconv.FormatFloat(f, 'e', -1, 64)
	if exp, err := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:]); err == nil && f != 0 && (exp < -4 || exp >= 16) {
		return e
	}
	out := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(out, ".") {
		out += ".0"
	}
	return out
}

// pyQuote is Python's repr() of a str: single quotes unless the text has
// some and no double quote, backslash escapes for the quote, the backslash
// and what is not printable.
func pyQuote(s string) string {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x100 && !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x10000 && !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		case !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// pyStrings is Python's repr() of a list of str.
func pyStrings(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = pyQuote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// pyPermissions is Python's repr() of Magpie's permission objects, keys in
// Magpie's order.
func pyPermissions(perms []Permission) string {
	items := make([]string, len(perms))
	for i, p := range perms {
		typ := "None"
		if p.Type != "" {
			typ = pyQuote(p.Type)
		}
		items[i] = "{'name': " + pyQuote(p.Name) + ", 'access': " + pyQuote(p.Access) + ", 'scope': " + pyQuote(p.Scope) + ", 'type': " + typ
		if p.Reason != "" {
			items[i] += ", 'reason': " + pyQuote(p.Reason)
		}
		items[i] += "}"
	}
	return "[" + strings.Join(items, ", ") + "]"
}
