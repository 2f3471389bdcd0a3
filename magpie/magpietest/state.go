package magpietest

import (
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Default group names and user statuses (spec A.0, A.1.5).
const (
	groupAdmins    = "administrators"
	groupAnonymous = "anonymous"
	groupUsers     = "users"
	userAnonymous  = "anonymous"

	statusOK           = 1
	statusWebhookError = 2
	statusPending      = 4
)

var statusNames = map[int]string{statusOK: "OK", statusWebhookError: "WebhookError", statusPending: "Pending"}

// Name validation (spec A.0).
var (
	paramRegex    = regexp.MustCompile(`^[A-Za-z0-9]+(?:[\s_\-.][A-Za-z0-9]+)*$`)
	scopeRegex    = regexp.MustCompile(`^[A-Za-z0-9]+(?:[\s_\-.:][A-Za-z0-9]+)*$`)
	userNameRegex = regexp.MustCompile(`^[a-z0-9]+(?:[_\-.][a-z0-9]+)*$`)
)

// apiError is a Magpie error answer: the status and the detail string.
type apiError struct {
	status int
	detail string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.detail) }

func errf(status int, detail string) error { return &apiError{status: status, detail: detail} }

type user struct {
	id                    int
	name, email, password string
	status                int
	groups                map[int]bool
}

type group struct {
	id                int
	name, description string
	discoverable      bool
	terms             string
}

// priority is the group's weight in permission resolution (spec A.0).
func (g *group) priority() float64 {
	switch g.name {
	case groupAdmins:
		return math.Inf(1)
	case groupAnonymous:
		return -1
	}
	return 0
}

type resource struct {
	id, parentID      int // parentID 0: a service
	name, displayName string
	typ               string
	children          []int // insertion order
	// Service-only fields.
	svcType string
	url     string
	config  map[string]any
}

// rowKey indexes permission rows by principal id and resource id.
type rowKey struct{ principal, res int }

// principal is the user or the group a permission row belongs to.
type principal struct {
	user  *user
	group *group
}

// rows returns the principal's rows on a resource, creating the map if asked.
func (s *Server) rows(p principal, resID int, create bool) map[string]perm {
	table, id := s.userPerms, 0
	if p.group != nil {
		table, id = s.groupPerms, p.group.id
	} else {
		id = p.user.id
	}
	k := rowKey{id, resID}
	if table[k] == nil && create {
		table[k] = map[string]perm{}
	}
	return table[k]
}

// seed creates Magpie's default content (spec A.0).
func (s *Server) seed() {
	for _, g := range []string{groupAdmins, groupAnonymous, groupUsers} {
		s.nextGroup++
		s.groups[s.nextGroup] = &group{id: s.nextGroup, name: g}
	}
	s.newUser(s.opts.AdminUser, s.opts.AdminUser+"@example.com", s.opts.AdminPassword, groupAdmins)
	s.newUser(userAnonymous, userAnonymous+"@example.com", "", groupAnonymous)
}

func (s *Server) newUser(name, email, password string, groups ...string) *user {
	s.nextUser++
	u := &user{id: s.nextUser, name: name, email: email, password: password, status: statusOK, groups: map[int]bool{}}
	for _, g := range groups {
		u.groups[s.groupByName(g).id] = true
	}
	s.users[u.id] = u
	s.userNames[name] = u
	return u
}

func (s *Server) userByName(name string) *user { return s.userNames[name] }

func (s *Server) groupByName(name string) *group {
	for _, g := range s.groups {
		if g.name == name {
			return g
		}
	}
	return nil
}

func (s *Server) findUser(name string) (*user, error) {
	if u := s.userByName(name); u != nil {
		return u, nil
	}
	return nil, errf(http.StatusNotFound, "User name not found.")
}

func (s *Server) findGroup(name string) (*group, error) {
	if g := s.groupByName(name); g != nil {
		return g, nil
	}
	return nil, errf(http.StatusNotFound, "Group name not found.")
}

func (s *Server) findResource(id int) (*resource, error) {
	if r := s.res[id]; r != nil {
		return r, nil
	}
	return nil, errf(http.StatusNotFound, "Resource ID not found.")
}

