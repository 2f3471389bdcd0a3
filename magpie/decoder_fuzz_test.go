package magpie_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cowbird-go/cowbird/magpie"
)

// fuzzPassword is the admin password of the fuzzed clients: it must never
// show in an error, whatever Magpie answers.
const fuzzPassword = "fuzz-admin-pw-7c1e"

// fuzzCookie is the session cookie Sessions.User is asked about.
const fuzzCookie = "fuzz-cookie-b02a"

// cannedMagpie answers every sign-in with a session cookie and every other
// request with status and body, without a network.
type cannedMagpie struct {
	status int
	body   []byte
}

// RoundTrip implements http.RoundTripper.
func (m cannedMagpie) RoundTrip(r *http.Request) (*http.Response, error) {
	resp := &http.Response{StatusCode: m.status, Header: http.Header{}, Request: r,
		Body: io.NopCloser(bytes.NewReader(m.body))}
	if strings.HasSuffix(r.URL.Path, "/signin") {
		resp.StatusCode = http.StatusOK
		resp.Header.Set("Set-Cookie", "auth_tkt=fuzz; Path=/")
		resp.Body = io.NopCloser(strings.NewReader(`{"detail": "Login successful."}`))
	}
	return resp, nil
}

// FuzzMagpieAnswer feeds one Magpie answer (any status, any body) to every
// read of the client and to the session lookup. None may panic; a failure
// is a *magpie.Error; a success needs a 2xx answer; the admin password
// never shows in an error; the cookie shows in one only if Magpie echoed
// it; and a session lookup names a user only from an authenticated 2xx
// session answer.
func FuzzMagpieAnswer(f *testing.F) {
	for _, seed := range []string{
		`{"service_types": ["api", "thredds"]}`,
		`{"services": {"api": {"weaver": {"service_name": "weaver", "service_type": "api", "resource_id": 1,
		  "service_url": "http://weaver", "public_url": null, "permission_names": ["read"], "permissions": []}}}}`,
		`{"service": {"service_name": "weaver", "service_type": "api", "resource_id": 1}}`,
		`{"weaver": {"service_name": "weaver", "service_type": "api", "resource_id": 1, "resources": {
		  "2": {"resource_id": 2, "resource_name": "jobs", "resource_type": "route", "parent_id": 1, "root_service_id": 1,
		        "children": {"3": {"resource_id": 3, "resource_name": "j1", "resource_type": "route", "children": {}}}}}}}`,
		`{"resource": {"resource_id": 2, "resource_name": "jobs", "resource_type": "route", "children": {"x": {}}}}`,
		`{"resources": [{"resource_id": 1, "resource_name": "weaver", "resource_type": "service"}, null]}`,
		`{"user_names": ["alice", "bob"]}`,
		`{"users": [{"user_name": "alice", "user_id": 3, "email": "a@x", "status": 1}, {"user_name": 4}]}`,
		`{"user": {"user_name": "alice", "user_id": 3, "group_names": ["users"], "status": "OK"}}`,
		`{"permissions": [{"name": "read", "access": "allow", "scope": "recursive", "type": "direct", "reason": "user:3:alice"}]}`,
		`{"authenticated": true, "user": {"user_name": "alice", "group_names": ["administrators"]}}`,
		`{"authenticated": "yes", "user": {"user_name": ["admin"]}}`,
		`{"detail": "` + fuzzCookie + `"}`, `{"code": 500, "detail": "boom"}`, `<html>Bad Gateway</html>`,
		`null`, `[]`, `{}`, `{"resources": {"1": null}}`, ``,
	} {
		for _, status := range []uint16{200, 201, 401, 404, 500} {
			f.Add(status, []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, status uint16, body []byte) {
		code := 100 + int(status)%500 // 100-599
		hc := &http.Client{Transport: cannedMagpie{status: code, body: body}}
		ctx := context.Background()
		check := func(call string, err error) {
			t.Helper()
			if err == nil {
				if code < 200 || code > 299 {
					t.Fatalf("%s: success on a %d answer %q", call, code, body)
				}
				return
			}
			var me *magpie.Error
			if !errors.As(err, &me) && !errors.Is(err, magpie.ErrNotFound) && !errors.Is(err, magpie.ErrAuth) {
				t.Fatalf("%s: error %T %v is not a *magpie.Error", call, err, err)
			}
			if strings.Contains(err.Error(), fuzzPassword) {
				t.Fatalf("%s: the admin password is in the error %q", call, err)
			}
			if strings.Contains(err.Error(), fuzzCookie) && !bytes.Contains(body, []byte(fuzzCookie)) {
				t.Fatalf("%s: the cookie is in the error %q", call, err)
			}
		}
		c := magpie.NewClient(magpie.ClientOptions{URL: "http://magpie.test/magpie", AdminUser: "admin",
			AdminPassword: fuzzPassword, HTTPClient: hc})
		// A success hands callers no nil to dereference.
		whole := func(call string, err error, svcs []*magpie.Service, res ...*magpie.Resource) {
			t.Helper()
			check(call, err)
			if err != nil {
				return
			}
			for len(svcs) > 0 || len(res) > 0 {
				if len(svcs) > 0 {
					if svcs[0] == nil {
						t.Fatalf("%s: a nil service from %q", call, body)
					}
					res, svcs = append(res, svcs[0].Resources...), svcs[1:]
					continue
				}
				if res[0] == nil {
					t.Fatalf("%s: a nil resource from %q", call, body)
				}
				res = append(res[1:], res[0].Children...)
			}
		}
		var err error
		_, err = c.ServiceTypes(ctx)
		check("ServiceTypes", err)
		svcs, err := c.Services(ctx)
		whole("Services", err, svcs)
		svcs, err = c.ServicesByType(ctx, "api")
		whole("ServicesByType", err, svcs)
		svc, err := c.Service(ctx, "weaver")
		whole("Service", err, []*magpie.Service{svc})
		svc, err = c.ServiceResources(ctx, "weaver")
		whole("ServiceResources", err, []*magpie.Service{svc})
		res, err := c.Resource(ctx, 2)
		whole("Resource", err, nil, res)
		path, err := c.ResourcePath(ctx, 3)
		whole("ResourcePath", err, nil, path...)
		_, err = c.UserNames(ctx)
		check("UserNames", err)
		_, err = c.Users(ctx)
		check("Users", err)
		_, err = c.User(ctx, "alice")
		check("User", err)
		_, err = c.UserName(ctx, 3)
		if !errors.Is(err, magpie.ErrNotFound) {
			check("UserName", err)
		}
		_, err = c.GroupUsers(ctx, "users")
		check("GroupUsers", err)
		for _, v := range []magpie.View{magpie.Direct, magpie.Inherited, magpie.Resolved, magpie.Effective} {
			_, err = c.UserPermissions(ctx, "alice", 2, v)
			check("UserPermissions", err)
		}
		_, err = c.GroupPermissions(ctx, "users", 2)
		check("GroupPermissions", err)
		svcs, err = c.UserResources(ctx, "alice")
		whole("UserResources", err, svcs)
		svcs, err = c.GroupResources(ctx, "users")
		whole("GroupResources", err, svcs)

		name, groups, err := magpie.NewSessions("http://magpie.test/magpie", hc).User(ctx, fuzzCookie)
		if err != nil {
			check("Sessions.User", err)
			if name != "" || groups != nil {
				t.Fatalf("Sessions.User: %q %v with the error %v", name, groups, err)
			}
		}
		// encoding/json matches keys regardless of case, as it does everywhere.
		if name != "" && (code < 200 || code > 299 || !bytes.Contains(bytes.ToLower(body), []byte(`"authenticated"`))) {
			t.Fatalf("Sessions.User signed in %q from a %d answer %q", name, code, body)
		}
	})
}
