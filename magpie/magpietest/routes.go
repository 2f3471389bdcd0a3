package magpietest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// routes is the routing table, first match wins (spec A.3).
var routes = []route{
	{method: http.MethodPost, pattern: "/signin", public: true, h: (*Server).signin},
	{method: http.MethodGet, pattern: "/tmp/{token}", public: true, h: (*Server).callback},
	{method: http.MethodGet, pattern: "/users", h: (*Server).listUsers},
	{method: http.MethodPost, pattern: "/users", h: (*Server).postUser},
	{method: http.MethodGet, pattern: "/users/{user}", h: (*Server).getUser},
	{method: http.MethodDelete, pattern: "/users/{user}", h: (*Server).delUser},
	{method: http.MethodGet, pattern: "/users/{user}/resources", h: (*Server).principalResources},
	{method: http.MethodGet, pattern: "/users/{user}/resources/{id}/permissions", h: (*Server).getPerms},
	{method: http.MethodPost, pattern: "/users/{user}/resources/{id}/permissions", h: (*Server).postPerm},
	{method: http.MethodPut, pattern: "/users/{user}/resources/{id}/permissions", h: (*Server).putPerm},
	{method: http.MethodDelete, pattern: "/users/{user}/resources/{id}/permissions", h: (*Server).delPerm},
	{method: http.MethodDelete, pattern: "/users/{user}/resources/{id}/permissions/{perm}", h: (*Server).delPerm},
	{method: http.MethodPost, pattern: "/groups", h: (*Server).postGroup},
	{method: http.MethodDelete, pattern: "/groups/{group}", h: (*Server).delGroup},
	{method: http.MethodGet, pattern: "/groups/{group}/users", h: (*Server).groupUsers},
	{method: http.MethodGet, pattern: "/groups/{group}/resources", h: (*Server).principalResources},
	{method: http.MethodGet, pattern: "/groups/{group}/resources/{id}/permissions", h: (*Server).getPerms},
	{method: http.MethodPost, pattern: "/groups/{group}/resources/{id}/permissions", h: (*Server).postPerm},
	{method: http.MethodPut, pattern: "/groups/{group}/resources/{id}/permissions", h: (*Server).putPerm},
	{method: http.MethodDelete, pattern: "/groups/{group}/resources/{id}/permissions", h: (*Server).delPerm},
	{method: http.MethodDelete, pattern: "/groups/{group}/resources/{id}/permissions/{perm}", h: (*Server).delPerm},
	{method: http.MethodGet, pattern: "/services", h: (*Server).listServices},
	{method: http.MethodPost, pattern: "/services", h: (*Server).postService},
	{method: http.MethodGet, pattern: "/services/types", h: (*Server).serviceTypes},
	{method: http.MethodGet, pattern: "/services/types/{type}", h: (*Server).servicesByType},
	{method: http.MethodGet, pattern: "/services/{service}", h: (*Server).getService},
	{method: http.MethodDelete, pattern: "/services/{service}", h: (*Server).delService},
	{method: http.MethodGet, pattern: "/services/{service}/resources", h: (*Server).serviceResources},
	{method: http.MethodGet, pattern: "/resources/{id}", h: (*Server).getResource},
	{method: http.MethodPost, pattern: "/resources", h: (*Server).postResource},
	{method: http.MethodDelete, pattern: "/resources/{id}", h: (*Server).delResource},
	{method: http.MethodPatch, pattern: "/permissions", h: (*Server).patchPermissions},
}

// query reads a query parameter by any of its case-insensitive aliases.
func (q *request) query(names ...string) (string, bool) {
	for k, vs := range q.r.URL.Query() {
		for _, n := range names {
			if strings.EqualFold(k, n) && len(vs) > 0 {
				return vs[0], true
			}
		}
	}
	return "", false
}

// flag reads a boolean query parameter the way Pyramid's asbool does.
func (q *request) flag(names ...string) bool {
	v, _ := q.query(names...)
	switch strings.ToLower(v) {
	case "true", "t", "yes", "y", "on", "1":
		return true
	}
	return false
}