func (s *Server) serviceByName(name string) *resource {
	for _, r := range s.res {
		if r.parentID == 0 && r.name == name {
			return r
		}
	}
	return nil
}

// root returns the service a resource belongs to.
func (s *Server) root(r *resource) *resource {
	for r.parentID != 0 {
		r = s.res[r.parentID]
	}
	return r
}

// isAdmin reports whether u belongs to the administrators group.
func (s *Server) isAdmin(u *user) bool { return u.groups[s.groupByName(groupAdmins).id] }

// sortedGroups returns the user's groups by id.
func (s *Server) sortedGroups(u *user) []*group {
	var gs []*group
	for id := range u.groups {
		gs = append(gs, s.groups[id])
	}
	slices.SortFunc(gs, func(a, b *group) int { return a.id - b.id })
	return gs
}

// createUser adds a user to group (default anonymous) and anonymous, and
// fires create_user (spec A.3.4).
func (s *Server) createUser(name, email, password, groupName string, fire bool) (*user, error) {
	switch {
	case len(name) > 64 || !userNameRegex.MatchString(name):
		return nil, errf(http.StatusBadRequest, "Invalid 'user_name' value specified.")
	case name == "current" || name == userAnonymous || name == s.opts.AdminUser:
		return nil, errf(http.StatusBadRequest, "Invalid 'user_name' value specified.")
	case !strings.Contains(email, "@"):
		return nil, errf(http.StatusBadRequest, "Invalid 'email' value specified.")
	case len(password) < 12:
		return nil, errf(http.StatusBadRequest, "Invalid 'password' value specified.")
	}
	if groupName == "" {
		groupName = groupAnonymous
	}
	if s.groupByName(groupName) == nil {
		return nil, errf(http.StatusNotFound, "Group for new user doesn't exist.")
	}
	for _, u := range s.users {
		if u.name == name || u.email == email {
			return nil, errf(http.StatusConflict, "User name or email already exists.")
		}
	}
	u := s.newUser(name, email, password, groupName, groupAnonymous)
	if fire {
		params := s.userParams(u)
		params["callback_url"] = s.newCallbackURL(u)
		s.fire(actionCreateUser, params)
	}
	return u, nil
}

// deleteUser removes a user and its permission rows, firing delete_user.
func (s *Server) deleteUser(name string, fire bool) error {
	u, err := s.findUser(name)
	if err != nil {
		return err
	}
	if u.name == userAnonymous || u.name == s.opts.AdminUser {
		return errf(http.StatusForbidden, "Forbidden operation for this resource or insufficient user privileges.")
	}
	params := s.userParams(u)
	delete(s.users, u.id)
	delete(s.userNames, u.name)
	for k := range s.userPerms {
		if k.principal == u.id {
			delete(s.userPerms, k)
		}
	}
	if fire {
		s.fire(actionDeleteUser, params)
	}
	return nil
}

func (s *Server) createGroup(name, description string, discoverable bool, terms string) (*group, error) {
	if !paramRegex.MatchString(name) || (description != "" && !paramRegex.MatchString(description)) {
		return nil, errf(http.StatusBadRequest, "Invalid 'group_name' value specified.")
	}
	if s.groupByName(name) != nil {
		return nil, errf(http.StatusConflict, "Group name matches an already existing group name.")
	}
	s.nextGroup++
	g := &group{id: s.nextGroup, name: name, description: description, discoverable: discoverable, terms: terms}
	s.groups[g.id] = g
	return g, nil
}

func (s *Server) deleteGroup(name string) error {
	g, err := s.findGroup(name)
	if err != nil {
		return err
	}
	if g.name == groupAnonymous || g.name == groupAdmins {
		return errf(http.StatusForbidden, "Forbidden operation for this resource or insufficient user privileges.")
	}
	delete(s.groups, g.id)
	for _, u := range s.users {
		delete(u.groups, g.id)
	}
	for k := range s.groupPerms {
		if k.principal == g.id {
			delete(s.groupPerms, k)
		}
	}
	return nil
}

