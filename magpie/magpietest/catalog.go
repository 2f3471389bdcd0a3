package magpietest

import (
	"fmt"
	"slices"
	"strings"
)

// Permission access and scope values (spec A.2.1).
const (
	allow     = "allow"
	deny      = "deny"
	match     = "match"
	recursive = "recursive"
)

// Resource types (spec A.2.2).
const (
	typeService   = "service"
	typeDirectory = "directory"
	typeFile      = "file"
	typeWorkspace = "workspace"
	typeLayer     = "layer"
	typeRoute     = "route"
	typeProcess   = "process"
)

// permNames is Magpie's Permission enum: every valid permission name.
var permNames = []string{
	"read", "write", "access", "browse", "getcapabilities", "getmap", "getfeatureinfo",
	"getlegendgraphic", "getmetadata", "getpropertyvalue", "getfeature", "getfeaturewithlock",
	"getgmlobject", "describefeaturetype", "describelayer", "describeprocess", "execute",
	"lockfeature", "transaction", "createstoredquery", "dropstoredquery", "liststoredqueries",
	"describestoredqueries",
}

// serviceType describes what one Magpie service type allows (spec A.2.2).
type serviceType struct {
	// children maps a parent resource type ("service" for the root) to the
	// resource types allowed under it.
	children map[string][]string
	// perms maps a resource type ("service" for the root) to its allowed
	// permission names.
	perms map[string][]string
}

var (
	wfsPerms = []string{"getcapabilities", "getfeature", "describefeaturetype", "lockfeature",
		"transaction", "getfeaturewithlock", "createstoredquery", "dropstoredquery",
		"liststoredqueries", "describestoredqueries"}
	wfsLayerPerms  = []string{"getfeature", "describefeaturetype", "lockfeature", "transaction"}
	gsWFSPerms     = append(slices.Clone(wfsPerms), "getgmlobject", "getpropertyvalue")
	gsWMSPerms     = []string{"getcapabilities", "getmap", "getfeatureinfo", "getlegendgraphic", "describelayer"}
	wpsPerms       = []string{"getcapabilities", "describeprocess", "execute"}
	processPerms   = []string{"describeprocess", "execute"}
	ncwmsPerms     = []string{"getcapabilities", "getmap", "getfeatureinfo", "getlegendgraphic", "getmetadata"}
	threddsPerms   = []string{"browse", "read", "write"}
	readWritePerms = []string{"read", "write"}
)

