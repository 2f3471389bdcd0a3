package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
)

func typeErr(name string, value any, compare string) map[string]any {
	return map[string]any{"name": name, "value": value, "compare": compare,
		"conditions": map[string]bool{"not_none": value != nil, "is_type": false}}
}

func regexErr(name, value string, expr *pattern) map[string]any {
	return map[string]any{"name": name, "value": value, "compare": expr.expr,
		"conditions": map[string]bool{"not_empty": value != "", "matches": false}}
}

func TestUserWebhook(t *testing.T) {
	isIn := func(v string) map[string]any {
		return map[string]any{"name": "event", "value": v, "compare": "['created', 'deleted']", "conditions": map[string]bool{"is_in": false}}
	}
	tests := []struct {
		name, body, ctype string
		code              int
		detail            string
		param             map[string]any
		want              *handlers.UserEvent
	}{
		{name: "created", body: `{"event":"created","user_name":"alice","callback_url":"http://magpie/cb"}`,
			code: 200, detail: detailUserOK, want: &handlers.UserEvent{Action: "created", UserName: "alice", CallbackURL: "http://magpie/cb"}},
		{name: "created empty callback", body: `{"event":"created","user_name":"a.b-c_d e","callback_url":""}`,
			code: 200, detail: detailUserOK, want: &handlers.UserEvent{Action: "created", UserName: "a.b-c_d e"}},
		{name: "deleted ignores callback", body: `{"event":"deleted","user_name":"alice","callback_url":5}`,
			code: 200, detail: detailUserOK, want: &handlers.UserEvent{Action: "deleted", UserName: "alice"}},
		{name: "json charset", body: `{"event":"deleted","user_name":"alice"}`, ctype: "application/json; charset=utf-8",
			code: 200, detail: detailUserOK, want: &handlers.UserEvent{Action: "deleted", UserName: "alice"}},
		{name: "form", body: "event=created&user_name=bob&callback_url=", ctype: "application/x-www-form-urlencoded",
			code: 200, detail: detailUserOK, want: &handlers.UserEvent{Action: "created", UserName: "bob"}},
		{name: "missing event", body: `{"user_name":"alice"}`, code: 422, detail: detailInvalidValue, param: typeErr("event", nil, "Type[str]")},
		{name: "empty body", body: "", ctype: "application/json", code: 422, detail: detailInvalidValue, param: typeErr("event", nil, "Type[str]")},
		{name: "event not string", body: `{"event":1,"user_name":"alice"}`, code: 422, detail: detailInvalidValue, param: typeErr("event", 1, "Type[str]")},
		{name: "event bad format", body: `{"event":"cre ated!","user_name":"alice"}`, code: 422, detail: detailInvalidValue, param: regexErr("event", "cre ated!", paramRegex)},
		{name: "event empty", body: `{"event":"","user_name":"alice"}`, code: 422, detail: detailInvalidValue, param: regexErr("event", "", paramRegex)},
		{name: "event unknown", body: `{"event":"updated","user_name":"alice"}`, code: 400, detail: detailUserBadRequest, param: isIn("updated")},
		{name: "event case", body: `{"event":"Created","user_name":"alice"}`, code: 400, detail: detailUserBadRequest, param: isIn("Created")},
		{name: "missing user", body: `{"event":"deleted"}`, code: 422, detail: detailInvalidValue, param: typeErr("user_name", nil, "Type[str]")},
		{name: "user traversal", body: `{"event":"deleted","user_name":"../etc"}`, code: 422, detail: detailInvalidValue, param: regexErr("user_name", "../etc", paramRegex)},
		{name: "user slash", body: `{"event":"deleted","user_name":"a/b"}`, code: 422, detail: detailInvalidValue, param: regexErr("user_name", "a/b", paramRegex)},
		{name: "user trailing newline", body: `{"event":"deleted","user_name":"alice\n"}`, code: 422, detail: detailInvalidValue, param: regexErr("user_name", "alice\n", paramRegex)},
		{name: "user list", body: `{"event":"deleted","user_name":["a"]}`, code: 422, detail: detailInvalidValue, param: typeErr("user_name", `["a"]`, "Type[str]")},
		{name: "created without callback", body: `{"event":"created","user_name":"alice"}`, code: 422, detail: detailInvalidValue, param: typeErr("callback_url", nil, "Type[str]")},
		{name: "callback null", body: `{"event":"created","user_name":"alice","callback_url":null}`, code: 422, detail: detailInvalidValue, param: typeErr("callback_url", nil, "Type[str]")},
		{name: "not json", body: `{"event":`, ctype: "application/json", code: 400, detail: "Key ''event'' could not be extracted from 'POST' of type 'application/json'"},
		{name: "json array", body: `["event"]`, code: 400, detail: "Key ''event'' could not be extracted from 'POST' of type 'application/json'"},
		{name: "json null", body: `null`, code: 400, detail: "Key ''event'' could not be extracted from 'POST' of type 'application/json'"},
		{name: "json trailing data", body: `{"event":"deleted","user_name":"a"} {}`, code: 400, detail: "Key ''event'' could not be extracted from 'POST' of type 'application/json'"},
		{name: "json whitespace", body: `  `, ctype: "application/json", code: 400, detail: "Key ''event'' could not be extracted from 'POST' of type 'application/json'"},
		{name: "json sent as text", body: `{"event":"deleted","user_name":"alice"}`, ctype: "text/plain", code: 422, detail: detailInvalidValue, param: typeErr("event", nil, "Type[str]")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil, Options{})
			var hdr []string
			if tt.ctype != "" {
				hdr = []string{"Content-Type", tt.ctype}
			}
			r := f.call(t, http.MethodPost, "/webhooks/users", tt.body, hdr...)
			r.expect(t, tt.code, tt.detail, tt.param)
			if tt.want == nil {
				if got := f.j.snapshot(); len(got) != 0 {
					t.Errorf("rejected event reached handlers: %v", got)
				}
				return
			}
			name := "user_" + string(tt.want.Action)
			if got := f.j.snapshot(); !slices.Equal(got, []string{"FileSystem:" + name, "Magpie:" + name}) {
				t.Errorf("calls = %v", got)
			}
			if got := f.j.events[0]; got != *tt.want {
				t.Errorf("event = %+v, want %+v", got, *tt.want)
			}
		})
	}
}

