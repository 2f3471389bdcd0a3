package magpie

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Permission is one Magpie permission, as listed on a resource.
type Permission struct {
	// Name is lower case, e.g. "read" or "getfeature".
	Name string `json:"name"`
	// Access is "allow" or "deny".
	Access string `json:"access"`
	// Scope is "match" or "recursive".
	Scope string `json:"scope"`
	// Type is "allowed", "applied", "direct", "inherited" or "effective".
	Type string `json:"type,omitempty"`
	// Reason says where a direct/inherited/effective row comes from, e.g.
	// "user:3:alice", "group:2:anonymous", "no-permission".
	Reason string `json:"reason,omitempty"`
}

// String returns the explicit form "name-access-scope".
func (p Permission) String() string { return p.Name + "-" + p.Access + "-" + p.Scope }

// UnmarshalJSON reads a permission object: name, access and scope must be
// strings; type and reason, informative only, are read if they are usable.
func (p *Permission) UnmarshalJSON(b []byte) error {
	var j permissionJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*p = j.permission()
	return nil
}

// permissionJSON is a permission object as decoded.
type permissionJSON struct {
	Name   string    `json:"name"`
	Access string    `json:"access"`
	Scope  string    `json:"scope"`
	Type   looseText `json:"type"`
	Reason looseText `json:"reason"`
}

func (j permissionJSON) permission() Permission {
	return Permission{Name: j.Name, Access: j.Access, Scope: j.Scope, Type: string(j.Type), Reason: string(j.Reason)}
}

func permissions(list []permissionJSON) []Permission {
	if list == nil {
		return nil
	}
	out := make([]Permission, len(list))
	for i, j := range list {
		out[i] = j.permission()
	}
	return out
}

// ParsePermission parses the explicit form "name-access-scope".
func ParsePermission(s string) (Permission, error) {
	parts := strings.Split(s, "-")
	if len(parts) != 3 || parts[0] == "" {
		return Permission{}, fmt.Errorf("permission %q: want the explicit form <name>-<access>-<scope>", s)
	}
	p := Permission{Name: parts[0], Access: parts[1], Scope: parts[2]}
	if p.Access != "allow" && p.Access != "deny" {
		return Permission{}, fmt.Errorf("permission %q: access %q is not allow or deny", s, p.Access)
	}
	if p.Scope != "match" && p.Scope != "recursive" {
		return Permission{}, fmt.Errorf("permission %q: scope %q is not match or recursive", s, p.Scope)
	}
	return p, nil
}

// Find returns the first permission named name.
func Find(perms []Permission, name string) (Permission, bool) {
	for _, p := range perms {
		if p.Name == name {
			return p, true
		}
	}
	return Permission{}, false
}

// User is a Magpie user.
type User struct {
	Name string `json:"user_name"`
	// ID is 0 for anonymous and for pending users, which have none.
	ID    int    `json:"user_id"`
	Email string `json:"email"`
	// Status is "OK", "WebhookError" or "Pending"; Magpie 3.9 to 3.12
	// answer a number, read as its name (0 and 2 are WebhookError).
	Status string `json:"status"`
	// Groups is set by User, not by Users.
	Groups []string `json:"group_names,omitempty"`
}