// union returns the sorted union of permission name lists.
func union(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// serviceTypes is the hard-coded catalogue of spec A.2.2.
var serviceTypes = map[string]serviceType{
	"thredds": {
		children: map[string][]string{typeService: {typeDirectory, typeFile}, typeDirectory: {typeDirectory, typeFile}},
		perms:    map[string][]string{typeService: threddsPerms, typeDirectory: threddsPerms, typeFile: threddsPerms},
	},
	"api": {
		children: map[string][]string{typeService: {typeRoute}, typeRoute: {typeRoute}},
		perms:    map[string][]string{typeService: readWritePerms, typeRoute: readWritePerms},
	},
	"access": {perms: map[string][]string{typeService: {"access"}}},
	"wps": {
		children: map[string][]string{typeService: {typeProcess}},
		perms:    map[string][]string{typeService: wpsPerms, typeProcess: processPerms},
	},
	"wfs": {
		children: map[string][]string{typeService: {typeLayer}},
		perms:    map[string][]string{typeService: wfsPerms, typeLayer: wfsLayerPerms},
	},
	"geoserverwfs": {
		children: map[string][]string{typeService: {typeWorkspace}, typeWorkspace: {typeLayer}},
		perms:    map[string][]string{typeService: gsWFSPerms, typeWorkspace: gsWFSPerms, typeLayer: gsWFSPerms},
	},
	"geoserverwms": {
		children: map[string][]string{typeService: {typeWorkspace}, typeWorkspace: {typeLayer}},
		perms:    map[string][]string{typeService: gsWMSPerms, typeWorkspace: gsWMSPerms, typeLayer: gsWMSPerms},
	},
	"geoserverwps": {
		children: map[string][]string{typeService: {typeWorkspace}, typeWorkspace: {typeProcess}},
		perms:    map[string][]string{typeService: wpsPerms, typeWorkspace: wpsPerms, typeProcess: processPerms},
	},
	"geoserver": {
		children: map[string][]string{
			typeService:   {typeRoute, typeWorkspace},
			typeRoute:     {typeRoute, typeWorkspace},
			typeWorkspace: {typeLayer, typeProcess},
		},
		perms: map[string][]string{
			typeService:   union(gsWFSPerms, gsWMSPerms, wpsPerms, readWritePerms),
			typeWorkspace: union(gsWFSPerms, gsWMSPerms, processPerms),
			typeLayer:     union(gsWFSPerms, []string{"getmap", "getfeatureinfo", "getlegendgraphic", "describelayer"}),
			typeProcess:   processPerms,
			typeRoute:     readWritePerms,
		},
	},
	"ncwms": {
		children: map[string][]string{typeService: {typeFile, typeDirectory}, typeDirectory: {typeFile, typeDirectory}},
		perms:    map[string][]string{typeService: ncwmsPerms, typeDirectory: ncwmsPerms, typeFile: ncwmsPerms},
	},
}

// serviceTypeNames returns the sorted service type names.
func serviceTypeNames() []string {
	names := make([]string, 0, len(serviceTypes))
	for n := range serviceTypes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// allowedPerms returns the sorted permission names allowed on a resource type
// of a service type.
func allowedPerms(svcType, resType string) []string {
	return union(serviceTypes[svcType].perms[resType])
}

// resourceTypes returns the sorted resource types (service excluded) a service
// type allows anywhere.
func resourceTypes(svcType string) []string {
	var out []string
	for _, kids := range serviceTypes[svcType].children {
		out = append(out, kids...)
	}
	return union(out)
}

// perm is one stored permission row: name, access and scope.
type perm struct {
	Name, Access, Scope string
}

// String returns the explicit form "name-access-scope".
func (p perm) String() string { return p.Name + "-" + p.Access + "-" + p.Scope }

// implicit returns the legacy form ("name" or "name-match"), or "" for a deny.
func (p perm) implicit() string {
	switch {
	case p.Access != allow:
		return ""
	case p.Scope == match:
		return p.Name + "-match"
	default:
		return p.Name
	}
}

// rank orders modifiers: allow-match < allow-recursive < deny-match < deny-recursive.
func (p perm) rank() int {
	r := 0
	if p.Access == deny {
		r += 2
	}
	if p.Scope == recursive {
		r++
	}
	return r
}

// comparePerm sorts by name, then by modifier rank.
func comparePerm(a, b perm) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return a.rank() - b.rank()
}

// errUnknownPerm is returned by parsePerm for a name outside the enum (422).
type errUnknownPerm struct{ name string }

func (e errUnknownPerm) Error() string { return fmt.Sprintf("unknown permission name %q", e.name) }

// parsePerm parses any of Magpie's string forms: name, name-match,
// name-recursive, name-allow, name-deny, name-access-scope. The name is
// matched exactly against the enum value or the upper-case member name.
func parsePerm(s string) (perm, error) {
	parts := strings.Split(s, "-")
	p := perm{Name: parts[0], Access: allow, Scope: recursive}
	switch len(parts) {
	case 1:
	case 2:
		switch parts[1] {
		case match, recursive:
			p.Scope = parts[1]
		case allow, deny:
			p.Access = parts[1]
		default:
			return perm{}, fmt.Errorf("permission %q: bad modifier %q", s, parts[1])
		}
	case 3:
		p.Access, p.Scope = parts[1], parts[2]
	default:
		return perm{}, fmt.Errorf("permission %q: too many parts", s)
	}
	return p.normalize()
}

// normalize checks the name, access and scope, filling defaults for empty
// access and scope.
func (p perm) normalize() (perm, error) {
	if p.Access == "" {
		p.Access = allow
	}
	if p.Scope == "" {
		p.Scope = recursive
	}
	if !slices.Contains(permNames, p.Name) {
		member := strings.ToLower(strings.ReplaceAll(p.Name, "_", ""))
		if p.Name != strings.ToUpper(p.Name) || !slices.Contains(permNames, member) {
			return perm{}, errUnknownPerm{p.Name}
		}
		p.Name = member
	}
	if p.Access != allow && p.Access != deny {
		return perm{}, fmt.Errorf("permission %q: access %q is not allow or deny", p.Name, p.Access)
	}
	if p.Scope != match && p.Scope != recursive {
		return perm{}, fmt.Errorf("permission %q: scope %q is not match or recursive", p.Name, p.Scope)
	}
	return p, nil
}
