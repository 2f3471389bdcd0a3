package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dlclark/regexp2"
	"github.com/dlclark/regexp2/syntax"
	"gopkg.in/yaml.v3"
)

// SyncPoint is one entry of sync_permissions (cowbird.md §2.5): resources
// that several Magpie services expose, and how permissions on one map to
// permissions on another.
type SyncPoint struct {
	// Name is the sync point's key; it only groups its resources.
	Name string
	// Services are the service types in config order.
	Services []Service
	// Mappings are the permissions_mapping lines in config order.
	Mappings []Mapping
	// File is the base name of the config file the sync point came from.
	File string
}

// Service is the resources of one Magpie service type in a sync point.
type Service struct {
	// Type is a Magpie service type, e.g. "thredds", "geoserver", "api".
	Type string
	// Resources are the resource keys in config order.
	Resources []Resource
}

// Resource is a resource key and the path its segments describe, from the
// service down.
type Resource struct {
	// Key is unique across all services of the sync point.
	Key      string
	Segments []Segment
}

// SegmentKind says how a segment matches resource names.
type SegmentKind int

// The segment kinds.
const (
	// Literal matches exactly Segment.Name.
	Literal SegmentKind = iota
	// Var ("{var}") matches one segment and binds it to Segment.Var.
	Var
	// Multi ("**") matches zero or more consecutive segments.
	Multi
	// Regex matches with Segment.Regexp (a search, not a full match).
	Regex
)

// Segment is one element of a resource path.
type Segment struct {
	// Kind is derived from Name or Regex.
	Kind SegmentKind
	// Name is the segment name as written (literal, "{var}" or "**"); empty
	// for a Regex segment.
	Name string
	// Var is the variable name of a Var segment (spaces inside the braces
	// dropped).
	Var string
	// Pattern is the regex source of a Regex segment, in Python's syntax.
	Pattern string
	// Regexp is Pattern compiled by compileRegex: regexp2 has the
	// look-around of Python's re that RE2 lacks.
	Regexp *regexp2.Regexp
	// Type is the Magpie resource type (service, directory, file, route…).
	Type string
	// Field is the key of Magpie's resource JSON read instead of
	// resource_name on the source side, e.g. resource_display_name or
	// parent_id; empty for the default.
	Field string
}

// Direction is a mapping arrow.
type Direction string

// The three arrows.
const (
	Both        Direction = "<->"
	LeftToRight Direction = "->"
	RightToLeft Direction = "<-"
)

// Mapping is one permissions_mapping line, parsed.
type Mapping struct {
	// Text is the line as written (after $VAR expansion).
	Text       string
	LeftKey    string
	LeftPerms  []Permission
	Direction  Direction
	RightKey   string
	RightPerms []Permission
}

// Rule is a mapping in one direction: each of SourcePerms on a resource
// matching SourceKey maps to every one of TargetPerms on the corresponding
// TargetKey resource.
type Rule struct {
	SourceKey   string
	SourcePerms []Permission
	TargetKey   string
	TargetPerms []Permission
}

// Permission is a Magpie permission in its explicit form.
type Permission struct {
	Name   string
	Access string // "allow" or "deny"
	Scope  string // "recursive" or "match"
}

// String returns the explicit form "<name>-<access>-<scope>".
func (p Permission) String() string { return p.Name + "-" + p.Access + "-" + p.Scope }

// ParsePermission normalises a permission as written in a mapping:
// "read" is read-allow-recursive, "read-match" is read-allow-match and
// "read-deny-match" is kept; anything else (e.g. "read-deny") is an error.
func ParsePermission(s string) (Permission, error) {
	parts := strings.Split(s, "-")
	switch {
	case len(parts) == 1 && parts[0] != "":
		return Permission{Name: s, Access: "allow", Scope: "recursive"}, nil
	case len(parts) == 2 && parts[0] != "" && parts[1] == "match":
		return Permission{Name: parts[0], Access: "allow", Scope: "match"}, nil
	case len(parts) == 3 && parts[0] != "" && (parts[1] == "allow" || parts[1] == "deny") &&
		(parts[2] == "recursive" || parts[2] == "match"):
		return Permission{Name: parts[0], Access: parts[1], Scope: parts[2]}, nil
	}
	// The original's text (cowbird.md §4.7), capitalised as it is.
	return Permission{}, fmt.Errorf("Invalid permission found: %s. It should use the explicit format `<name>-<access>-<scope>`.", s)
}