// UnmarshalJSON reads a user: user_name and user_id must be a string and an
// integer (cowbird relies on them); email, status and group_names are read
// if they have a usable type and are left empty otherwise, whatever the
// Magpie version.
func (u *User) UnmarshalJSON(b []byte) error {
	var aux struct {
		Name   string     `json:"user_name"`
		ID     int        `json:"user_id"`
		Email  looseText  `json:"email"`
		Status userStatus `json:"status"`
		Groups looseList  `json:"group_names"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*u = User{Name: aux.Name, ID: aux.ID, Email: string(aux.Email), Status: string(aux.Status), Groups: aux.Groups}
	return nil
}

// userStatus is a user's status name; Magpie before 3.13 answers a number
// (WebhookErrorStatus = 0, OK = 1), later ones a name of the flags OK = 1,
// WebhookError = 2, Pending = 4.
type userStatus string

var userStatuses = map[string]string{"0": "WebhookError", "1": "OK", "2": "WebhookError", "4": "Pending"}

func (s *userStatus) UnmarshalJSON(b []byte) error {
	var t looseText
	_ = t.UnmarshalJSON(b)
	*s = userStatus(t)
	if name, ok := userStatuses[string(t)]; ok && isNumber(b) {
		*s = userStatus(name)
	}
	return nil
}

// Group is a Magpie group.
type Group struct {
	Name string `json:"group_name"`
	ID   int    `json:"group_id"`
}

// Resource is a node of a Magpie resource tree. Results may be shared by a
// cache: treat them as read-only.
type Resource struct {
	ID          int
	Name        string
	DisplayName string
	// Type is service, directory, file, workspace, layer, route or process.
	Type string
	// ParentID and RootServiceID are 0 for a service.
	ParentID, RootServiceID int
	// PermissionNames and Permissions are the allowed permissions in plain
	// trees, the principal's rows in UserResources/GroupResources trees.
	PermissionNames []string
	Permissions     []Permission
	// Children are ordered by id.
	Children []*Resource

	// fields holds the node's keys as Magpie sent them, for the sync's
	// segment field (sync.go); set on the results of ResourcePath,
	// UserResources and GroupResources, which the sync matches, nil
	// elsewhere. The lists permission_names and permissions map to nil
	// (read them from the typed fields); children is left out.
	fields map[string]json.RawMessage
}

// Child returns the direct child named name, or nil.
func (r *Resource) Child(name string) *Resource { return childNamed(r.Children, name) }

func childNamed(list []*Resource, name string) *Resource {
	for _, c := range list {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// UnmarshalJSON reads Magpie's node format, children keyed by string ids.
// What cowbird relies on must have its type (resource_id an integer,
// resource_name and resource_type strings, permissions objects, children an
// object of nodes); the other keys are read if they have a usable type.
func (r *Resource) UnmarshalJSON(b []byte) error {
	// The whole tree is decoded in one pass, then converted.
	var j resourceJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	out, err := j.resource()
	if err != nil {
		return err
	}
	*r = *out
	return nil
}

// resourceJSON is Magpie's node format as decoded.
type resourceJSON struct {
	ID              int                      `json:"resource_id"`
	Name            string                   `json:"resource_name"`
	DisplayName     looseText                `json:"resource_display_name"`
	Type            string                   `json:"resource_type"`
	ParentID        looseInt                 `json:"parent_id"`
	RootServiceID   looseInt                 `json:"root_service_id"`
	PermissionNames looseList                `json:"permission_names"`
	Permissions     []permissionJSON         `json:"permissions"`
	Children        map[string]*resourceJSON `json:"children"`
}

func (j *resourceJSON) resource() (*Resource, error) {
	children, err := resources(j.Children)
	if err != nil {
		return nil, err
	}
	return &Resource{ID: j.ID, Name: j.Name, DisplayName: string(j.DisplayName), Type: j.Type,
		ParentID: int(j.ParentID), RootServiceID: int(j.RootServiceID), PermissionNames: j.PermissionNames,
		Permissions: permissions(j.Permissions), Children: children}, nil
}

// resources turns a JSON map of nodes keyed by string ids into resources
// ordered by id.
func resources(m map[string]*resourceJSON) ([]*Resource, error) {
	out := make([]*Resource, 0, len(m))
	for k, j := range m {
		if _, err := strconv.Atoi(k); err != nil || j == nil {
			return nil, fmt.Errorf("resource tree: bad key %q", k)
		}
		r, err := j.resource()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Resource) int { return a.ID - b.ID })
	return out, nil
}

// attachFields sets the fields of the nodes (ordered by id) from raw, the
// same nodes as Magpie sent them, keyed by id, and of their children.
func attachFields(nodes []*Resource, raw map[string]json.RawMessage) {
	for k, v := range raw {
		id, err := strconv.Atoi(k)
		if err != nil {
			continue
		}
		i, found := slices.BinarySearchFunc(nodes, id, func(r *Resource, id int) int { return r.ID - id })
		if !found {
			continue
		}
		var children map[string]json.RawMessage
		nodes[i].fields, children = nodeFields(v)
		attachFields(nodes[i].Children, children)
	}
}

// nodeFields returns a node's keys for Resource.fields, and its children.
func nodeFields(raw json.RawMessage) (fields, children map[string]json.RawMessage) {
	if json.Unmarshal(raw, &fields) != nil {
		return nil, nil
	}
	_ = json.Unmarshal(fields["children"], &children)
	delete(fields, "children")
	for _, k := range []string{"permission_names", "permissions"} {
		if _, ok := fields[k]; ok {
			fields[k] = nil
		}
	}
	return fields, children
}

// looseText is a JSON string's value, a number's or a boolean's text, and
// "" for anything else (null, a list, an object).
type looseText string

func (t *looseText) UnmarshalJSON(b []byte) error {
	*t = ""
	switch {
	case len(b) == 0:
	case b[0] == '"' && len(b) > 1 && b[len(b)-1] == '"' && !bytes.ContainsRune(b, '\\') && utf8.Valid(b):
		// No escape: the text between the quotes (the common case, cheap).
		*t = looseText(b[1 : len(b)-1])
	case b[0] == '"':
		var s string
		if json.Unmarshal(b, &s) == nil {
			*t = looseText(s)
		}
	case b[0] == 't' || b[0] == 'f' || isNumber(b):
		*t = looseText(b)
	}
	return nil
}

// looseList is a JSON list's string items; anything else is no list.
type looseList []string

func (l *looseList) UnmarshalJSON(b []byte) error {
	*l = nil
	var all []string
	if json.Unmarshal(b, &all) == nil {
		*l = all
		return nil
	}
	var items []json.RawMessage
	if json.Unmarshal(b, &items) != nil || items == nil {
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		var s string
		if json.Unmarshal(it, &s) == nil && len(it) > 0 && it[0] == '"' {
			out = append(out, s)
		}
	}
	*l = out
	return nil
}

// looseInt is a JSON integer's value, and 0 for anything else.
type looseInt int

func (n *looseInt) UnmarshalJSON(b []byte) error {
	var v int
	if json.Unmarshal(b, &v) == nil {
		*n = looseInt(v)
	} else {
		*n = 0
	}
	return nil
}

// isNumber reports whether b starts a JSON number.
func isNumber(b []byte) bool {
	return len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9'))
}

// Service is a Magpie service (the root resource of a tree). Results may be
// shared by a cache: treat them as read-only.
type Service struct {
	Name       string `json:"service_name"`
	Type       string `json:"service_type"`
	ResourceID int    `json:"resource_id"`
	URL        string `json:"service_url"`
	PublicURL  string `json:"public_url"`
	// PermissionNames and Permissions: see Resource.
	PermissionNames []string     `json:"permission_names"`
	Permissions     []Permission `json:"permissions"`
	// Resources are the service's children, set by ServiceResources,
	// UserResources and GroupResources.
	Resources []*Resource `json:"-"`
}

// Child returns the service's direct child named name, or nil.
func (s *Service) Child(name string) *Resource { return childNamed(s.Resources, name) }

// UnmarshalJSON reads Magpie's service format, with its optional tree.
// What cowbird relies on must have its type (service_name and service_type
// strings, resource_id an integer, permissions objects, resources an object
// of nodes); the URLs and permission_names are read if they are usable.
func (s *Service) UnmarshalJSON(b []byte) error {
	var aux struct {
		Name            string                   `json:"service_name"`
		Type            string                   `json:"service_type"`
		ResourceID      int                      `json:"resource_id"`
		URL             looseText                `json:"service_url"`
		PublicURL       looseText                `json:"public_url"`
		PermissionNames looseList                `json:"permission_names"`
		Permissions     []permissionJSON         `json:"permissions"`
		Resources       map[string]*resourceJSON `json:"resources"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	res, err := resources(aux.Resources)
	if err != nil {
		return err
	}
	*s = Service{Name: aux.Name, Type: aux.Type, ResourceID: aux.ResourceID, URL: string(aux.URL),
		PublicURL: string(aux.PublicURL), PermissionNames: aux.PermissionNames,
		Permissions: permissions(aux.Permissions), Resources: res}
	return nil
}

// PathElem is one element of a PATCH /permissions resource path.
type PathElem struct {
	Name string `json:"resource_name"`
	Type string `json:"resource_type"`
}

// PermissionUpdate is one PATCH /permissions request: a resource path from
// a service (created where missing) and the permission to create or remove
// there for a user and/or a group.
type PermissionUpdate struct {
	// Path starts with the service (Type "service").
	Path       []PathElem
	Permission Permission
	User       string
	Group      string
	// Remove deletes the same-name permission instead of creating it.
	Remove bool
}

// View selects which of a user's permissions on a resource are listed.
type View int

// The views of GET /users/{u}/resources/{id}/permissions (spec A.2.3).
const (
	// Direct lists the user's own rows on the resource.
	Direct View = iota
	// Inherited adds the rows of the user's groups on the resource.
	Inherited
	// Resolved reduces Inherited to one row per name.
	Resolved
	// Effective resolves every allowed name up the tree: allow or deny.
	Effective
)

func (v View) query() (string, string) {
	switch v {
	case Inherited:
		return "inherited", "True"
	case Resolved:
		return "resolve", "True"
	case Effective:
		return "effective", "True"
	}
	return "effective", "False"
}