func (s *Server) createService(name, typ, url string, config map[string]any) (*resource, error) {
	if _, ok := serviceTypes[typ]; !ok {
		return nil, errf(http.StatusBadRequest, "Invalid 'service_type' value does not correspond to any of the existing service types.")
	}
	if !scopeRegex.MatchString(name) {
		return nil, errf(http.StatusBadRequest, "Invalid 'service_name' value specified.")
	}
	if s.serviceByName(name) != nil {
		return nil, errf(http.StatusConflict, "Specified 'service_name' value already exists.")
	}
	if typ == "geoserver" {
		filled := map[string]any{"api": true, "wfs": true, "wms": true, "wps": true}
		for k, v := range config {
			filled[k] = v
		}
		config = filled
	}
	s.nextRes++
	r := &resource{id: s.nextRes, name: name, displayName: name, typ: typeService, svcType: typ, url: url, config: config}
	s.res[r.id] = r
	return r, nil
}

// createResource adds a child resource, validated as in spec A.2.2.
func (s *Server) createResource(parentID int, name, display, typ string) (*resource, error) {
	parent := s.res[parentID]
	if parent == nil {
		// (inferred) real Magpie fails with 500 here, see spec A.3.3.
		return nil, errf(http.StatusInternalServerError, "Failed to find parent resource.")
	}
	svc := serviceTypes[s.root(parent).svcType]
	if !scopeRegex.MatchString(name) {
		return nil, errf(http.StatusUnprocessableEntity, "Invalid 'resource_name' value specified.")
	}
	if len(svc.children[parent.typ]) == 0 {
		return nil, errf(http.StatusForbidden, "Child resource not allowed for specified parent resource.")
	}
	if !slices.Contains(resourceTypes(s.root(parent).svcType), typ) {
		return nil, errf(http.StatusForbidden, "Invalid 'resource_type' specified for service type.")
	}
	if !slices.Contains(svc.children[parent.typ], typ) {
		return nil, errf(http.StatusUnprocessableEntity, "Invalid 'resource_type' specified for parent resource.")
	}
	for _, c := range parent.children {
		if s.res[c].name == name {
			return nil, errf(http.StatusConflict, "Resource name already exists at requested tree level for creation.")
		}
	}
	if display == "" {
		display = name
	}
	s.nextRes++
	r := &resource{id: s.nextRes, parentID: parentID, name: name, displayName: display, typ: typ}
	s.res[r.id] = r
	parent.children = append(parent.children, r.id)
	return r, nil
}

// deleteResource removes a resource, its subtree and their permission rows,
// firing no webhook (spec A.1.2).
func (s *Server) deleteResource(id int) error {
	r, err := s.findResource(id)
	if err != nil {
		return err
	}
	if p := s.res[r.parentID]; p != nil {
		p.children = slices.DeleteFunc(p.children, func(c int) bool { return c == id })
	}
	var drop func(r *resource)
	drop = func(r *resource) {
		for _, c := range r.children {
			drop(s.res[c])
		}
		delete(s.res, r.id)
		for _, table := range []map[rowKey]map[string]perm{s.userPerms, s.groupPerms} {
			for k := range table {
				if k.res == r.id {
					delete(table, k)
				}
			}
		}
	}
	drop(r)
	return nil
}

// checkPerm validates a permission for a resource's type (spec A.2.2).
func (s *Server) checkPerm(r *resource, p perm) (perm, error) {
	p, err := p.normalize()
	if err != nil {
		if _, ok := err.(errUnknownPerm); ok {
			return perm{}, errf(http.StatusUnprocessableEntity, "Invalid value specified.")
		}
		return perm{}, errf(http.StatusBadRequest, "Invalid permission format.")
	}
	if !slices.Contains(allowedPerms(s.root(r).svcType, r.typ), p.Name) {
		return perm{}, errf(http.StatusBadRequest, "Permission not allowed for specified 'resource_type'.")
	}
	return p, nil
}

// writeMode says how setPerm treats an existing row of the same name.
type writeMode int

