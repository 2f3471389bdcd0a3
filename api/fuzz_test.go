package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fuzzWebhook posts body to path with a JSON content type and checks that
// the answer is 200 or a 4xx: the handlers never fail here, so a 5xx would
// mean bad input escaped validation.
func fuzzWebhook(f *testing.F, path string, seeds []string) {
	for _, s := range seeds {
		f.Add(s)
	}
	h := newFixture(f, nil, Options{}).srv.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 && (rec.Code < 400 || rec.Code > 499) {
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
		}
	})
}

func FuzzUserWebhook(f *testing.F) {
	fuzzWebhook(f, "/webhooks/users", []string{
		`{"event":"created","user_name":"alice","callback_url":""}`,
		`{"event":"deleted","user_name":"alice"}`,
		`{"event":"created","user_name":"../x","callback_url":""}`,
		`{"event":"nope","user_name":"alice"}`,
		`{"event":1}`, `[]`, `null`, ``, `{`, `{"user_name":{"a":[1,2]}}`,
	})
}

func FuzzPermissionWebhook(f *testing.F) {
	fuzzWebhook(f, "/webhooks/permissions", []string{
		`{"event":"created","service_name":null,"service_type":"thredds","resource_id":1,"resource_full_name":"thredds/a/b.nc","name":"read","access":"allow","scope":"match","user":"alice"}`,
		`{"event":"deleted","service_type":"api","resource_id":-1,"resource_full_name":"/a:b","name":"write","access":"deny","scope":"recursive","group":"g"}`,
		`{"event":"created","service_type":"api","resource_id":1e3}`,
		`{"event":"created","service_type":"api","resource_id":99999999999999999999999}`,
		`{"event":"created","resource_id":true}`, `{"event":"deleted","user":""}`, `"x"`, `{}`,
	})
}
