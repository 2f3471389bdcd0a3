package magpietest

import (
	"strconv"
	"testing"
)

// TestEffectiveRules checks the resolution rules of spec A.2.3 on a
// geoserver tree service > workspace > layer, for user alice in group
// "editors" (priority 0) and anonymous (priority -1).
func TestEffectiveRules(t *testing.T) {
	type grant struct {
		who   string // "user", "editors", "anonymous", "other"
		where string // "svc", "ws", "layer"
		perm  string
	}
	tests := []struct {
		name       string
		grants     []grant
		perm       string
		wantAccess string
		wantReason string
	}{
		{"no row resolves to deny", nil, "getfeature", "deny", "no-permission"},
		{"user recursive on service reaches the layer",
			[]grant{{"user", "svc", "describefeaturetype-allow-recursive"}}, "describefeaturetype", "allow", "user:USER"},
		{"match on an ancestor does not reach the layer",
			[]grant{{"user", "ws", "getfeature-allow-match"}}, "getfeature", "deny", "no-permission"},
		{"match on the target counts",
			[]grant{{"user", "layer", "getfeature-allow-match"}}, "getfeature", "allow", "user:USER"},
		{"user on ancestor beats group on target",
			[]grant{{"editors", "layer", "getmap-deny-match"}, {"user", "svc", "getmap-allow-recursive"}},
			"getmap", "allow", "user:USER"},
		{"nearest direct row wins",
			[]grant{{"user", "layer", "getmap-deny-match"}, {"user", "svc", "getmap-allow-recursive"}},
			"getmap", "deny", "user:USER"},
		{"generic group allow beats anonymous deny on the same resource",
			[]grant{{"anonymous", "layer", "getmap-deny-match"}, {"editors", "layer", "getmap-allow-match"}},
			"getmap", "allow", "group:editors"},
		{"farther group of higher priority beats nearer anonymous",
			[]grant{{"anonymous", "layer", "getmap-deny-match"}, {"editors", "svc", "getmap-allow-recursive"}},
			"getmap", "allow", "group:editors"},
		{"nearer group of equal priority wins",
			[]grant{{"editors", "svc", "getmap-deny-recursive"}, {"other", "layer", "getmap-allow-match"}},
			"getmap", "allow", "group:other"},
		{"equal priority on one resource: deny beats allow",
			[]grant{{"editors", "layer", "getmap-allow-match"}, {"other", "layer", "getmap-deny-match"}},
			"getmap", "deny", "group:other"},
		{"identical group rows give multiple",
			[]grant{{"editors", "layer", "getmap-allow-match"}, {"other", "layer", "getmap-allow-match"}},
			"getmap", "allow", "multiple"},
		{"anonymous row applies to every user",
			[]grant{{"anonymous", "svc", "getmap-allow-recursive"}}, "getmap", "allow", "group:anonymous"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{QuietSeeding: true})
			svc, ws, lyr := geoTree(t, s)
			must[int](t)(s.AddGroup("editors"))
			must[int](t)(s.AddGroup("other"))
			uid := must[int](t)(s.AddUser("alice", "", "editors", "other"))
			ids := map[string]int{"svc": svc, "ws": ws, "layer": lyr}
			for _, g := range tc.grants {
				if g.who == "user" {
					check(t, s.SetUserPermission("alice", ids[g.where], g.perm))
				} else {
					check(t, s.SetGroupPermission(g.who, ids[g.where], g.perm))
				}
			}
			got, err := s.Effective("alice", lyr, tc.perm)
			check(t, err)
			want := tc.wantReason
			switch want {
			case "user:USER":
				want = "user:" + strconv.Itoa(uid) + ":alice"
			case "group:editors", "group:other", "group:anonymous":
				name := want[len("group:"):]
				want = "group:" + strconv.Itoa(s.groupByName(name).id) + ":" + name
			}
			if got.Access != tc.wantAccess || got.Reason != want {
				t.Errorf("Effective = %+v, want {%s %s}", got, tc.wantAccess, want)
			}
		})
	}
}

