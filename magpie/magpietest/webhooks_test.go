package magpietest

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	params := map[string]any{"user.name": "bob", "resource.id": 12, "service.name": nil}
	payload := map[string]any{
		"id":            "{{resource.id}}",
		"quoted":        "'{{resource.id}}'",
		"dquoted":       `"{{resource.id}}"`,
		"svc":           "{{service.name}}",
		"inline":        "Hello {{user.name}} on {{resource.id}} of {{service.name}}",
		"unknown":       "{{callback_url}}",
		"list":          []any{"{{user.name}}", 3, true},
		"{{user.name}}": "key",
		"number":        7,
	}
	got := render(payload, params)
	want := map[string]any{
		"id": 12, "quoted": "12", "dquoted": "12", "svc": nil,
		"inline": "Hello bob on 12 of None", "unknown": "{{callback_url}}",
		"list": []any{"bob", 3, true}, "bob": "key", "number": 7,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("render =\n%v\nwant\n%v", got, want)
	}
}

func TestSetWebhooksNamesBadFields(t *testing.T) {
	s := New(Options{})
	err := s.SetWebhooks([]Webhook{
		{Name: "ok", Action: "create_user", Method: "POST", URL: "http://cowbird:7000/webhooks/users"},
		{Name: "a", Action: "make_coffee", Method: "POST", URL: "http://x"},
		{Name: "b", Action: "delete_user", Method: "BREW", URL: "http://x"},
		{Name: "c", Action: "delete_user", Method: "POST", URL: "cowbird/webhooks"},
	})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"webhooks[1].action", "webhooks[2].method", "webhooks[3].url"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// TestCowbirdWebhookPayloads checks the bird-house payloads (spec A.1.1,
// A.1.3) for users and permissions fired through the REST API.
func TestCowbirdWebhookPayloads(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	s := NewServer(t, Options{Webhooks: append(CowbirdWebhooks(rcv.URL), CowbirdGroupWebhooks(rcv.URL)...)})
	svc, _, lyr := geoTree(t, s)
	a := newAPI(t, s)

	code, body := a.do("POST", "/users", map[string]any{"user_name": "test_user", "email": "test@test.com",
		"password": "qwertyqwerty", "group_name": "users"})
	if code != 201 {
		t.Fatalf("create user: %d %v", code, body)
	}
	user := body["user"].(map[string]any)
	if !reflect.DeepEqual(user["group_names"], []any{"anonymous", "users"}) || user["status"] != "OK" {
		t.Errorf("user = %v", user)
	}
	perm := map[string]any{"permission": map[string]any{"name": "describefeaturetype", "access": "allow", "scope": "match"}}
	if code, body := a.do("POST", "/users/test_user/resources/"+strconv.Itoa(lyr)+"/permissions", perm); code != 201 {
		t.Fatalf("create permission: %d %v", code, body)
	}
	if code, body := a.do("POST", "/users/test_user/resources/"+strconv.Itoa(svc)+"/permissions", perm); code != 201 {
		t.Fatalf("create service permission: %d %v", code, body)
	}
	if code, body := a.do("POST", "/groups/users/resources/"+strconv.Itoa(lyr)+"/permissions",
		map[string]any{"permission_name": "getmap-deny-match"}); code != 201 {
		t.Fatalf("create group permission: %d %v", code, body)
	}
	if code, _ := a.do("DELETE", "/users/test_user", nil); code != 200 {
		t.Fatalf("delete user: %d", code)
	}
	wait(t, s)

	got := rcv.got()
	if len(got) != 5 {
		t.Fatalf("got %d webhooks, want 5: %v", len(got), got)
	}
	cb, _ := got[0]["callback_url"].(string)
	if got[0]["event"] != "created" || got[0]["user_name"] != "test_user" || !strings.HasPrefix(cb, s.URL()+"/tmp/") {
		t.Errorf("create_user payload = %v", got[0])
	}
	wantLayer := map[string]any{"event": "created", "service_name": nil, "service_type": "geoserver",
		"resource_id": float64(lyr), "resource_full_name": "Espace_Vert", "name": "describefeaturetype",
		"access": "allow", "scope": "match", "user": "test_user"}
	if !reflect.DeepEqual(got[1], wantLayer) {
		t.Errorf("layer permission payload = %v\nwant %v", got[1], wantLayer)
	}
	if got[2]["service_name"] != "geoserver" || got[2]["resource_full_name"] != "geoserver" {
		t.Errorf("service permission payload = %v", got[2])
	}
	if got[3]["group"] != "users" || got[3]["access"] != "deny" || got[3]["user"] != nil {
		t.Errorf("group permission payload = %v", got[3])
	}
	if !reflect.DeepEqual(got[4], map[string]any{"event": "deleted", "user_name": "test_user"}) {
		t.Errorf("delete_user payload = %v", got[4])
	}
	if len(s.UserPermissions("test_user", lyr)) != 0 {
		t.Error("deleting the user must drop its permissions")
	}
}

// TestPutOverwriteAndDuplicate: an overwrite fires delete then create; an
// exact duplicate is 409 and fires nothing (spec A.1.4, A.3.5).
func TestPutOverwriteAndDuplicate(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	s := NewServer(t, Options{Webhooks: CowbirdWebhooks(rcv.URL), QuietSeeding: true})
	_, _, lyr := geoTree(t, s)
	must[int](t)(s.AddUser("alice", ""))
	check(t, s.SetUserPermission("alice", lyr, "getmap-allow-match"))
	a := newAPI(t, s)
	path := "/users/alice/resources/" + strconv.Itoa(lyr) + "/permissions"

	if code, _ := a.do("POST", path, map[string]any{"permission": "getmap-deny-match"}); code != 409 {
		t.Errorf("POST on an existing name = %d, want 409", code)
	}
	if code, _ := a.do("PUT", path, map[string]any{"permission": "getmap-deny-match"}); code != 200 {
		t.Errorf("PUT overwrite = %d, want 200", code)
	}
	if code, _ := a.do("PUT", path, map[string]any{"permission": "getmap-deny-match"}); code != 409 {
		t.Errorf("PUT duplicate = %d, want 409", code)
	}
	wait(t, s)
	got := rcv.got()
	if len(got) != 2 || got[0]["event"] != "deleted" || got[0]["access"] != "allow" ||
		got[1]["event"] != "created" || got[1]["access"] != "deny" {
		t.Errorf("webhooks = %v, want delete(allow) then create(deny)", got)
	}
	if p := s.UserPermissions("alice", lyr); !reflect.DeepEqual(p, []string{"getmap-deny-match"}) {
		t.Errorf("state = %v", p)
	}
}

// TestPatchPermissions: path auto-creation, webhooks only for real changes,
// removal by name (spec A.3.5).
func TestPatchPermissions(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	s := NewServer(t, Options{Webhooks: CowbirdWebhooks(rcv.URL), QuietSeeding: true})
	must[int](t)(s.AddService("thredds", "thredds"))
	must[int](t)(s.AddUser("test_user", ""))
	a := newAPI(t, s)
	patch := func(p any, action string) (int, map[string]any) {
		return a.do("PATCH", "/permissions", map[string]any{"permissions": []any{
			map[string]any{"resource_name": "thredds", "resource_type": "service"},
			map[string]any{"resource_name": "workspaces", "resource_type": "directory"},
			map[string]any{"resource_name": "file_abc", "resource_type": "file",
				"permission": p, "user": "test_user", "group": nil, "action": action},
		}})
	}
	read := map[string]any{"name": "read", "access": "allow", "scope": "recursive"}
	if code, body := patch(read, "create"); code != 200 || body["detail"] != "Update permissions successful." {
		t.Fatalf("patch: %d %v", code, body)
	}
	file, ok := s.Lookup("thredds", "workspaces", "file_abc")
	if !ok {
		t.Fatal("PATCH did not create the path")
	}
	if code, _ := patch(read, "create"); code != 200 {
		t.Errorf("identical patch = %d, want 200", code)
	}
	wait(t, s)
	if n := len(rcv.got()); n != 1 {
		t.Errorf("after create + identical create: %d webhooks, want 1", n)
	}
	if code, _ := patch(map[string]any{"name": "read", "access": "deny", "scope": "match"}, "remove"); code != 200 {
		t.Errorf("remove = %d", code)
	}
	if code, _ := patch(read, "remove"); code != 200 {
		t.Errorf("remove of an absent row = %d, want 200", code)
	}
	wait(t, s)
	got := rcv.got()
	if len(got) != 2 || got[1]["event"] != "deleted" || got[1]["resource_id"] != float64(file) {
		t.Errorf("webhooks = %v, want created then deleted on %d", got, file)
	}
	if p := s.UserPermissions("test_user", file); len(p) != 0 {
		t.Errorf("remove left %v", p)
	}

	bad := []struct {
		name string
		body any
		code int
	}{
		{"not a list", map[string]any{"permissions": "x"}, 422},
		{"first is not a service", map[string]any{"permissions": []any{
			map[string]any{"resource_name": "d", "resource_type": "directory", "permission": "read", "user": "test_user"}}}, 400},
		{"unknown user", map[string]any{"permissions": []any{
			map[string]any{"resource_name": "thredds", "resource_type": "service", "permission": "read", "user": "nobody"}}}, 400},
		{"no permission", map[string]any{"permissions": []any{
			map[string]any{"resource_name": "thredds", "resource_type": "service"}}}, 400},
		{"type not allowed", map[string]any{"permissions": []any{
			map[string]any{"resource_name": "thredds", "resource_type": "service"},
			map[string]any{"resource_name": "w", "resource_type": "workspace", "permission": "read", "user": "test_user"}}}, 400},
	}
	for _, tc := range bad {
		if code, body := a.do("PATCH", "/permissions", tc.body); code != tc.code {
			t.Errorf("%s: %d %v, want %d", tc.name, code, body, tc.code)
		}
	}
}

// TestCallbackURL: a hit flips the status to 2 once; reuse is 404; an expired
// token is 410 (spec A.1.5).
func TestCallbackURL(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	s := NewServer(t, Options{Webhooks: CowbirdWebhooks(rcv.URL)})
	must[int](t)(s.AddUser("alice", ""))
	must[int](t)(s.AddUser("bob", ""))
	wait(t, s)
	urls := map[string]string{}
	for _, b := range rcv.got() {
		urls[b["user_name"].(string)] = b["callback_url"].(string)
	}
	head := func(u string) int {
		resp, err := http.Head(u)
		check(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := head(urls["alice"]); code != 200 {
		t.Errorf("HEAD callback = %d", code)
	}
	if st, _ := s.UserStatus("alice"); st != 2 {
		t.Errorf("status after callback = %d, want 2", st)
	}
	if code := head(urls["alice"]); code != 404 {
		t.Errorf("reused callback = %d, want 404", code)
	}
	s.ExpireTokens()
	resp, err := http.Get(urls["bob"])
	check(t, err)
	resp.Body.Close()
	if resp.StatusCode != 410 {
		t.Errorf("expired callback = %d, want 410", resp.StatusCode)
	}
	if st, _ := s.UserStatus("bob"); st != 1 {
		t.Errorf("bob status = %d, want 1", st)
	}
}

func TestCreateUserDeliveryFailureFlagsUser(t *testing.T) {
	rcv := newReceiver(t, http.StatusInternalServerError)
	s := NewServer(t, Options{Webhooks: CowbirdWebhooks(rcv.URL)})
	must[int](t)(s.AddUser("alice", ""))
	wait(t, s)
	if st, _ := s.UserStatus("alice"); st != 2 {
		t.Errorf("status = %d, want 2 after a failed create_user delivery", st)
	}
	d := s.Deliveries()
	if len(d) != 1 || d[0].Status != 500 || s.Delivered() != 1 {
		t.Errorf("deliveries = %+v", d)
	}
}

func TestWebhookFaults(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	s := NewServer(t, Options{Webhooks: CowbirdWebhooks(rcv.URL)})
	s.FaultWebhooks(DropWebhooks, 1)
	must[int](t)(s.AddUser("dropped", ""))
	s.FaultWebhooks(DuplicateWebhooks, 1)
	must[int](t)(s.AddUser("twice", ""))
	s.FaultWebhooks(ReorderWebhooks, 1)
	must[int](t)(s.AddUser("late", ""))
	must[int](t)(s.AddUser("early", ""))
	wait(t, s)
	var names []string
	for _, b := range rcv.got() {
		names = append(names, b["user_name"].(string))
	}
	if want := []string{"twice", "twice", "early", "late"}; !reflect.DeepEqual(names, want) {
		t.Errorf("received %v, want %v", names, want)
	}
	if d := s.Deliveries(); len(d) != 5 || !d[0].Dropped || s.Delivered() != 4 {
		t.Errorf("deliveries = %+v", d)
	}
	var body map[string]any
	check(t, json.Unmarshal(s.Deliveries()[0].Body, &body))
	if body["user_name"] != "dropped" {
		t.Errorf("dropped delivery body = %v", body)
	}
}

func TestQuietSeeding(t *testing.T) {
	rcv := newReceiver(t, http.StatusOK)
	s := NewServer(t, Options{Webhooks: CowbirdWebhooks(rcv.URL), QuietSeeding: true})
	_, _, lyr := geoTree(t, s)
	must[int](t)(s.AddUser("alice", ""))
	check(t, s.SetUserPermission("alice", lyr, "getmap"))
	check(t, s.DeleteUserPermission("alice", lyr, "getmap"))
	check(t, s.DeleteUser("alice"))
	wait(t, s)
	if n := len(s.Deliveries()); n != 0 {
		t.Errorf("quiet seeding fired %d webhooks", n)
	}
}