const (
	// modeCreate refuses any existing row of that name (POST).
	modeCreate writeMode = iota
	// modeOverwrite replaces it, refusing an exact duplicate (user PUT, PATCH).
	modeOverwrite
	// modeReplace replaces it even when identical (group PUT).
	modeReplace
)

// setPerm stores a permission row and fires the matching webhooks: a delete
// then a create when a row is replaced. It returns 201 for a new row and 200
// for a replaced one.
func (s *Server) setPerm(pr principal, r *resource, p perm, mode writeMode, fire bool) (int, error) {
	p, err := s.checkPerm(r, p)
	if err != nil {
		return 0, err
	}
	if pr.user != nil && pr.user.name == userAnonymous {
		return 0, errf(http.StatusForbidden, "Forbidden operation for this resource or insufficient user privileges.")
	}
	rows := s.rows(pr, r.id, true)
	old, exists := rows[p.Name]
	switch {
	case exists && mode == modeCreate:
		return 0, errf(http.StatusConflict, "Permission with same name already exists for the resource.")
	case exists && mode == modeOverwrite && old == p:
		return 0, errf(http.StatusConflict, "Permission already exists for the resource with identical modifiers.")
	}
	rows[p.Name] = p
	if fire && exists {
		s.firePerm(false, pr, r, old)
	}
	if fire {
		s.firePerm(true, pr, r, p)
	}
	if exists {
		return http.StatusOK, nil
	}
	return http.StatusCreated, nil
}

// deletePerm removes the row with that name, whatever its modifiers.
func (s *Server) deletePerm(pr principal, r *resource, name string, fire bool) error {
	p, err := parsePerm(name)
	if err != nil {
		if _, ok := err.(errUnknownPerm); ok {
			return errf(http.StatusUnprocessableEntity, "Invalid value specified.")
		}
		return errf(http.StatusBadRequest, "Invalid permission format.")
	}
	rows := s.rows(pr, r.id, false)
	old, ok := rows[p.Name]
	if !ok {
		if pr.group != nil {
			return errf(http.StatusNotFound, "Permission not found for corresponding group and resource.")
		}
		return errf(http.StatusNotFound, "Could not find user resource permission to delete from db.")
	}
	delete(rows, p.Name)
	if fire {
		s.firePerm(false, pr, r, old)
	}
	return nil
}

// userParams are the template parameters describing a user.
func (s *Server) userParams(u *user) map[string]any {
	return map[string]any{"user.name": u.name, "user.id": u.id, "user.email": u.email}
}

// firePerm fires create_/delete_{user,group}_permission for one row.
func (s *Server) firePerm(created bool, pr principal, r *resource, p perm) {
	params := map[string]any{
		"resource.id": r.id, "resource.name": r.name, "resource.display_name": r.displayName,
		"resource.type": r.typ, "service.type": s.root(r).svcType,
		"service.name": nil, "service.sync_type": nil, "service.public_url": nil,
		"permission.name": p.Name, "permission.access": p.Access, "permission.scope": p.Scope,
		"permission": p.String(),
	}
	if r.parentID == 0 {
		params["service.name"] = r.name
		params["service.public_url"] = s.publicURL(r)
	}
	target := "user"
	if pr.group != nil {
		target = "group"
		params["group.name"], params["group.id"] = pr.group.name, pr.group.id
	} else {
		for k, v := range s.userParams(pr.user) {
			params[k] = v
		}
		params["user.status"] = statusNames[pr.user.status]
	}
	action := "delete_" + target + "_permission"
	if created {
		action = "create_" + target + "_permission"
	}
	s.fire(action, params)
}

func (s *Server) publicURL(svc *resource) string {
	return strings.TrimRight(s.opts.TwitcherURL, "/") + "/" + svc.name
}

// newCallbackURL creates a one-shot temporary token for the user (spec A.1.5).
func (s *Server) newCallbackURL(u *user) string {
	tok := randomToken()
	s.tokens[tok] = &token{userID: u.id, created: time.Now()}
	return s.baseURL + "/tmp/" + tok
}

type token struct {
	userID  int
	created time.Time
	expired bool
}

type session struct {
	userID  int
	expires time.Time // zero: never
}
