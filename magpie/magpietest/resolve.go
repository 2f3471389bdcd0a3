package magpietest

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Permission row types and reasons (spec A.2.1).
const (
	kindAllowed   = "allowed"
	kindApplied   = "applied"
	kindDirect    = "direct"
	kindInherited = "inherited"
	kindEffective = "effective"

	reasonMultiple = "multiple"
	reasonNone     = "no-permission"
	reasonAdmin    = "administrator"
)

// view selects which permissions a user listing shows (spec A.2.3).
type view int

const (
	viewDirect view = iota
	viewInherited
	viewResolved
	viewEffective
)

// row is one permission as a response shows it.
type row struct {
	perm
	kind   string
	reason string
}

// MarshalJSON renders {"name","access","scope","type"[,"reason"]}.
func (r row) MarshalJSON() ([]byte, error) {
	m := map[string]string{"name": r.Name, "access": r.Access, "scope": r.Scope, "type": r.kind}
	if r.reason != "" {
		m["reason"] = r.reason
	}
	return json.Marshal(m)
}

// permBody returns the {"permission_names", "permissions"} pair for rows.
func permBody(rows []row) map[string]any {
	names := []string{}
	for _, r := range rows {
		for _, n := range []string{r.implicit(), r.String()} {
			if n != "" && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	if rows == nil {
		rows = []row{}
	}
	return map[string]any{"permission_names": names, "permissions": rows}
}

// allowedRows lists every access x scope combination of the names allowed on
// a resource, for "allowed" listings.
func (s *Server) allowedRows(r *resource) []row {
	var out []row
	for _, n := range allowedPerms(s.root(r).svcType, r.typ) {
		for _, a := range []string{allow, deny} {
			for _, sc := range []string{match, recursive} {
				out = append(out, row{perm: perm{n, a, sc}, kind: kindAllowed})
			}
		}
	}
	return out
}

// candidate is a stored row considered during resolution.
type candidate struct {
	perm
	direct   bool
	priority float64
	reason   string
	level    int
}

// candidates returns the rows named name on a resource: the user's row first,
// then its groups' rows by group id. An empty name returns every row.
func (s *Server) candidates(u *user, resID int, name string, level int) []candidate {
	var out []candidate
	add := func(rows map[string]perm, c candidate) {
		names := make([]string, 0, len(rows))
		for n := range rows {
			if name == "" || n == name {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		for _, n := range names {
			c.perm = rows[n]
			out = append(out, c)
		}
	}
	add(s.rows(principal{user: u}, resID, false),
		candidate{direct: true, reason: fmt.Sprintf("user:%d:%s", u.id, u.name), level: level})
	for _, g := range s.sortedGroups(u) {
		add(s.rows(principal{group: g}, resID, false),
			candidate{priority: g.priority(), reason: fmt.Sprintf("group:%d:%s", g.id, g.name), level: level})
	}
	return out
}

// localResolve applies the single-resource rule between two group rows:
// higher group priority, then higher modifier rank; identical rows give
// reason "multiple".
func localResolve(a, b candidate) candidate {
	switch {
	case a.priority != b.priority:
		if a.priority > b.priority {
			return a
		}
		return b
	case a.rank() != b.rank():
		if a.rank() > b.rank() {
			return a
		}
		return b
	}
	b.reason = reasonMultiple
	return b
}

// userPermissions lists a user's permissions on a resource in one view.
func (s *Server) userPermissions(u *user, r *resource, v view) []row {
	var out []row
	switch v {
	case viewDirect:
		for _, c := range s.candidates(u, r.id, "", 0) {
			if c.direct {
				out = append(out, row{perm: c.perm, kind: kindDirect, reason: c.reason})
			}
		}
	case viewInherited:
		for _, c := range s.candidates(u, r.id, "", 0) {
			out = append(out, row{perm: c.perm, kind: kindInherited, reason: c.reason})
		}
	case viewResolved:
		best := map[string]candidate{}
		for _, c := range s.candidates(u, r.id, "", 0) {
			f, ok := best[c.Name]
			switch {
			case !ok || (c.direct && !f.direct):
				best[c.Name] = c
			case !f.direct:
				best[c.Name] = localResolve(c, f)
			}
		}
		for _, c := range best {
			out = append(out, row{perm: c.perm, kind: kindInherited, reason: c.reason})
		}
	case viewEffective:
		for _, n := range allowedPerms(s.root(r).svcType, r.typ) {
			out = append(out, s.effective(u, r, n))
		}
	}
	slices.SortStableFunc(out, func(a, b row) int { return comparePerm(a.perm, b.perm) })
	return out
}

// effective resolves one permission name for a user on a resource, climbing
// the tree as in spec A.2.3.
func (s *Server) effective(u *user, target *resource, name string) row {
	if s.isAdmin(u) {
		return row{perm: perm{name, allow, match}, kind: kindEffective, reason: reasonAdmin}
	}
	var found *candidate
	matchOK := true
	for cur, level := target, 1; cur != nil; cur, level = s.res[cur.parentID], level+1 {
		for _, c := range s.candidates(u, cur.id, name, level) {
			if c.Scope == match && !matchOK {
				continue
			}
			switch {
			case found == nil:
				found = &c
			case c.direct:
				if !found.direct {
					found = &c
				}
			case !found.direct:
				if found.level == level {
					best := localResolve(c, *found)
					found = &best
				} else if c.priority > found.priority {
					found = &c
				}
			}
		}
		if found != nil && found.direct {
			break
		}
		matchOK = false
	}
	if found == nil {
		return row{perm: perm{name, deny, match}, kind: kindEffective, reason: reasonNone}
	}
	return row{perm: perm{name, found.Access, match}, kind: kindEffective, reason: found.reason}
}

// groupRows lists a group's applied rows on a resource.
func (s *Server) groupRows(g *group, resID int) []row {
	var out []row
	for _, p := range s.rows(principal{group: g}, resID, false) {
		out = append(out, row{perm: p, kind: kindApplied})
	}
	slices.SortFunc(out, func(a, b row) int { return comparePerm(a.perm, b.perm) })
	return out
}
