package magpie

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func newClient(url string) *Client {
	return NewClient(ClientOptions{URL: url, AdminUser: "admin", AdminPassword: "qwertyqwerty",
		HTTPClient: &http.Client{Timeout: 5 * time.Second}})
}

func ok[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fixture seeds geoserver > test_user (workspace) > Espace_Vert (layer),
// user alice in group editors, and a thredds service.
type fixture struct {
	srv            *magpietest.Server
	c              *Client
	svc, ws, layer int
	aliceID        int
}

func newFixture(t *testing.T) *fixture {
	srv := magpietest.NewServer(t, magpietest.Options{QuietSeeding: true})
	f := &fixture{srv: srv, c: newClient(srv.URL())}
	f.svc = ok[int](t)(srv.AddService("geoserver", "geoserver"))
	f.ws = ok[int](t)(srv.AddResource(f.svc, "test_user", "workspace"))
	f.layer = ok[int](t)(srv.AddResource(f.ws, "Espace_Vert", "layer"))
	ok[int](t)(srv.AddService("thredds", "thredds"))
	ok[int](t)(srv.AddGroup("editors"))
	f.aliceID = ok[int](t)(srv.AddUser("alice", "", "editors"))
	return f
}

func names[T any](list []T, name func(T) string) []string {
	var out []string
	for _, v := range list {
		out = append(out, name(v))
	}
	return out
}

func svcName(s *Service) string { return s.Name }

func TestClientReads(t *testing.T) {
	f := newFixture(t)
	c, ctx := f.c, ctx(t)
	noErr(t, f.srv.SetUserPermission("alice", f.svc, "getmap-allow-recursive"))
	noErr(t, f.srv.SetGroupPermission("editors", f.layer, "getfeature-deny-match"))

	if got := ok[[]string](t)(c.ServiceTypes(ctx)); len(got) != 10 || got[2] != "geoserver" {
		t.Errorf("ServiceTypes = %v", got)
	}
	if got := names(ok[[]*Service](t)(c.Services(ctx)), svcName); !reflect.DeepEqual(got, []string{"geoserver", "thredds"}) {
		t.Errorf("Services = %v", got)
	}
	gs := ok[[]*Service](t)(c.ServicesByType(ctx, "geoserver"))
	if len(gs) != 1 || gs[0].ResourceID != f.svc || gs[0].Type != "geoserver" {
		t.Errorf("ServicesByType = %+v", gs)
	}
	if got := ok[[]*Service](t)(c.ServicesByType(ctx, "api")); len(got) != 0 {
		t.Errorf("ServicesByType(api) = %v", got)
	}
	if svc := ok[*Service](t)(c.Service(ctx, "thredds")); svc.Type != "thredds" || svc.PublicURL == "" {
		t.Errorf("Service = %+v", svc)
	}
	tree := ok[*Service](t)(c.ServiceResources(ctx, "geoserver"))
	if l := tree.Child("test_user").Child("Espace_Vert"); l == nil || l.ID != f.layer || l.ParentID != f.ws || l.RootServiceID != f.svc {
		t.Errorf("ServiceResources tree = %+v", tree.Resources)
	}
	root := ok[*Resource](t)(c.Resource(ctx, f.svc))
	if root.Type != "service" || root.ParentID != 0 || root.Child("test_user").Child("Espace_Vert") == nil {
		t.Errorf("Resource = %+v", root)
	}
	path := ok[[]*Resource](t)(c.ResourcePath(ctx, f.layer))
	if got := names(path, func(r *Resource) string { return r.Name + "::" + r.Type }); !reflect.DeepEqual(got,
		[]string{"geoserver::service", "test_user::workspace", "Espace_Vert::layer"}) {
		t.Errorf("ResourcePath = %v", got)
	}

	if got := ok[[]string](t)(c.UserNames(ctx)); !reflect.DeepEqual(got, []string{"admin", "alice", "anonymous"}) {
		t.Errorf("UserNames = %v", got)
	}
	if got := ok[[]User](t)(c.Users(ctx)); len(got) != 3 || got[1].Name != "alice" || got[1].ID != f.aliceID || got[1].Status != "OK" {
		t.Errorf("Users = %+v", got)
	}
	if u := ok[User](t)(c.User(ctx, "alice")); !reflect.DeepEqual(u.Groups, []string{"anonymous", "editors"}) {
		t.Errorf("User = %+v", u)
	}
	if id := ok[int](t)(c.UserID(ctx, "alice")); id != f.aliceID {
		t.Errorf("UserID = %d", id)
	}
	if n := ok[string](t)(c.UserName(ctx, f.aliceID)); n != "alice" {
		t.Errorf("UserName = %q", n)
	}
	if _, err := c.UserName(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("UserName(999) err = %v", err)
	}
	if got := ok[[]string](t)(c.GroupUsers(ctx, "editors")); !reflect.DeepEqual(got, []string{"alice"}) {
		t.Errorf("GroupUsers = %v", got)
	}

	perm := func(list []Permission, name string) string {
		p, found := Find(list, name)
		if !found {
			return "absent"
		}
		return p.String() + "/" + p.Type
	}
	direct := ok[[]Permission](t)(c.UserPermissions(ctx, "alice", f.svc, Direct))
	if len(direct) != 1 || perm(direct, "getmap") != "getmap-allow-recursive/direct" {
		t.Errorf("Direct = %+v", direct)
	}
	if got := ok[[]Permission](t)(c.UserPermissions(ctx, "alice", f.layer, Inherited)); perm(got, "getfeature") != "getfeature-deny-match/inherited" {
		t.Errorf("Inherited = %+v", got)
	}
	if got := ok[[]Permission](t)(c.UserPermissions(ctx, "alice", f.layer, Resolved)); len(got) != 1 {
		t.Errorf("Resolved = %+v", got)
	}
	eff := ok[[]Permission](t)(c.UserPermissions(ctx, "alice", f.layer, Effective))
	if len(eff) != 16 || perm(eff, "getmap") != "getmap-allow-match/effective" ||
		perm(eff, "getfeature") != "getfeature-deny-match/effective" || perm(eff, "transaction") != "transaction-deny-match/effective" {
		t.Errorf("Effective = %+v", eff)
	}
	if got := ok[[]Permission](t)(c.GroupPermissions(ctx, "editors", f.layer)); perm(got, "getfeature") != "getfeature-deny-match/applied" {
		t.Errorf("GroupPermissions = %+v", got)
	}

	ur := ok[[]*Service](t)(c.UserResources(ctx, "alice"))
	if got := names(ur, svcName); !reflect.DeepEqual(got, []string{"geoserver", "thredds"}) {
		t.Fatalf("UserResources = %v", got)
	}
	if !reflect.DeepEqual(ur[0].PermissionNames, []string{"getmap", "getmap-allow-recursive"}) || len(ur[0].Resources) != 0 {
		t.Errorf("UserResources geoserver = %+v", ur[0])
	}
	gr := ok[[]*Service](t)(c.GroupResources(ctx, "editors"))
	if l := gr[0].Child("test_user").Child("Espace_Vert"); l == nil || !reflect.DeepEqual(l.PermissionNames, []string{"getfeature-deny-match"}) {
		t.Errorf("GroupResources = %+v", gr[0].Resources)
	}
}

func TestClientWrites(t *testing.T) {
	f := newFixture(t)
	c, ctx, srv := f.c, ctx(t), f.srv

	api := ok[int](t)(c.CreateService(ctx, ServiceSpec{Name: "secure-data-proxy", Type: "api", URL: "http://proxy"}))
	route := ok[int](t)(c.CreateResource(ctx, api, "wps_outputs", "route"))
	if id, found := srv.Lookup("secure-data-proxy", "wps_outputs"); !found || id != route {
		t.Errorf("CreateResource: lookup %d %v, want %d", id, found, route)
	}
	bob := ok[int](t)(c.CreateUser(ctx, "bob", "bob@example.com", "qwertyqwerty", "users"))
	if bob == 0 || !reflect.DeepEqual(srv.Users(), []string{"admin", "alice", "anonymous", "bob"}) {
		t.Errorf("CreateUser: %d %v", bob, srv.Users())
	}
	if g := ok[Group](t)(c.CreateGroup(ctx, "readers", "Readers group", false, "")); g.Name != "readers" || g.ID == 0 {
		t.Errorf("CreateGroup = %+v", g)
	}

	read := Permission{Name: "read", Access: "allow", Scope: "recursive"}
	for i, want := range []bool{true, false} {
		if changed := ok[bool](t)(c.SetUserPermission(ctx, "alice", route, read)); changed != want {
			t.Errorf("SetUserPermission #%d changed = %v, want %v", i, changed, want)
		}
	}
	read.Access = "deny"
	if changed := ok[bool](t)(c.SetUserPermission(ctx, "alice", route, read)); !changed {
		t.Error("SetUserPermission with other modifiers did not change")
	}
	if got := srv.UserPermissions("alice", route); !reflect.DeepEqual(got, []string{"read-deny-recursive"}) {
		t.Errorf("after SetUserPermission: %v", got)
	}
	ok[bool](t)(c.SetGroupPermission(ctx, "readers", route, Permission{Name: "read", Access: "allow", Scope: "match"}))
	if got := srv.GroupPermissions("readers", route); !reflect.DeepEqual(got, []string{"read-allow-match"}) {
		t.Errorf("after SetGroupPermission: %v", got)
	}
	for range 2 { // the second delete finds nothing: still no error
		noErr(t, c.DeleteUserPermission(ctx, "alice", route, "read"))
		noErr(t, c.DeleteGroupPermission(ctx, "readers", route, "read"))
	}
	if len(srv.UserPermissions("alice", route)) != 0 || len(srv.GroupPermissions("readers", route)) != 0 {
		t.Error("Delete*Permission left rows")
	}

	up := PermissionUpdate{
		Path:       []PathElem{{"thredds", "service"}, {"workspaces", "directory"}, {"alice", "directory"}, {"f.nc", "file"}},
		Permission: Permission{Name: "read", Access: "allow", Scope: "match"}, User: "alice", Group: "readers",
	}
	noErr(t, c.UpdatePermissions(ctx, up))
	file, found := srv.Lookup("thredds", "workspaces", "alice", "f.nc")
	if !found || !reflect.DeepEqual(srv.UserPermissions("alice", file), []string{"read-allow-match"}) ||
		!reflect.DeepEqual(srv.GroupPermissions("readers", file), []string{"read-allow-match"}) {
		t.Fatalf("UpdatePermissions create: found=%v user=%v group=%v", found,
			srv.UserPermissions("alice", file), srv.GroupPermissions("readers", file))
	}
	up.Remove, up.Group = true, ""
	noErr(t, c.UpdatePermissions(ctx, up))
	if len(srv.UserPermissions("alice", file)) != 0 || len(srv.GroupPermissions("readers", file)) != 1 {
		t.Error("UpdatePermissions remove: wrong rows left")
	}
	for _, bad := range []PermissionUpdate{
		{User: "alice"},
		{Path: []PathElem{{"f", "file"}}, User: "alice"},
		{Path: []PathElem{{"thredds", "service"}}},
		{Path: []PathElem{{"thredds", "service"}, {"", "file"}}, User: "alice"},
	} {
		if err := c.UpdatePermissions(ctx, bad); err == nil {
			t.Errorf("UpdatePermissions(%+v): want an error", bad)
		}
	}

	noErr(t, c.DeleteResource(ctx, route))
	noErr(t, c.DeleteResource(ctx, route)) // already gone
	noErr(t, c.DeleteService(ctx, "secure-data-proxy"))
	noErr(t, c.DeleteUser(ctx, "bob"))
	noErr(t, c.DeleteGroup(ctx, "readers"))
	if _, found := srv.Lookup("secure-data-proxy"); found || len(srv.Users()) != 3 {
		t.Errorf("deletes left service=%v users=%v", found, srv.Users())
	}
	if _, err := c.CreateResource(ctx, f.layer, "x", "layer"); err == nil || !strings.Contains(err.Error(), "POST /resources: 403") {
		t.Errorf("CreateResource under a layer: %v", err)
	}
}

func TestReloginOnExpiredSession(t *testing.T) {
	f := newFixture(t)
	ctx := ctx(t)
	ok[[]string](t)(f.c.UserNames(ctx))
	f.srv.ExpireSessions()
	if got := ok[[]string](t)(f.c.UserNames(ctx)); len(got) != 3 {
		t.Errorf("after expiry: %v", got)
	}
	if f.c.Logins() != 2 || f.srv.Hits("POST /signin") != 2 || f.srv.Hits("GET /users") != 3 {
		t.Errorf("logins=%d signins=%d gets=%d, want 2, 2, 3", f.c.Logins(), f.srv.Hits("POST /signin"), f.srv.Hits("GET /users"))
	}
	if f.c.Requests() != 5 {
		t.Errorf("Requests = %d, want 5", f.c.Requests())
	}
}

func TestReloginRetriesOnce(t *testing.T) {
	f := newFixture(t)
	f.srv.FailNext("GET /users/{user}", 5, http.StatusForbidden)
	_, err := f.c.User(ctx(t), "alice")
	if !errors.Is(err, ErrAuth) || handlers.IsTransient(err) {
		t.Errorf("err = %v, want ErrAuth, not transient", err)
	}
	if f.c.Logins() != 2 || f.srv.Hits("GET /users/{user}") != 2 {
		t.Errorf("logins=%d attempts=%d, want 2 and 2", f.c.Logins(), f.srv.Hits("GET /users/{user}"))
	}
}

func TestSignInWithoutCookie(t *testing.T) {
	f := newFixture(t)
	f.srv.FailNext("POST /signin", 1, http.StatusOK)
	if _, err := f.c.ServiceTypes(ctx(t)); !errors.Is(err, ErrAuth) {
		t.Errorf("err = %v, want ErrAuth", err)
	}
	if got := ok[[]string](t)(f.c.ServiceTypes(ctx(t))); len(got) != 10 {
		t.Errorf("next call: %v", got)
	}
}

func TestConcurrentReloginSignsInOnce(t *testing.T) {
	f := newFixture(t)
	ctx := ctx(t)
	ok[[]string](t)(f.c.UserNames(ctx))
	f.srv.ExpireSessions()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := f.c.User(ctx, "alice")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, err)
	}
	if f.c.Logins() != 2 {
		t.Errorf("Logins = %d, want 2", f.c.Logins())
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t)
	ctx := ctx(t)

	_, err := f.c.User(ctx, "nobody")
	var me *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &me) || me.Status != 404 || me.Transient() ||
		me.Op != "GET /users/nobody" || me.Detail != "User name not found." {
		t.Errorf("404: %#v", err)
	}

	f.srv.FailNext("GET /services/types", 1, http.StatusServiceUnavailable)
	if _, err := f.c.ServiceTypes(ctx); !handlers.IsTransient(err) || errors.Is(err, ErrNotFound) {
		t.Errorf("503: %v, want transient", err)
	}

	f.srv.Inject("GET /services/{service}", magpietest.Fault{Delay: time.Minute})
	slow := NewClient(ClientOptions{URL: f.srv.URL(), AdminUser: "admin", AdminPassword: "qwertyqwerty",
		HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}})
	if _, err := slow.Service(ctx, "thredds"); !handlers.IsTransient(err) {
		t.Errorf("timeout: %v, want transient", err)
	}

	f.srv.Inject("GET /resources/{id}", magpietest.Fault{Reset: true, Times: 2})
	if _, err := f.c.Resource(ctx, f.svc); !handlers.IsTransient(err) {
		t.Errorf("reset: %v, want transient", err)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.c.Resource(canceled, f.svc); err == nil || handlers.IsTransient(err) {
		t.Errorf("canceled: %v, want a non-transient error", err)
	}
}