// Rules expands the arrow: -> gives left to right, <- right to left, <->
// both (left to right first).
func (m Mapping) Rules() []Rule {
	lr := Rule{SourceKey: m.LeftKey, SourcePerms: m.LeftPerms, TargetKey: m.RightKey, TargetPerms: m.RightPerms}
	rl := Rule{SourceKey: m.RightKey, SourcePerms: m.RightPerms, TargetKey: m.LeftKey, TargetPerms: m.LeftPerms}
	switch m.Direction {
	case LeftToRight:
		return []Rule{lr}
	case RightToLeft:
		return []Rule{rl}
	default:
		return []Rule{lr, rl}
	}
}

// Rules returns the directed rules of every mapping, in mapping order.
func (sp SyncPoint) Rules() []Rule {
	var out []Rule
	for _, m := range sp.Mappings {
		out = append(out, m.Rules()...)
	}
	return out
}

// Resource returns the resource with that key and its service type.
func (sp SyncPoint) Resource(key string) (Resource, string, bool) {
	for _, svc := range sp.Services {
		for _, r := range svc.Resources {
			if r.Key == key {
				return r, svc.Type, true
			}
		}
	}
	return Resource{}, "", false
}

// HasMulti reports whether a segment is "**".
func (r Resource) HasMulti() bool {
	for _, s := range r.Segments {
		if s.Kind == Multi {
			return true
		}
	}
	return false
}

// Vars returns the variable names of the Var segments, in path order.
func (r Resource) Vars() []string {
	var out []string
	for _, s := range r.Segments {
		if s.Kind == Var {
			out = append(out, s.Var)
		}
	}
	return out
}

// The original's regexes (cowbird/config.py). Python's \w is Unicode.
const (
	word        = `[\p{L}\p{N}_]`
	permWord    = `[\p{L}\p{N}_-]+`
	permsExpr   = `(` + permWord + `|\[\s*` + permWord + `(?:\s*,\s*` + permWord + `)*\s*\])`
	mappingExpr = `(` + word + `+)\s*:\s*` + permsExpr + `\s*(<->|<-|->)\s*(` + word + `+)\s*:\s*` + permsExpr
)

var (
	mappingSearch  = regexp.MustCompile(mappingExpr)
	mappingAnchor  = regexp.MustCompile(`^` + mappingExpr)
	permWordRegexp = regexp.MustCompile(permWord)
	namedToken     = regexp.MustCompile(`^\{\s*(` + word + `+)\s*\}$`)
)

// regexTimeout bounds one match of a configured regex, which may backtrack.
const regexTimeout = time.Second

// ParseMapping parses one permissions_mapping line. Like the original, the
// line must contain a mapping (schema check) and the mapping must start the
// line (parse); text after it is ignored.
func ParseMapping(line string) (Mapping, error) {
	if !mappingSearch.MatchString(line) {
		return Mapping{}, fmt.Errorf("%q does not match the format `<res_key1> : <permissions> <-|->|<-> <res_key2> : <permissions>`", line)
	}
	g := mappingAnchor.FindStringSubmatch(line)
	if g == nil {
		// The original's text (cowbird.md §2.5).
		return Mapping{}, fmt.Errorf("Error parsing mapping `%s`. Couldn't find all mapping info because of invalid format.", line)
	}
	m := Mapping{Text: line, LeftKey: g[1], Direction: Direction(g[3]), RightKey: g[4]}
	var err error
	if m.LeftPerms, err = parsePermissions(g[2]); err != nil {
		return Mapping{}, err
	}
	if m.RightPerms, err = parsePermissions(g[5]); err != nil {
		return Mapping{}, err
	}
	return m, nil
}

