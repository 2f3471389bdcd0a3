package magpie

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
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
	Name  string `json:"user_name"`
	ID    int    `json:"user_id"` // 0 for anonymous in listings
	Email string `json:"email"`
	// Status is "OK", "WebhookError" or "Pending".
	Status string `json:"status"`
	// Groups is set by User, not by Users.
	Groups []string `json:"group_names,omitempty"`
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
func (r *Resource) UnmarshalJSON(b []byte) error {
	var aux struct {
		ID              int                  `json:"resource_id"`
		Name            string               `json:"resource_name"`
		DisplayName     string               `json:"resource_display_name"`
		Type            string               `json:"resource_type"`
		ParentID        *int                 `json:"parent_id"`
		RootServiceID   *int                 `json:"root_service_id"`
		PermissionNames []string             `json:"permission_names"`
		Permissions     []Permission         `json:"permissions"`
		Children        map[string]*Resource `json:"children"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	children, err := byID(aux.Children)
	if err != nil {
		return err
	}
	*r = Resource{ID: aux.ID, Name: aux.Name, DisplayName: aux.DisplayName, Type: aux.Type,
		ParentID: deref(aux.ParentID), RootServiceID: deref(aux.RootServiceID),
		PermissionNames: aux.PermissionNames, Permissions: aux.Permissions, Children: children}
	return nil
}

// byID turns a JSON map keyed by string ids into a slice ordered by id.
func byID(m map[string]*Resource) ([]*Resource, error) {
	out := make([]*Resource, 0, len(m))
	for k, r := range m {
		if _, err := strconv.Atoi(k); err != nil || r == nil {
			return nil, fmt.Errorf("resource tree: bad key %q", k)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Resource) int { return a.ID - b.ID })
	return out, nil
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
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
func (s *Service) UnmarshalJSON(b []byte) error {
	type plain Service
	var aux struct {
		plain
		Resources map[string]*Resource `json:"resources"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	res, err := byID(aux.Resources)
	if err != nil {
		return err
	}
	*s = Service(aux.plain)
	s.Resources = res
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
