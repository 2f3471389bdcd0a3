package magpietest

import (
	"fmt"
	"slices"
	"strings"
)

// defaultPassword is used by AddUser when none is given.
const defaultPassword = "qwertyqwerty"

// fireSeeding reports whether the seeding API fires webhooks.
func (s *Server) fireSeeding() bool { return !s.opts.QuietSeeding }

// AddUser creates a user in the anonymous group and the given groups, as
// POST /users does (firing create_user). An empty password means
// "qwertyqwerty"; the email is name@example.com. It returns the user id.
func (s *Server) AddUser(name, password string, groups ...string) (int, error) {
	if password == "" {
		password = defaultPassword
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range groups {
		if s.groupByName(g) == nil {
			return 0, fmt.Errorf("add user %q: group %q does not exist", name, g)
		}
	}
	u, err := s.createUser(name, name+"@example.com", password, groupAnonymous, s.fireSeeding())
	if err != nil {
		return 0, fmt.Errorf("add user %q: %w", name, err)
	}
	for _, g := range groups {
		u.groups[s.groupByName(g).id] = true
	}
	return u.id, nil
}

// DeleteUser deletes a user and its permissions, firing delete_user.
func (s *Server) DeleteUser(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.deleteUser(name, s.fireSeeding()); err != nil {
		return fmt.Errorf("delete user %q: %w", name, err)
	}
	return nil
}

// AddGroup creates a group (priority 0) and returns its id.
func (s *Server) AddGroup(name string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.createGroup(name, "", false, "")
	if err != nil {
		return 0, fmt.Errorf("add group %q: %w", name, err)
	}
	return g.id, nil
}

// AddMember adds a user to a group.
func (s *Server) AddMember(userName, groupName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.findUser(userName)
	if err != nil {
		return fmt.Errorf("add member %q: %w", userName, err)
	}
	g, err := s.findGroup(groupName)
	if err != nil {
		return fmt.Errorf("add member %q to %q: %w", userName, groupName, err)
	}
	u.groups[g.id] = true
	return nil
}

// AddService creates a service of a type from spec A.2.2 (e.g. "geoserver",
// "thredds", "api") and returns its resource id.
func (s *Server) AddService(name, typ string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.createService(name, typ, "http://localhost/"+name, nil)
	if err != nil {
		return 0, fmt.Errorf("add service %q: %w", name, err)
	}
	return r.id, nil
}

// AddResource creates a child resource, validated against the service type's
// allowed structure, and returns its id.
func (s *Server) AddResource(parentID int, name, typ string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.createResource(parentID, name, "", typ)
	if err != nil {
		return 0, fmt.Errorf("add resource %q under %d: %w", name, parentID, err)
	}
	return r.id, nil
}

// DeleteResource deletes a resource (or service), its subtree and their
// permissions, firing no webhook.
func (s *Server) DeleteResource(id int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.deleteResource(id); err != nil {
		return fmt.Errorf("delete resource %d: %w", id, err)
	}
	return nil
}

// SetUserPermission stores perm (any Magpie string form, e.g.
// "read-allow-recursive") for a user, overwriting a same-name row like PUT:
// webhooks fire for a real change only.
func (s *Server) SetUserPermission(userName string, resID int, perm string) error {
	return s.seedPerm(principalRef{user: userName}, resID, perm, false)
}

// SetGroupPermission stores perm for a group, like SetUserPermission.
func (s *Server) SetGroupPermission(groupName string, resID int, perm string) error {
	return s.seedPerm(principalRef{group: groupName}, resID, perm, false)
}

// DeleteUserPermission deletes the user's row named name on a resource.
func (s *Server) DeleteUserPermission(userName string, resID int, name string) error {
	return s.seedPerm(principalRef{user: userName}, resID, name, true)
}

// DeleteGroupPermission deletes the group's row named name on a resource.
func (s *Server) DeleteGroupPermission(groupName string, resID int, name string) error {
	return s.seedPerm(principalRef{group: groupName}, resID, name, true)
}

type principalRef struct{ user, group string }

func (s *Server) lookupPrincipal(ref principalRef) (principal, error) {
	if ref.group != "" {
		g, err := s.findGroup(ref.group)
		return principal{group: g}, err
	}
	u, err := s.findUser(ref.user)
	return principal{user: u}, err
}

func (s *Server) seedPerm(ref principalRef, resID int, permStr string, remove bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	op := fmt.Sprintf("set permission %q on %d for %s%s", permStr, resID, ref.user, ref.group)
	if remove {
		op = "delete" + strings.TrimPrefix(op, "set")
	}
	pr, err := s.lookupPrincipal(ref)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	r, err := s.findResource(resID)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if remove {
		err = s.deletePerm(pr, r, permStr, s.fireSeeding())
	} else {
		var p perm
		if p, err = parsePerm(permStr); err == nil {
			_, err = s.setPerm(pr, r, p, modeOverwrite, s.fireSeeding())
		}
		if ae, ok := err.(*apiError); ok && ae.status == 409 {
			err = nil // identical row already there
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// UserPermissions returns the user's direct rows on a resource in explicit
// form ("read-allow-recursive"), sorted.
func (s *Server) UserPermissions(userName string, resID int) []string {
	return s.explicitRows(principalRef{user: userName}, resID)
}

// GroupPermissions returns the group's rows on a resource in explicit form, sorted.
func (s *Server) GroupPermissions(groupName string, resID int) []string {
	return s.explicitRows(principalRef{group: groupName}, resID)
}

// explicitRows returns the principal's rows on a resource in explicit form,
// sorted; nil for an unknown principal.
func (s *Server) explicitRows(ref principalRef, resID int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, err := s.lookupPrincipal(ref)
	if err != nil {
		return nil
	}
	return explicit(s.rows(pr, resID, false))
}

func explicit(rows map[string]perm) []string {
	var out []string
	for _, p := range rows {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

// Decision is an effective permission: its access and Magpie's reason
// ("user:3:alice", "group:4:editors", "multiple", "no-permission", "administrator").
type Decision struct {
	Access, Reason string
}

// Effective resolves one permission name for a user on a resource with
// Magpie's rules (spec A.2.3), as GET ...?effective=true does.
func (s *Server) Effective(userName string, resID int, name string) (Decision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.findUser(userName)
	if err != nil {
		return Decision{}, fmt.Errorf("effective %q for %q: %w", name, userName, err)
	}
	r, err := s.findResource(resID)
	if err != nil {
		return Decision{}, fmt.Errorf("effective %q on %d: %w", name, resID, err)
	}
	if !slices.Contains(allowedPerms(s.root(r).svcType, r.typ), name) {
		return Decision{}, fmt.Errorf("effective %q on %d: not allowed on a %s", name, resID, r.typ)
	}
	row := s.effective(u, r, name)
	return Decision{Access: row.Access, Reason: row.reason}, nil
}

// Resource describes one stored resource; ParentID is 0 for a service.
type Resource struct {
	ID, ParentID int
	Name, Type   string
	// ServiceType is set for services.
	ServiceType string
}

// Resources lists every resource and service by id.
func (s *Server) Resources() []Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Resource
	for _, r := range s.res {
		out = append(out, Resource{ID: r.id, ParentID: r.parentID, Name: r.name, Type: r.typ, ServiceType: r.svcType})
	}
	slices.SortFunc(out, func(a, b Resource) int { return a.ID - b.ID })
	return out
}

// Lookup finds a resource id by its service name and child names.
func (s *Server) Lookup(service string, names ...string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.serviceByName(service)
	for _, n := range names {
		if cur == nil {
			return 0, false
		}
		cur = s.childByName(cur, n)
	}
	if cur == nil {
		return 0, false
	}
	return cur.id, true
}

// UserStatus returns a user's status: 1 OK, 2 WebhookError, 4 Pending.
func (s *Server) UserStatus(name string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.userByName(name); u != nil {
		return u.status, true
	}
	return 0, false
}

// Users lists the user names, sorted.
func (s *Server) Users() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, u := range s.sortedUsers() {
		out = append(out, u.name)
	}
	return out
}