func parsePermissions(s string) ([]Permission, error) {
	var out []Permission
	for _, w := range permWordRegexp.FindAllString(s, -1) {
		p, err := ParsePermission(w)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// syncPoint decodes one sync point, strictly: unknown keys are errors.
func (d *decoder) syncPoint(name string, n *yaml.Node) SyncPoint {
	path := "sync_permissions." + name
	sp := SyncPoint{Name: name, File: d.file}
	pairs, _ := d.mapping(n, path)
	var haveServices, haveMappings bool
	for _, p := range pairs {
		switch p.key {
		case "services":
			haveServices = true
			sp.Services = d.services(p.val, path+".services")
		case "permissions_mapping":
			haveMappings = true
			lines, _ := d.list(p.val, path+".permissions_mapping")
			for i, ln := range lines {
				lp := path + ".permissions_mapping[" + strconv.Itoa(i) + "]"
				s, ok := d.str(ln, lp)
				if !ok {
					continue
				}
				m, err := ParseMapping(s)
				if err != nil {
					d.fail(lp, "%v", err)
					continue
				}
				sp.Mappings = append(sp.Mappings, m)
			}
		default:
			d.fail(join(path, p.key), "unknown key")
		}
	}
	if r := resolve(n); r != nil && r.Kind == yaml.MappingNode {
		if !haveServices {
			d.fail(path+".services", "is required")
		}
		if !haveMappings {
			d.fail(path+".permissions_mapping", "is required")
		}
	}
	return sp
}

func (d *decoder) services(n *yaml.Node, path string) []Service {
	svcs, _ := d.mapping(n, path)
	var out []Service
	for _, sv := range svcs {
		svc := Service{Type: sv.key}
		sp := join(path, sv.key)
		res, _ := d.mapping(sv.val, sp)
		for _, r := range res {
			rp := join(sp, r.key)
			items, _ := d.list(r.val, rp)
			resource := Resource{Key: r.key}
			for i, it := range items {
				if seg, ok := d.segment(it, rp+"["+strconv.Itoa(i)+"]"); ok {
					resource.Segments = append(resource.Segments, seg)
				}
			}
			svc.Resources = append(svc.Resources, resource)
		}
		out = append(out, svc)
	}
	return out
}

func (d *decoder) segment(n *yaml.Node, path string) (Segment, bool) {
	pairs, ok := d.mapping(n, path)
	if !ok {
		return Segment{}, false
	}
	var seg Segment
	var hasName, hasRegex, hasType bool
	for _, p := range pairs {
		kp := join(path, p.key)
		var good bool
		switch p.key {
		case "name":
			hasName = true
			seg.Name, good = d.str(p.val, kp)
		case "regex":
			hasRegex = true
			if seg.Pattern, good = d.str(p.val, kp); good {
				re, err := compileRegex(seg.Pattern)
				if err != nil {
					d.fail(kp, "invalid regex %q: %v", seg.Pattern, err)
					good = false
				} else {
					seg.Regexp = re
				}
			}
		case "type":
			hasType = true
			seg.Type, good = d.str(p.val, kp)
		case "field":
			// Any key of Magpie's resource JSON; the original reads
			// res[field], so an empty name can never be found.
			seg.Field, good = d.nonEmpty(p.val, kp)
		default:
			d.fail(kp, "unknown key")
		}
		ok = ok && good
	}
	if hasName == hasRegex {
		d.fail(path, "must have exactly one of name or regex")
		ok = false
	}
	if !hasType {
		d.fail(path+".type", "is required")
		ok = false
	}
	switch {
	case hasRegex:
		seg.Kind = Regex
	case seg.Name == "**":
		seg.Kind = Multi
	default:
		if g := namedToken.FindStringSubmatch(seg.Name); g != nil {
			seg.Kind, seg.Var = Var, g[1]
		}
	}
	return seg, ok
}

// validate runs the semantic checks of cowbird.md §2.5 (1-4) with the
// original's messages. Regex segments are ignored by the token checks.
func (sp SyncPoint) validate() Errors {
	var errs Errors
	path := "sync_permissions." + sp.Name
	fail := func(p, msg string) { errs = append(errs, &FieldError{File: sp.File, Path: p, Msg: msg}) }
	defined := map[string]Resource{}
	for _, svc := range sp.Services {
		for _, r := range svc.Resources {
			rp := path + ".services." + svc.Type + "." + r.Key
			if _, dup := defined[r.Key]; dup {
				fail(rp, "Found duplicate resource key "+r.Key+" in config. Config resource keys should be unique even between different services.")
				continue
			}
			defined[r.Key] = r
			multi, vars := 0, map[string]bool{}
			for _, s := range r.Segments {
				switch s.Kind {
				case Multi:
					if multi++; multi == 2 {
						fail(rp, "Invalid config value for resource key "+r.Key+". Only one `**` token is permitted per resource.")
					}
				case Var:
					if vars[s.Var] {
						fail(rp, "Invalid config value for resource key "+r.Key+". Named token "+s.Var+" was found in multiple segments of the resource path. Each named token should only be used once in a resource path.")
					}
					vars[s.Var] = true
				}
			}
		}
	}
	for i, m := range sp.Mappings {
		mp := path + ".permissions_mapping[" + strconv.Itoa(i) + "]"
		left, lok := defined[m.LeftKey]
		right, rok := defined[m.RightKey]
		for _, k := range []struct {
			key string
			ok  bool
		}{{m.LeftKey, lok}, {m.RightKey, rok}} {
			if !k.ok {
				fail(mp, "Invalid config mapping references resource "+k.key+" which is not defined in any service.")
			}
		}
		if !lok || !rok {
			continue
		}
		lvars, rvars := tokenSet(left), tokenSet(right)
		switch m.Direction {
		case Both:
			if left.HasMulti() != right.HasMulti() {
				fail(mp, "Invalid permission mapping `"+m.Text+"`. For a bidirectional mapping, either all mapped resources should have `**` or none should use them.")
			}
			if pySet(lvars) != pySet(rvars) {
				fail(mp, "Invalid permission mapping `"+m.Text+"`. For a bidirectional mapping, both resources should have exactly the same named_tokens. ("+
					m.LeftKey+": "+pySet(lvars)+", "+m.RightKey+": "+pySet(rvars)+")")
			}
		default:
			src, tgt := left, right
			if m.Direction == RightToLeft {
				src, tgt = right, left
			}
			if !src.HasMulti() && tgt.HasMulti() {
				fail(mp, "Invalid permission mapping `"+m.Text+"`. For a unidirectional mapping, the source resource should use a MULTI_TOKEN if the target is using one.")
			}
			missing := map[string]bool{}
			srcVars := tokenSet(src)
			for v := range tokenSet(tgt) {
				if !srcVars[v] {
					missing[v] = true
				}
			}
			if len(missing) > 0 {
				fail(mp, "Invalid permission mapping `"+m.Text+"`. For a unidirectional mapping, all named tokens found in the target resource should also be found in the source resource, but the tokens `"+pySet(missing)+"` are missing from the source.")
			}
		}
	}
	return errs
}

func tokenSet(r Resource) map[string]bool {
	out := map[string]bool{}
	for _, v := range r.Vars() {
		out[v] = true
	}
	return out
}

// pySet formats a set of names as Python prints a set of strings, sorted:
// {'a', 'b'}, or set() when empty.
func pySet(s map[string]bool) string {
	if len(s) == 0 {
		return "set()"
	}
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, "'"+n+"'")
	}
	sort.Strings(names)
	return "{" + strings.Join(names, ", ") + "}"
}