func TestPermissionWebhook(t *testing.T) {
	const valid = `"service_name":"thredds","service_type":"thredds","resource_id":42,` +
		`"resource_full_name":"/thredds/birdhouse/file.nc","resource_display_name":"file.nc","name":"read","access":"allow","scope":"recursive"`
	tests := []struct {
		name, body string
		code       int
		detail     string
		param      map[string]any
		want       *handlers.PermissionEvent
	}{
		{name: "created user", body: `{"event":"created",` + valid + `,"user":"alice","group":null}`, code: 200, detail: detailPermOK,
			want: &handlers.PermissionEvent{Action: "created", ServiceName: "thredds", ServiceType: "thredds", ResourceID: 42,
				ResourceFullName: "/thredds/birdhouse/file.nc", ResourceDisplayName: "file.nc", PermName: "read", Access: "allow", Scope: "recursive", User: "alice"}},
		{name: "deleted group nulls", body: `{"event":"deleted","service_name":null,"service_type":"api","resource_id":-3,` +
			`"resource_full_name":"catalog/private-dir/workspace:file0","name":"write","access":"deny","scope":"match","group":"users"}`, code: 200, detail: detailPermOK,
			want: &handlers.PermissionEvent{Action: "deleted", ServiceType: "api", ResourceID: -3, ResourceFullName: "catalog/private-dir/workspace:file0",
				PermName: "write", Access: "deny", Scope: "match", Group: "users"}},
		{name: "event unknown", body: `{"event":"patched",` + valid + `,"user":"a"}`, code: 400, detail: detailPermBadRequest,
			param: map[string]any{"name": "event", "value": "patched", "compare": "['created', 'deleted']", "conditions": map[string]bool{"is_in": false}}},
		{name: "service_name number", body: `{"event":"created",` + strings.Replace(valid, `"service_name":"thredds"`, `"service_name":3`, 1) + `,"user":"a"}`,
			code: 422, detail: detailInvalidValue, param: map[string]any{"name": "service_name", "value": 3, "compare": "Type[str]", "conditions": map[string]bool{"is_type": false}}},
		{name: "service_type missing", body: `{"event":"created","resource_id":1,"user":"a"}`, code: 422, detail: detailInvalidValue, param: typeErr("service_type", nil, "Type[str]")},
		{name: "resource_id string", body: `{"event":"created",` + strings.Replace(valid, `42`, `"42"`, 1) + `,"user":"a"}`,
			code: 422, detail: detailInvalidValue, param: typeErr("resource_id", "42", "Type[int]")},
		{name: "resource_id float", body: `{"event":"created",` + strings.Replace(valid, `42`, `4.2`, 1) + `,"user":"a"}`,
			code: 422, detail: detailInvalidValue, param: typeErr("resource_id", 4.2, "Type[int]")},
		{name: "resource_id bool", body: `{"event":"created",` + strings.Replace(valid, `42`, `true`, 1) + `,"user":"a"}`,
			code: 422, detail: detailInvalidValue, param: typeErr("resource_id", true, "Type[int]")},
		{name: "resource_id missing", body: `{"event":"created",` + strings.Replace(valid, `"resource_id":42,`, ``, 1) + `,"user":"a"}`,
			code: 422, detail: detailInvalidValue, param: typeErr("resource_id", nil, "Type[int]")},
		{name: "full name trailing slash", body: `{"event":"created",` + strings.Replace(valid, `file.nc"`, `file.nc/"`, 1) + `,"user":"a"}`,
			code: 422, detail: detailInvalidValue, param: regexErr("resource_full_name", "/thredds/birdhouse/file.nc/", resourceNameRegex)},
		{name: "full name dotdot", body: `{"event":"created",` + strings.Replace(valid, `birdhouse`, `..`, 1) + `,"user":"a"}`,
			code: 422, detail: detailInvalidValue, param: regexErr("resource_full_name", "/thredds/../file.nc", resourceNameRegex)},
		{name: "display name list", body: `{"event":"created",` + strings.Replace(valid, `"file.nc"`, `[1]`, 1) + `,"user":"a"}`,
			code: 422, detail: detailInvalidValue, param: map[string]any{"name": "resource_display_name", "value": "[1]", "compare": "Type[str]", "conditions": map[string]bool{"is_type": false}}},
		{name: "name bad", body: `{"event":"created",` + strings.Replace(valid, `"read"`, `"read-"`, 1) + `,"user":"a"}`,
			code: 422, detail: detailInvalidValue, param: regexErr("name", "read-", paramRegex)},
		{name: "access missing", body: `{"event":"created",` + strings.Replace(valid, `"access":"allow",`, ``, 1) + `,"user":"a"}`,
			code: 422, detail: detailInvalidValue, param: typeErr("access", nil, "Type[str]")},
		{name: "scope bad", body: `{"event":"created",` + strings.Replace(valid, `"recursive"`, `""`, 1) + `,"user":"a"}`,
			code: 422, detail: detailInvalidValue, param: regexErr("scope", "", paramRegex)},
		{name: "user number", body: `{"event":"created",` + valid + `,"user":7}`,
			code: 422, detail: detailInvalidValue, param: map[string]any{"name": "user", "value": 7, "compare": "Type[str]", "conditions": map[string]bool{"is_type": false}}},
		{name: "no principal", body: `{"event":"created",` + valid + `,"user":"","group":null}`, code: 400, detail: detailPermBadRequest,
			param: map[string]any{"name": "user/group", "value": false, "conditions": map[string]bool{"is_true": false}}},
		{name: "not an object", body: `"created"`, code: 400, detail: "Key ''event'' could not be extracted from 'POST' of type 'application/json'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil, Options{})
			r := f.call(t, http.MethodPost, "/cowbird/webhooks/permissions", tt.body)
			r.expect(t, tt.code, tt.detail, tt.param)
			if r.body["path"] != "/webhooks/permissions" {
				t.Errorf("path = %v", r.body["path"])
			}
			if tt.want == nil {
				if got := f.j.snapshot(); len(got) != 0 {
					t.Errorf("rejected event reached handlers: %v", got)
				}
				return
			}
			name := "permission_" + string(tt.want.Action)
			if got := f.j.snapshot(); !slices.Equal(got, []string{"FileSystem:" + name, "Magpie:" + name}) {
				t.Errorf("calls = %v", got)
			}
			if got := f.j.events[0]; got != *tt.want {
				t.Errorf("event = %+v, want %+v", got, *tt.want)
			}
		})
	}
}