// body decodes the JSON body; an empty body is an empty object.
func (q *request) body() (map[string]any, error) {
	data, err := io.ReadAll(io.LimitReader(q.r.Body, 1<<20))
	if err != nil {
		return nil, errf(http.StatusBadRequest, "Could not read request body.")
	}
	out := map[string]any{}
	if len(bytes.TrimSpace(data)) == 0 {
		return out, nil
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, errf(http.StatusBadRequest, "Invalid JSON request body.")
	}
	return out, nil
}

func str(m map[string]any, key string) string {
	v, _ := m[key].(string)
	return v
}

// intValue accepts a JSON number with no fraction.
func intValue(v any) (int, bool) {
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) {
		return 0, false
	}
	return int(f), true
}

func (q *request) ok(s *Server, status int, detail string, payload map[string]any) error {
	s.reply(q.w, q.r, status, detail, payload)
	return nil
}

func (s *Server) signin(q *request) error {
	body, err := q.body()
	if err != nil {
		return err
	}
	name, password := str(body, "user_name"), str(body, "password")
	if p := str(body, "provider_name"); p != "" && p != "ziggurat" {
		return errf(http.StatusNotFound, "Provider name not found.")
	}
	if name == "" {
		return errf(http.StatusUnprocessableEntity, "Invalid 'user_name' value specified.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var u *user
	for _, c := range s.users {
		if c.name == name || c.email == name {
			u = c
		}
	}
	switch {
	case u != nil && u.name == userAnonymous:
		return errf(http.StatusForbidden, "Login was refused for this user.")
	case u == nil || u.password != password:
		return errf(http.StatusUnauthorized, "Incorrect credentials.")
	}
	tok := randomToken()
	sess := &session{userID: u.id}
	if s.opts.SessionTTL > 0 {
		sess.expires = time.Now().Add(s.opts.SessionTTL)
	}
	s.sessions[tok] = sess
	http.SetCookie(q.w, &http.Cookie{Name: CookieName, Value: tok, Path: "/", HttpOnly: true})
	return q.ok(s, http.StatusOK, "Login successful.", nil)
}

// callback handles GET/HEAD /tmp/{token} (spec A.1.5).
func (s *Server) callback(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[q.params["token"]]
	switch {
	case t == nil:
		return errf(http.StatusNotFound, "Operation matching temporary URL token could not be found or was already processed.")
	case t.expired || time.Since(t.created) > s.opts.TokenTTL:
		return errf(http.StatusGone, "Temporary URL token is expired.")
	}
	delete(s.tokens, q.params["token"])
	if u := s.users[t.userID]; u != nil {
		u.status = statusWebhookError
	}
	return q.ok(s, http.StatusOK, "Successful operation from provided temporary URL token.", nil)
}

func (s *Server) userJSON(u *user) map[string]any {
	names := []string{}
	for _, g := range s.sortedGroups(u) {
		names = append(names, g.name)
	}
	slices.Sort(names)
	return map[string]any{"user_name": u.name, "email": u.email, "status": statusNames[u.status],
		"group_names": names, "has_pending_group": false, "user_id": u.id}
}

func (s *Server) sortedUsers() []*user {
	us := make([]*user, 0, len(s.users))
	for _, u := range s.users {
		us = append(us, u)
	}
	slices.SortFunc(us, func(a, b *user) int { return strings.Compare(a.name, b.name) })
	return us
}

func (s *Server) listUsers(q *request) error {
	status := 0
	if v, ok := q.query("status"); ok {
		for code, name := range statusNames {
			if v == name || v == strconv.Itoa(code) {
				status = code
			}
		}
		if status == 0 {
			return errf(http.StatusBadRequest, "Invalid 'status' value specified.")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	names, details := []string{}, []map[string]any{}
	for _, u := range s.sortedUsers() {
		if status != 0 && u.status != status {
			continue
		}
		names = append(names, u.name)
		d := map[string]any{"user_name": u.name, "email": u.email, "status": statusNames[u.status], "user_id": u.id}
		if u.name == userAnonymous {
			delete(d, "user_id")
		}
		details = append(details, d)
	}
	if q.flag("detail") {
		return q.ok(s, http.StatusOK, "Get users successful.", map[string]any{"users": details})
	}
	return q.ok(s, http.StatusOK, "Get users successful.", map[string]any{"user_names": names})
}

func (s *Server) postUser(q *request) error {
	b, err := q.body()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.createUser(str(b, "user_name"), str(b, "email"), str(b, "password"), str(b, "group_name"), true)
	if err != nil {
		return err
	}
	return q.ok(s, http.StatusCreated, "Add user to db successful.", map[string]any{"user": s.userJSON(u)})
}

func (s *Server) getUser(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.findUser(q.params["user"])
	if err != nil {
		return err
	}
	return q.ok(s, http.StatusOK, "Get user successful.", map[string]any{"user": s.userJSON(u)})
}

func (s *Server) delUser(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.deleteUser(q.params["user"], true); err != nil {
		return err
	}
	return q.ok(s, http.StatusOK, "Delete user successful.", nil)
}

func (s *Server) postGroup(q *request) error {
	b, err := q.body()
	if err != nil {
		return err
	}
	disc, _ := b["discoverable"].(bool)
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.createGroup(str(b, "group_name"), str(b, "description"), disc, str(b, "terms"))
	if err != nil {
		return err
	}
	return q.ok(s, http.StatusCreated, "Create group successful.",
		map[string]any{"group": map[string]any{"group_name": g.name, "group_id": g.id}})
}

func (s *Server) delGroup(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.deleteGroup(q.params["group"]); err != nil {
		return err
	}
	return q.ok(s, http.StatusOK, "Delete group successful.", nil)
}

func (s *Server) groupUsers(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.findGroup(q.params["group"])
	if err != nil {
		return err
	}
	names := []string{}
	for _, u := range s.sortedUsers() {
		if u.groups[g.id] {
			names = append(names, u.name)
		}
	}
	return q.ok(s, http.StatusOK, "Get group users successful.", map[string]any{"user_names": names})
}

// principal resolves the {user} or {group} of a route; callers hold s.mu.
func (s *Server) principal(q *request) (principal, error) {
	return s.lookupPrincipal(principalRef{user: q.params["user"], group: q.params["group"]})
}

// resourceParam resolves the {id} of a route; callers hold s.mu.
func (s *Server) resourceParam(q *request) (*resource, error) {
	id, err := strconv.Atoi(q.params["id"])
	if err != nil {
		return nil, errf(http.StatusUnprocessableEntity, "Invalid value specified for resource ID.")
	}
	return s.findResource(id)
}

// target resolves the principal and the resource of a permission route.
func (s *Server) target(q *request) (principal, *resource, error) {
	pr, err := s.principal(q)
	if err != nil {
		return pr, nil, err
	}
	r, err := s.resourceParam(q)
	return pr, r, err
}

func (s *Server) getPerms(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, r, err := s.target(q)
	if err != nil {
		return err
	}
	if pr.group != nil {
		return q.ok(s, http.StatusOK, "Get group resource permissions successful.", permBody(s.groupRows(pr.group, r.id)))
	}
	v := viewDirect
	switch {
	case q.flag("effective"):
		v = viewEffective
	case q.flag("resolve", "resolved"):
		v = viewResolved
	case q.flag("inherited", "inherit"):
		v = viewInherited
	}
	return q.ok(s, http.StatusOK, "Get user resource permissions successful.", permBody(s.userPermissions(pr.user, r, v)))
}

// permFromBody reads {"permission": string|object} or {"permission_name": string}.
func permFromBody(b map[string]any) (perm, error) {
	v, ok := b["permission"]
	if !ok {
		v, ok = b["permission_name"]
	}
	var p perm
	var err error
	switch t := v.(type) {
	case string:
		p, err = parsePerm(t)
	case map[string]any:
		for _, k := range []string{"name", "permission_name", "permission", "perm_name"} {
			if p.Name == "" {
				p.Name = str(t, k)
			}
		}
		p.Access, p.Scope = str(t, "access"), str(t, "scope")
		p, err = p.normalize()
	default:
		return perm{}, errf(http.StatusBadRequest, "Invalid permission format, missing 'permission' or 'permission_name'.")
	}
	if _, unknown := err.(errUnknownPerm); unknown {
		return perm{}, errf(http.StatusUnprocessableEntity, "Invalid value specified.")
	}
	if err != nil {
		return perm{}, errf(http.StatusBadRequest, "Invalid permission format.")
	}
	return p, nil
}

func (s *Server) postPerm(q *request) error { return s.writePerm(q, modeCreate) }

func (s *Server) putPerm(q *request) error {
	if _, group := q.params["group"]; group {
		return s.writePerm(q, modeReplace)
	}
	return s.writePerm(q, modeOverwrite)
}

// bodyPerm reads the permission of the request body (see permFromBody).
func (q *request) bodyPerm() (perm, error) {
	b, err := q.body()
	if err != nil {
		return perm{}, err
	}
	return permFromBody(b)
}

func (s *Server) writePerm(q *request, mode writeMode) error {
	p, err := q.bodyPerm()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, r, err := s.target(q)
	if err != nil {
		return err
	}
	status, err := s.setPerm(pr, r, p, mode, true)
	if err != nil {
		return err
	}
	p, _ = p.normalize()
	payload := map[string]any{"permission_name": p.String(), "permission": row{perm: p, kind: kindApplied}}
	what, verb := "user", "Create"
	if status == http.StatusOK {
		verb = "Update"
	}
	if pr.group != nil {
		what = "group"
		payload["resource"] = map[string]any{"resource_id": r.id, "resource_name": r.name, "resource_type": r.typ}
		payload["group"] = map[string]any{"group_id": pr.group.id, "group_name": pr.group.name}
	} else {
		payload["resource_id"], payload["user_id"] = r.id, pr.user.id
	}
	return q.ok(s, status, verb+" "+what+" resource permission successful.", payload)
}

func (s *Server) delPerm(q *request) error {
	name, inPath := q.params["perm"]
	if !inPath {
		p, err := q.bodyPerm()
		if err != nil {
			return err
		}
		name = p.Name
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, r, err := s.target(q)
	if err != nil {
		return err
	}
	if err := s.deletePerm(pr, r, name, true); err != nil {
		return err
	}
	if pr.group != nil {
		return q.ok(s, http.StatusOK, "Delete group resource permission successful.", nil)
	}
	return q.ok(s, http.StatusOK, "Delete user resource permission successful.", nil)
}

// orderedNodes renders resource nodes as a JSON object keyed by id, in
// insertion order (Magpie's children mappings).
type orderedNodes struct {
	ids   []int
	nodes []map[string]any
}

// MarshalJSON implements json.Marshaler.
func (o orderedNodes) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, id := range o.ids {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(strconv.Quote(strconv.Itoa(id)) + ":")
		b, err := json.Marshal(o.nodes[i])
		if err != nil {
			return nil, err
		}
		buf.Write(b)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// nodeJSON formats a resource without children, with the given rows.
func (s *Server) nodeJSON(r *resource, rows []row) map[string]any {
	n := map[string]any{"resource_name": r.name, "resource_display_name": r.displayName,
		"resource_type": r.typ, "resource_id": r.id, "parent_id": nil, "root_service_id": nil}
	if r.parentID != 0 {
		n["parent_id"], n["root_service_id"] = r.parentID, s.root(r).id
	}
	for k, v := range permBody(rows) {
		n[k] = v
	}
	return n
}

// tree formats r's descendants keyed by id. rows gives each node's rows;
// with crop, only nodes with rows (or a descendant with rows) are kept.
func (s *Server) tree(r *resource, rows func(*resource) []row, crop bool) orderedNodes {
	var out orderedNodes
	for _, id := range r.children {
		c := s.res[id]
		kids := s.tree(c, rows, crop)
		cr := rows(c)
		if crop && len(cr) == 0 && len(kids.ids) == 0 {
			continue
		}
		n := s.nodeJSON(c, cr)
		n["children"] = kids
		out.ids = append(out.ids, id)
		out.nodes = append(out.nodes, n)
	}
	return out
}

// serviceJSON formats a service with the given rows (spec A.3.2).
func (s *Server) serviceJSON(r *resource, rows []row) map[string]any {
	n := map[string]any{"service_name": r.name, "service_type": r.svcType, "service_sync_type": nil,
		"service_configurable": r.config != nil, "resource_id": r.id,
		"public_url": s.publicURL(r), "service_url": r.url}
	for k, v := range permBody(rows) {
		n[k] = v
	}
	return n
}

// services returns the services by name.
func (s *Server) services() []*resource {
	var out []*resource
	for _, r := range s.res {
		if r.parentID == 0 {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *resource) int { return strings.Compare(a.name, b.name) })
	return out
}

// servicesByTypeJSON groups services by type; every known type is a key when
// all is set. fill adds keys to each service object.
func (s *Server) servicesByTypeJSON(all bool, only string, fill func(svc *resource, obj map[string]any)) map[string]any {
	out := map[string]any{}
	if all {
		for _, t := range serviceTypeNames() {
			out[t] = map[string]any{}
		}
	}
	for _, svc := range s.services() {
		if only != "" && svc.svcType != only {
			continue
		}
		byName, ok := out[svc.svcType].(map[string]any)
		if !ok {
			byName = map[string]any{}
			out[svc.svcType] = byName
		}
		obj := s.serviceJSON(svc, s.allowedRows(svc))
		if fill != nil {
			fill(svc, obj)
		}
		byName[svc.name] = obj
	}
	return out
}

// principalResources handles GET /users/{u}/resources and
// /groups/{g}/resources: every service, trees cropped to resources with rows.
func (s *Server) principalResources(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, err := s.principal(q)
	if err != nil {
		return err
	}
	rows := func(r *resource) []row {
		if pr.group != nil {
			return s.groupRows(pr.group, r.id)
		}
		if q.flag("inherited", "inherit") {
			return s.userPermissions(pr.user, r, viewInherited)
		}
		return s.userPermissions(pr.user, r, viewDirect)
	}
	res := s.servicesByTypeJSON(true, "", func(svc *resource, obj map[string]any) {
		for k, v := range permBody(rows(svc)) {
			obj[k] = v
		}
		obj["resources"] = s.tree(svc, rows, true)
	})
	what := "user"
	if pr.group != nil {
		what = "group"
	}
	return q.ok(s, http.StatusOK, "Get "+what+" resources successful.", map[string]any{"resources": res})
}

func (s *Server) listServices(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q.flag("flatten", "flattened", "list") {
		list := []map[string]any{}
		for _, svc := range s.services() {
			list = append(list, s.serviceJSON(svc, s.allowedRows(svc)))
		}
		return q.ok(s, http.StatusOK, "Get services successful.", map[string]any{"services": list})
	}
	return q.ok(s, http.StatusOK, "Get services successful.", map[string]any{"services": s.servicesByTypeJSON(true, "", nil)})
}

func (s *Server) postService(q *request) error {
	b, err := q.body()
	if err != nil {
		return err
	}
	cfg, isMap := b["configuration"].(map[string]any)
	if b["configuration"] != nil && !isMap {
		return errf(http.StatusUnprocessableEntity, "Invalid 'configuration' value specified, must be an object.")
	}
	u := str(b, "service_url")
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return errf(http.StatusBadRequest, "Invalid 'service_url' value specified.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, err := s.createService(str(b, "service_name"), str(b, "service_type"), u, cfg)
	if err != nil {
		return err
	}
	obj := s.serviceJSON(svc, s.allowedRows(svc))
	obj["configuration"] = svc.config
	return q.ok(s, http.StatusCreated, "Service registration to db successful.", map[string]any{"service": obj})
}

func (s *Server) serviceTypes(q *request) error {
	return q.ok(s, http.StatusOK, "Get service types successful.", map[string]any{"service_types": serviceTypeNames()})
}

func (s *Server) servicesByType(q *request) error {
	t := q.params["type"]
	if _, ok := serviceTypes[t]; !ok {
		return errf(http.StatusBadRequest, "Invalid 'service_type' value does not correspond to any of the existing service types.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res := s.servicesByTypeJSON(false, t, nil)
	if res[t] == nil {
		res[t] = map[string]any{}
	}
	return q.ok(s, http.StatusOK, "Get services successful.", map[string]any{"services": res})
}

func (s *Server) findService(name string) (*resource, error) {
	if svc := s.serviceByName(name); svc != nil {
		return svc, nil
	}
	return nil, errf(http.StatusNotFound, "Service name not found.")
}

func (s *Server) getService(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, err := s.findService(q.params["service"])
	if err != nil {
		return err
	}
	obj := s.serviceJSON(svc, s.allowedRows(svc))
	st := serviceTypes[svc.svcType]
	structure := map[string][]string{typeService: {}}
	for parent, kids := range st.children {
		structure[parent] = union(kids)
	}
	for _, t := range resourceTypes(svc.svcType) {
		if structure[t] == nil {
			structure[t] = []string{}
		}
	}
	obj["configuration"] = svc.config
	obj["resource_child_allowed"] = len(st.children) > 0
	obj["resource_types_allowed"] = append([]string{}, resourceTypes(svc.svcType)...)
	obj["resource_structure_allowed"] = structure
	return q.ok(s, http.StatusOK, "Get service successful.", map[string]any{"service": obj})
}

func (s *Server) delService(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, err := s.findService(q.params["service"])
	if err != nil {
		return err
	}
	if err := s.deleteResource(svc.id); err != nil {
		return err
	}
	return q.ok(s, http.StatusOK, "Delete service successful.", nil)
}

func (s *Server) serviceResources(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, err := s.findService(q.params["service"])
	if err != nil {
		return err
	}
	obj := s.serviceJSON(svc, s.allowedRows(svc))
	obj["resources"] = s.tree(svc, s.allowedRows, false)
	return q.ok(s, http.StatusOK, "Get service resources successful.", map[string]any{svc.name: obj})
}

func (s *Server) getResource(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.resourceParam(q)
	if err != nil {
		return err
	}
	const detail = "Get resource successful."
	if !q.flag("parent", "parents") {
		n := s.nodeJSON(r, s.allowedRows(r))
		n["children"] = s.tree(r, s.allowedRows, false)
		return q.ok(s, http.StatusOK, detail, map[string]any{"resource": n})
	}
	var chain []*resource // target -> root
	for cur := r; cur != nil; cur = s.res[cur.parentID] {
		chain = append(chain, cur)
	}
	invert := q.flag("invert", "inverted")
	if invert {
		slices.Reverse(chain)
	}
	if q.flag("flatten", "flattened", "list") {
		list := make([]map[string]any, len(chain))
		for i, c := range chain {
			list[i] = s.nodeJSON(c, s.allowedRows(c))
		}
		return q.ok(s, http.StatusOK, detail, map[string]any{"resources": list})
	}
	// Nested: root with "children" down to the target (invert), or target
	// with "parent" up to the root.
	var nested map[string]any
	for i := len(chain) - 1; i >= 0; i-- {
		n := s.nodeJSON(chain[i], s.allowedRows(chain[i]))
		switch {
		case nested == nil:
		case invert:
			n["children"] = orderedNodes{ids: []int{nested["resource_id"].(int)}, nodes: []map[string]any{nested}}
		default:
			n["parent"] = nested
		}
		nested = n
	}
	return q.ok(s, http.StatusOK, detail, map[string]any{"resource": nested})
}

func (s *Server) postResource(q *request) error {
	b, err := q.body()
	if err != nil {
		return err
	}
	parentID, ok := intValue(b["parent_id"])
	if !ok {
		return errf(http.StatusUnprocessableEntity, "Invalid 'parent_id' value specified.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.createResource(parentID, str(b, "resource_name"), str(b, "resource_display_name"), str(b, "resource_type"))
	if err != nil {
		return err
	}
	return q.ok(s, http.StatusCreated, "Create resource successful.", map[string]any{"resource": map[string]any{
		"resource_name": r.name, "resource_display_name": r.displayName, "resource_type": r.typ, "resource_id": r.id}})
}

func (s *Server) delResource(q *request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.resourceParam(q)
	if err != nil {
		return err
	}
	if err := s.deleteResource(r.id); err != nil {
		return err
	}
	return q.ok(s, http.StatusOK, "Delete resource successful.", nil)
}

// patchPermissions handles PATCH /permissions (spec A.3.5): the entries are a
// resource path from a service; missing resources are created, and entries
// with a permission create (overwrite) or remove it for a user and/or group.
func (s *Server) patchPermissions(q *request) error {
	b, err := q.body()
	if err != nil {
		return err
	}
	list, ok := b["permissions"].([]any)
	if !ok {
		return errf(http.StatusUnprocessableEntity, "Invalid 'permissions' value specified, must be a list.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.applyPatch(list); err != nil {
		var ae *apiError
		errors.As(err, &ae)
		return errf(http.StatusBadRequest, ae.detail)
	}
	return q.ok(s, http.StatusOK, "Update permissions successful.", nil)
}

// applyPatch validates a PATCH /permissions list, then applies it; callers
// hold s.mu. Every error is an *apiError.
func (s *Server) applyPatch(list []any) error {
	entries := make([]map[string]any, len(list))
	withPerm := false
	for i, v := range list {
		e, ok := v.(map[string]any)
		if !ok || str(e, "resource_name") == "" || str(e, "resource_type") == "" {
			return errf(http.StatusBadRequest, "Each permission entry needs 'resource_name' and 'resource_type'.")
		}
		if (i == 0) != (str(e, "resource_type") == typeService) {
			return errf(http.StatusBadRequest, "Only the first entry must be of type 'service'.")
		}
		if e["permission"] != nil {
			if str(e, "user") == "" && str(e, "group") == "" {
				return errf(http.StatusBadRequest, "A permission entry needs a 'user' or a 'group'.")
			}
			if u := str(e, "user"); u != "" && (s.userByName(u) == nil || u == userAnonymous) {
				return errf(http.StatusBadRequest, "Invalid user for permission entry.")
			}
			if g := str(e, "group"); g != "" && s.groupByName(g) == nil {
				return errf(http.StatusBadRequest, "Invalid group for permission entry.")
			}
			if a := str(e, "action"); a != "" && a != "create" && a != "remove" {
				return errf(http.StatusBadRequest, "Invalid 'action' value specified.")
			}
			withPerm = true
		}
		entries[i] = e
	}
	if !withPerm {
		return errf(http.StatusBadRequest, "No permission to apply in the permissions list.")
	}
	cur := s.serviceByName(str(entries[0], "resource_name"))
	if cur == nil {
		return errf(http.StatusBadRequest, "Service name not found.")
	}
	for i, e := range entries {
		if i > 0 {
			next := s.childByName(cur, str(e, "resource_name"))
			if next == nil {
				var err error
				if next, err = s.createResource(cur.id, str(e, "resource_name"), "", str(e, "resource_type")); err != nil {
					return err
				}
			}
			cur = next
		}
		if e["permission"] == nil {
			continue
		}
		p, err := permFromBody(e)
		if err != nil {
			return err
		}
		var targets []principal
		if u := str(e, "user"); u != "" {
			targets = append(targets, principal{user: s.userByName(u)})
		}
		if g := str(e, "group"); g != "" {
			targets = append(targets, principal{group: s.groupByName(g)})
		}
		for _, pr := range targets {
			if str(e, "action") == "remove" {
				err = s.deletePerm(pr, cur, p.Name, true)
			} else {
				_, err = s.setPerm(pr, cur, p, modeOverwrite, true)
			}
			var ae *apiError
			if err != nil && !(errors.As(err, &ae) && (ae.status == http.StatusNotFound || ae.status == http.StatusConflict)) {
				return err
			}
		}
	}
	return nil
}

// childByName finds a direct child of r by name.
func (s *Server) childByName(r *resource, name string) *resource {
	for _, id := range r.children {
		if s.res[id].name == name {
			return s.res[id]
		}
	}
	return nil
}