// compileRegex compiles a regex segment written for Python's re (the
// original's engine) with regexp2, whose default syntax is .NET's: the
// Python-only constructs are translated first (pythonToNET). Each match is
// bounded by regexTimeout. A syntax error quotes the pattern as written.
func compileRegex(pattern string) (*regexp2.Regexp, error) {
	re, err := regexp2.Compile(pythonToNET(pattern), regexp2.None)
	if err != nil {
		var serr *syntax.Error
		if errors.As(err, &serr) {
			serr.Expr = pattern
		}
		return nil, err
	}
	re.MatchTimeout = regexTimeout
	return re, nil
}

// pythonToNET rewrites the constructs of Python's re syntax that .NET's
// (regexp2's) lacks or reads differently, outside character classes,
// comments and escapes, and leaves the rest as written:
//
//   - a named group (?P<name>...) becomes (?<name>...);
//   - a named backreference (?P=name) becomes \k<name>;
//   - \Z (end of text in Python) becomes \z (.NET's \Z also matches before
//     a final newline);
//   - an unescaped [ inside a class, a literal in Python, is escaped (.NET
//     reads -[...] there as a class subtraction);
//   - when named and unnamed groups are mixed, the unnamed ones are named
//     too: .NET numbers named groups after all unnamed ones, Python in order
//     of their opening parenthesis, and numbered backreferences (\2, (?(2)..))
//     must keep designating the same group.
//
// Python's other syntax is .NET's too (look-around, (?:...), (?#...),
// (?(name)yes|no), lazy and possessive repeats, \d \w \s over Unicode).
func pythonToNET(p string) string {
	var info groupScan
	scanPython(p, &info, nil)
	prefix := ""
	if info.named > 0 && info.unnamed > 0 {
		// A prefix no group of the pattern is named with.
		prefix = "_g"
		for slices.ContainsFunc(info.names, func(n string) bool { return strings.HasPrefix(n, prefix) }) {
			prefix = "_" + prefix
		}
	}
	var b strings.Builder
	b.Grow(len(p) + 8)
	scanPython(p, &groupScan{prefix: prefix}, &b)
	return b.String()
}