func TestCredentialsNeverInErrors(t *testing.T) {
	f := newFixture(t)
	ctx := ctx(t)
	bad := NewClient(ClientOptions{URL: f.srv.URL(), AdminUser: "admin", AdminPassword: "s3cret-password"})
	_, err := bad.ServiceTypes(ctx)
	if !errors.Is(err, ErrAuth) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad password: %v", err)
	}

	base := strings.Replace(f.srv.URL(), "http://", "http://admin:s3cret-in-url@", 1)
	f.srv.Inject("*", magpietest.Fault{Reset: true, Times: 4})
	withUserinfo := NewClient(ClientOptions{URL: base, AdminUser: "admin", AdminPassword: "s3cret-password"})
	_, err = withUserinfo.ServiceTypes(ctx)
	if err == nil || strings.Contains(err.Error(), "s3cret") || !handlers.IsTransient(err) {
		t.Errorf("reset with credentials in URL: %v", err)
	}

	f.srv.Close()
	_, err = f.c.ServiceTypes(ctx)
	if !handlers.IsTransient(err) || strings.Contains(err.Error(), "qwertyqwerty") {
		t.Errorf("server down: %v", err)
	}
}

func TestCache(t *testing.T) {
	f := newFixture(t)
	ctx := ctx(t)
	ok[[]string](t)(f.c.ServiceTypes(ctx)) // signs in

	// The bare client asks every time.
	before := f.c.Requests()
	for range 3 {
		ok[[]Permission](t)(f.c.UserPermissions(ctx, "alice", f.layer, Effective))
	}
	if n := f.c.Requests() - before; n != 3 || f.c.CacheHits() != 0 {
		t.Errorf("bare client: %d requests, %d hits, want 3 and 0", n, f.c.CacheHits())
	}

	// A cached client asks once per distinct read, whatever the number of files.
	cc := f.c.WithCache()
	before = cc.Requests()
	const files = 20
	for range files {
		ok[string](t)(cc.UserName(ctx, f.aliceID))
		ok[int](t)(cc.UserID(ctx, "alice"))
		ok[[]*Service](t)(cc.ServicesByType(ctx, "geoserver"))
		ok[*Resource](t)(cc.Resource(ctx, f.svc))
		ok[[]Permission](t)(cc.UserPermissions(ctx, "alice", f.layer, Effective))
	}
	if n := cc.Requests() - before; n != 5 {
		t.Errorf("cached: %d requests, want 5", n)
	}
	if cc.CacheHits() != 5*(files-1) {
		t.Errorf("CacheHits = %d, want %d", cc.CacheHits(), 5*(files-1))
	}

	// A write through the cached client makes the next read fresh.
	ok[bool](t)(cc.SetUserPermission(ctx, "alice", f.layer, Permission{Name: "getmap", Access: "allow", Scope: "match"}))
	eff := ok[[]Permission](t)(cc.UserPermissions(ctx, "alice", f.layer, Effective))
	if p, _ := Find(eff, "getmap"); p.Access != "allow" {
		t.Errorf("after write, effective getmap = %+v, want allow", p)
	}
}

func TestParsePermission(t *testing.T) {
	p, err := ParsePermission("read-allow-recursive")
	if err != nil || p != (Permission{Name: "read", Access: "allow", Scope: "recursive"}) || p.String() != "read-allow-recursive" {
		t.Errorf("ParsePermission = %+v, %v", p, err)
	}
	for _, bad := range []string{"read", "read-allow", "read-maybe-match", "read-allow-deep", "-allow-match"} {
		if _, err := ParsePermission(bad); err == nil {
			t.Errorf("ParsePermission(%q): want an error", bad)
		}
	}
}