// callbacks records the URLs Options.Callback is called with, and whether
// their context was already done; it answers err.
type callbacks struct {
	mu     sync.Mutex
	urls   []string
	ctxErr []error
	err    error
}

func (cb *callbacks) call(ctx context.Context, url string) error {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	cb.urls = append(cb.urls, url)
	cb.ctxErr = append(cb.ctxErr, ctx.Err())
	return cb.err
}

func (cb *callbacks) got() []string {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return append([]string(nil), cb.urls...)
}

func TestUserWebhookDispatchFailure(t *testing.T) {
	const cbURL = "https://magpie.example/magpie/tmp/token123"
	tests := []struct {
		name, fail, body string
		callback         bool
	}{
		{"created fails", "user_created", `{"event":"created","user_name":"alice","callback_url":"CB"}`, true},
		{"created fails no callback url", "user_created", `{"event":"created","user_name":"alice","callback_url":""}`, false},
		{"deleted fails", "user_deleted", `{"event":"deleted","user_name":"alice","callback_url":"CB"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb := &callbacks{}
			f := newFixture(t, map[string]error{tt.fail: errDisk}, Options{Callback: cb.call})
			body := strings.ReplaceAll(tt.body, "CB", cbURL)
			r := f.call(t, http.MethodPost, "/webhooks/users", body)
			r.expect(t, 500, "Failed to handle user webhook event.", nil)
			exc, _ := r.body["exception"].(string)
			if !strings.Contains(exc, "FileSystem") || !strings.Contains(exc, errDisk.Error()) {
				t.Errorf("exception = %q", exc)
			}
			wh, _ := r.body["webhook"].(map[string]any)
			if wh["user_name"] != "alice" || wh["event"] == nil {
				t.Errorf("webhook = %v", r.body["webhook"])
			}
			// Magpie still ran after FileSystem failed.
			if got := f.j.snapshot(); len(got) != 2 || !strings.HasPrefix(got[1], "Magpie:") {
				t.Errorf("calls = %v", got)
			}
			var want []string
			if tt.callback {
				want = []string{cbURL}
			}
			if got := cb.got(); !slices.Equal(got, want) {
				t.Errorf("callbacks = %v, want %v", got, want)
			}
			if tt.callback && cb.ctxErr[0] != nil {
				t.Errorf("callback context: %v", cb.ctxErr[0])
			}
		})
	}
	t.Run("success sends no callback", func(t *testing.T) {
		cb := &callbacks{}
		f := newFixture(t, nil, Options{Callback: cb.call})
		f.call(t, http.MethodPost, "/webhooks/users", `{"event":"created","user_name":"alice","callback_url":"`+cbURL+`"}`).
			expect(t, 200, detailUserOK, nil)
		if got := cb.got(); len(got) != 0 {
			t.Errorf("callbacks = %v", got)
		}
	})
	t.Run("failed callback is logged without its url and swallowed", func(t *testing.T) {
		cb := &callbacks{err: errors.New("magpie HEAD " + cbURL + ": connection refused")}
		f := newFixture(t, map[string]error{"user_created": errDisk}, Options{Callback: cb.call})
		f.call(t, http.MethodPost, "/webhooks/users", `{"event":"created","user_name":"alice","callback_url":"`+cbURL+`"}`).
			expect(t, 500, "Failed to handle user webhook event.", nil)
		var warned bool
		for _, e := range f.logs.AllEntries() {
			line, _ := e.String()
			if strings.Contains(line, "token123") {
				t.Errorf("log holds the callback url: %s", line)
			}
			if e.Message == "magpie callback for failed user creation" {
				warned = e.Level == logrus.WarnLevel && strings.Contains(line, "connection refused")
			}
		}
		if !warned {
			t.Error("no warning for the failed callback")
		}
	})
	t.Run("no callback configured", func(t *testing.T) {
		f := newFixture(t, map[string]error{"user_created": errDisk}, Options{})
		f.call(t, http.MethodPost, "/webhooks/users", `{"event":"created","user_name":"alice","callback_url":"not a url"}`).
			expect(t, 500, "Failed to handle user webhook event.", nil)
	})
}

func TestPermissionWebhookDispatchFailure(t *testing.T) {
	f := newFixture(t, map[string]error{"permission_deleted": errDisk}, Options{})
	r := f.call(t, http.MethodPost, "/webhooks/permissions", `{"event":"deleted","service_type":"api","resource_id":1,`+
		`"resource_full_name":"api/x","name":"read","access":"allow","scope":"match","user":"alice"}`)
	r.expect(t, 500, detailServerError, nil)
	if r.body["exception"] != "WebhookDispatchException" {
		t.Errorf("exception = %v", r.body["exception"])
	}
	if _, ok := r.body["webhook"]; ok {
		t.Error("permission 500 echoes the webhook")
	}
}

func TestDispatchDetachedFromRequest(t *testing.T) {
	f := newFixture(t, nil, Options{DispatchTimeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/webhooks/users", strings.NewReader(`{"event":"deleted","user_name":"alice"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status = %d %s", rec.Code, rec.Body)
	}
	if want := []error{nil, nil}; !reflect.DeepEqual(f.j.ctxErr, want) {
		t.Errorf("handler ctx errors = %v, want %v", f.j.ctxErr, want)
	}
}

func TestFormFieldsAndQuery(t *testing.T) {
	f := newFixture(t, nil, Options{})
	// A form body reads the query string too, as the original's request.params.
	r := f.call(t, http.MethodPost, "/webhooks/users?event=deleted", "user_name=carol&format=xml",
		"Content-Type", "application/x-www-form-urlencoded")
	if r.code != 200 || !strings.Contains(r.raw, `<type type="str">text/xml</type>`) {
		t.Errorf("form: %d %s", r.code, r.raw)
	}
	r = f.call(t, http.MethodPost, "/webhooks/permissions", "event=created&service_type=api&resource_id=1",
		"Content-Type", "application/x-www-form-urlencoded")
	r.expect(t, 422, detailInvalidValue, typeErr("resource_id", "1", "Type[int]"))
}

// retrying is a dispatcher whose handler failed transiently: the journal
// keeps the event for a retry.
type retrying struct{ submitted int }

func (r *retrying) Submit(context.Context, handlers.Event) (uint64, error) {
	r.submitted++
	return 1, errors.Join(&handlers.HandlerError{Handler: "FileSystem", Err: errors.New("magpie down"), Retrying: true})
}

func (r *retrying) Resync(context.Context, string) error { return nil }

// TestWebhookRetryingIsAccepted: an event the journal retries is answered
// 202, and Magpie's failure callback is not called (the user is not failed).
func TestWebhookRetryingIsAccepted(t *testing.T) {
	cb := &callbacks{}
	d := &retrying{}
	ts := httptest.NewServer(New(Options{Dispatcher: d, Callback: cb.call}).Handler())
	t.Cleanup(ts.Close)
	for path, body := range map[string]string{
		"/webhooks/users": `{"event":"created","user_name":"alice","callback_url":"https://magpie/tmp/x"}`,
		"/webhooks/permissions": `{"event":"created","service_type":"api","resource_id":7,"resource_full_name":"/a/b",` +
			`"name":"read","access":"allow","scope":"match","user":"alice"}`,
	} {
		resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || !strings.Contains(fmt.Sprint(out["detail"]), "will retry") {
			t.Errorf("%s = %d %v, want 202", path, resp.StatusCode, out)
		}
	}
	if d.submitted != 2 || len(cb.got()) != 0 {
		t.Fatalf("submitted %d, callbacks %v: want 2 and none", d.submitted, cb.got())
	}
}

// TestUserNameTooLongForAWorkspace is refused at the edge.
func TestUserNameTooLongForAWorkspace(t *testing.T) {
	f := newFixture(t, nil, Options{})
	name := strings.Repeat("a", 256)
	r := f.call(t, http.MethodPost, "/webhooks/users", `{"event":"created","user_name":"`+name+`","callback_url":""}`)
	r.expect(t, 422, detailInvalidValue, nil)
	if got := f.j.snapshot(); len(got) != 0 {
		t.Fatalf("handlers ran: %v", got)
	}
	f.call(t, http.MethodPost, "/webhooks/users", `{"event":"created","user_name":"`+name[:255]+`","callback_url":""}`).
		expect(t, 200, detailUserOK, nil)
}