// groupScan counts the capturing groups of a pattern; prefix, when set,
// names the unnamed ones prefix1, prefix2... by their Python number.
type groupScan struct {
	named, unnamed int
	names          []string
	prefix         string
}

// scanPython walks Python regex p, counting its groups in g and, when out is
// not nil, writing its .NET translation (see pythonToNET) there.
func scanPython(p string, g *groupScan, out *strings.Builder) {
	emit := func(s string) {
		if out != nil {
			out.WriteString(s)
		}
	}
	verbose := false // after a (?x) flag group: # starts a comment
	inClass, classFirst := false, 0
	for i := 0; i < len(p); {
		c := p[i]
		switch {
		case c == '\\':
			if i+1 == len(p) {
				emit(p[i:])
				return
			}
			if p[i+1] == 'Z' && !inClass {
				emit(`\z`)
			} else {
				emit(p[i : i+2])
			}
			i += 2
		case inClass:
			switch {
			case c == ']' && i > classFirst:
				inClass = false
				emit("]")
			case c == '[':
				emit(`\[`)
			default:
				emit(p[i : i+1])
			}
			i++
		case c == '[':
			// A ] right after [ or [^ is a literal.
			j := i + 1
			if j < len(p) && p[j] == '^' {
				j++
			}
			inClass, classFirst = true, j
			emit(p[i:j])
			i = j
		case c == '#' && verbose:
			j := strings.IndexByte(p[i:], '\n')
			if j < 0 {
				j = len(p) - i
			}
			emit(p[i : i+j])
			i += j
		case c == '(' && strings.HasPrefix(p[i:], "(?"):
			i = scanGroup(p, i, g, &verbose, emit)
		case c == '(':
			g.unnamed++
			if g.prefix != "" {
				// Python numbers every group in order: named and unnamed.
				emit("(?<" + g.prefix + strconv.Itoa(g.named+g.unnamed) + ">")
			} else {
				emit("(")
			}
			i++
		default:
			emit(p[i : i+1])
			i++
		}
	}
}

// scanGroup handles the "(?" construct at p[i] and returns the index after
// what it consumed.
func scanGroup(p string, i int, g *groupScan, verbose *bool, emit func(string)) int {
	rest := p[i+2:]
	// until returns the length of rest up to and including the first stop
	// byte after rest[0], or -1.
	until := func(stop byte) int {
		if j := strings.IndexByte(rest[1:], stop); j >= 0 {
			return j + 2
		}
		return -1
	}
	switch {
	case strings.HasPrefix(rest, "P<"):
		if n := until('>'); n > 0 {
			name := rest[2 : n-1]
			g.named++
			g.names = append(g.names, name)
			emit("(?<" + name + ">")
			return i + 2 + n
		}
	case strings.HasPrefix(rest, "P="):
		if n := until(')'); n > 0 {
			emit(`\k<` + rest[2:n-1] + ">")
			return i + 2 + n
		}
	case strings.HasPrefix(rest, "#"), strings.HasPrefix(rest, "("):
		// A comment, or the condition of (?(name)yes|no): copied up to its
		// closing parenthesis, which holds no group.
		if n := until(')'); n > 0 {
			emit(p[i : i+2+n])
			return i + 2 + n
		}
	case strings.HasPrefix(rest, "<") && !strings.HasPrefix(rest, "<=") && !strings.HasPrefix(rest, "<!"),
		strings.HasPrefix(rest, "'"):
		// .NET's own named groups, not Python's, but groups all the same.
		g.named++
		stop := byte('>')
		if rest[0] == '\'' {
			stop = '\''
		}
		if n := until(stop); n > 0 {
			g.names = append(g.names, rest[1:n-1])
		}
	default:
		// Flags, e.g. (?x), (?ix) or (?x-i:...): x turned on makes # start
		// a comment, from there on (a scoped (?x:...) too, which is close
		// enough for telling comments apart).
		j := 0
		for j < len(rest) && strings.IndexByte("aiLmsux-", rest[j]) >= 0 {
			j++
		}
		on, _, _ := strings.Cut(rest[:j], "-")
		if j < len(rest) && (rest[j] == ')' || rest[j] == ':') && strings.Contains(on, "x") {
			*verbose = true
		}
	}
	emit("(?")
	return i + 2
}