func TestEffectiveAdminShortCircuit(t *testing.T) {
	s := New(Options{})
	_, _, lyr := geoTree(t, s)
	check(t, s.SetUserPermission("admin", lyr, "getmap-deny-match"))
	got, err := s.Effective("admin", lyr, "getmap")
	check(t, err)
	if got != (Decision{Access: "allow", Reason: "administrator"}) {
		t.Errorf("admin effective = %+v", got)
	}
}

// TestEffectiveListing checks the HTTP form: every one of the 16 layer
// permissions, scope forced to match, the spec's example entries.
func TestEffectiveListing(t *testing.T) {
	s := NewServer(t, Options{})
	svc, _, lyr := geoTree(t, s)
	uid := must[int](t)(s.AddUser("test_user", ""))
	check(t, s.SetUserPermission("test_user", svc, "describefeaturetype-allow-recursive"))
	a := newAPI(t, s)
	code, body := a.do("GET", "/users/test_user/resources/"+strconv.Itoa(lyr)+"/permissions?effective=True", nil)
	if code != 200 || body["detail"] != "Get user resource permissions successful." {
		t.Fatalf("%d %v", code, body)
	}
	perms := body["permissions"].([]any)
	if len(perms) != 16 {
		t.Fatalf("got %d effective permissions, want 16", len(perms))
	}
	first := perms[0].(map[string]any)
	want := map[string]any{"name": "createstoredquery", "access": "deny", "scope": "match", "type": "effective", "reason": "no-permission"}
	if !equalMap(first, want) {
		t.Errorf("first = %v, want %v", first, want)
	}
	second := perms[1].(map[string]any)
	want = map[string]any{"name": "describefeaturetype", "access": "allow", "scope": "match", "type": "effective",
		"reason": "user:" + strconv.Itoa(uid) + ":test_user"}
	if !equalMap(second, want) {
		t.Errorf("second = %v, want %v", second, want)
	}
	names := body["permission_names"].([]any)
	if names[0] != "createstoredquery-deny-match" || names[1] != "describefeaturetype-match" || names[2] != "describefeaturetype-allow-match" {
		t.Errorf("permission_names start %v", names[:3])
	}
}

func equalMap(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// TestPermissionViews checks direct (default), inherited and resolved.
func TestPermissionViews(t *testing.T) {
	s := NewServer(t, Options{})
	_, _, lyr := geoTree(t, s)
	must[int](t)(s.AddGroup("editors"))
	must[int](t)(s.AddUser("alice", "", "editors"))
	check(t, s.SetGroupPermission("editors", lyr, "getmap-allow-match"))
	check(t, s.SetGroupPermission("anonymous", lyr, "getmap-deny-match"))
	a := newAPI(t, s)
	path := "/users/alice/resources/" + strconv.Itoa(lyr) + "/permissions"
	names := func(q string) []string {
		code, body := a.do("GET", path+q, nil)
		if code != 200 {
			t.Fatalf("%s: %d %v", q, code, body)
		}
		var out []string
		for _, p := range body["permissions"].([]any) {
			m := p.(map[string]any)
			out = append(out, m["name"].(string)+"-"+m["access"].(string)+"-"+m["scope"].(string)+"/"+m["type"].(string))
		}
		return out
	}
	if got := names(""); len(got) != 0 {
		t.Errorf("direct = %v, want none (group rows are not direct)", got)
	}
	if got := names("?Inherited=true"); len(got) != 2 {
		t.Errorf("inherited = %v, want both group rows", got)
	}
	if got := names("?resolve=1"); len(got) != 1 || got[0] != "getmap-allow-match/inherited" {
		t.Errorf("resolved = %v, want the editors allow", got)
	}
	code, body := a.do("GET", "/groups/editors/resources/"+strconv.Itoa(lyr)+"/permissions?effective=True", nil)
	perms := body["permissions"].([]any)
	if code != 200 || len(perms) != 1 || perms[0].(map[string]any)["type"] != "applied" {
		t.Errorf("group listing = %d %v", code, body)
	}
	if _, ok := perms[0].(map[string]any)["reason"]; ok {
		t.Error("applied group rows carry no reason")
	}
}
