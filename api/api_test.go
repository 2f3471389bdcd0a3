package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHomepage(t *testing.T) {
	f := newFixture(t, nil, Options{})
	for _, path := range []string{"/", "/cowbird", "/cowbird/"} {
		t.Run(path, func(t *testing.T) {
			r := f.call(t, http.MethodGet, path, "")
			r.expect(t, 200, "Get homepage successful.", nil)
			want := map[string]any{
				"title": "Cowbird REST API", "name": "cowbird", "documentation": "https://example.org/cowbird/api",
				"description": "Cowbird is a middleware that manages interactions between various birds of the bird-house stack.",
				"type":        "application/json", "path": "/", "method": "GET", "url": f.ts.URL + path,
			}
			for k, v := range want {
				if r.body[k] != v {
					t.Errorf("%s = %v, want %v", k, r.body[k], v)
				}
			}
			contact, _ := r.body["contact"].(map[string]any)
			if contact["name"] != "Ouranos inc., CRIM" || contact["email"] != "" || contact["url"] != "https://github.com/Ouranosinc/cowbird" {
				t.Errorf("contact = %v", contact)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if r.header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
		})
	}
}

func TestRequestIDKept(t *testing.T) {
	f := newFixture(t, nil, Options{})
	r := f.call(t, http.MethodGet, "/", "", "X-Request-Id", "abc-123")
	if got := r.header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("X-Request-Id = %q", got)
	}
}

func TestVersion(t *testing.T) {
	f := newFixture(t, nil, Options{})
	r := f.call(t, http.MethodGet, "/version", "")
	r.expect(t, 200, "Get version successful.", nil)
	for k, v := range map[string]any{
		"version": "2.6.0", "worker_version": "2.6.0", "daemon_version": "0.1.0-test",
		"version_detail": "Web service version : [2.6.0], worker version : [2.6.0]. Any mismatch can cause misbehavior.",
	} {
		if r.body[k] != v {
			t.Errorf("%s = %v, want %v", k, r.body[k], v)
		}
	}
}

func TestHandlerRoutes(t *testing.T) {
	f := newFixture(t, map[string]error{"resync": errDisk}, Options{})
	r := f.call(t, http.MethodGet, "/handlers", "")
	r.expect(t, 200, "Get handlers successful.", nil)
	got, _ := r.body["handlers"].([]any)
	if want := []any{"FileSystem", "Magpie", "Panicky", "Thredds"}; !slices.Equal(got, want) {
		t.Errorf("handlers = %v, want %v", got, want)
	}

	notFound := map[string]any{"name": "handler_name", "value": 0, "compare": "1", "conditions": map[string]bool{"is_equal": false}}
	badName := map[string]any{"name": "handler_name", "value": "!!!!", "compare": paramRegex.expr,
		"conditions": map[string]bool{"not_empty": true, "matches": false}}
	tests := []struct {
		name, method, path string
		code               int
		detail             string
		param              map[string]any
	}{
		{"detail", "GET", "/handlers/Magpie", 200, "Get handlers successful.", nil},
		{"detail prefixed", "GET", "/cowbird/handlers/Magpie", 200, "Get handlers successful.", nil},
		{"detail bad name", "GET", "/handlers/!!!!", 400, "Invalid handler name.", badName},
		{"detail unknown", "GET", "/handlers/Nope", 404, "Could not find specified handler.", notFound},
		{"detail case-sensitive", "GET", "/handlers/magpie", 404, "Could not find specified handler.", notFound},
		{"detail inactive", "GET", "/handlers/Inactive", 404, "Could not find specified handler.", notFound},
		{"resync bad name", "PUT", "/handlers/!!!!/resync", 400, "Invalid handler name.", badName},
		{"resync unknown", "PUT", "/handlers/Nope/resync", 404, "Could not find specified handler.", notFound},
		{"resync without capability", "PUT", "/handlers/Thredds/resync", 200, "Handler resync successful.", nil},
		{"resync", "PUT", "/handlers/Magpie/resync", 200, "Handler resync successful.", nil},
		{"resync failure", "PUT", "/handlers/FileSystem/resync", 500, detailServerError, nil},
		{"resync panic", "PUT", "/handlers/Panicky/resync", 500, detailServerError, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.call(t, tt.method, tt.path, "")
			r.expect(t, tt.code, tt.detail, tt.param)
		})
	}
	r = f.call(t, "GET", "/handlers/Magpie", "")
	if h, _ := r.body["handler"].(map[string]any); h["name"] != "Magpie" {
		t.Errorf("handler = %v", r.body["handler"])
	}
	if got := f.j.snapshot(); !slices.Equal(got, []string{"Magpie:resync", "FileSystem:resync"}) {
		t.Errorf("resync calls = %v", got)
	}
	if r := f.call(t, "PUT", "/handlers/FileSystem/resync", ""); r.body["exception"] != "Exception" {
		t.Errorf("exception = %v", r.body["exception"])
	}
	if r := f.call(t, "PUT", "/handlers/Panicky/resync", ""); r.body["exception"] != "RuntimeError" {
		t.Errorf("panic exception = %v", r.body["exception"])
	}
}

func TestGenericErrors(t *testing.T) {
	f := newFixture(t, nil, Options{})
	tests := []struct {
		name, method, path string
		code               int
		detail             string
		location           string
	}{
		{"unknown path", "GET", "/random", 404, detailNotFound, ""},
		{"unknown prefixed path", "GET", "/cowbird/random", 404, detailNotFound, ""},
		{"post on get route", "POST", "/json", 405, "predicate mismatch for view swagger_schema_json (request_method = GET)", ""},
		{"delete on webhook", "DELETE", "/webhooks/users", 405, "predicate mismatch for view user_webhook (request_method = POST)", ""},
		{"options", "OPTIONS", "/version", 405, "predicate mismatch for view Version (request_method = GET)", ""},
		{"get on post route", "GET", "/webhooks/users", 404, detailNotFound, ""},
		{"head on post route", "HEAD", "/webhooks/permissions", 404, "", ""},
		{"get on put route", "GET", "/handlers/Magpie/resync", 404, detailNotFound, ""},
		{"trailing slash", "GET", "/handlers/?format=json", 301, "", "/handlers?format=json"},
		{"trailing slash post", "POST", "/webhooks/users/", 301, "", "/webhooks/users"},
		{"trailing slash prefix dropped", "GET", "/cowbird/version/", 301, "", "/version"},
		{"trailing slash no route", "GET", "/nothing/", 404, detailNotFound, ""},
		{"empty handler name", "PUT", "/handlers//resync", 404, detailNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.call(t, tt.method, tt.path, "")
			switch {
			case tt.location != "":
				if r.code != tt.code || r.header.Get("Location") != tt.location {
					t.Errorf("got %d Location %q, want %d %q", r.code, r.header.Get("Location"), tt.code, tt.location)
				}
			case tt.method == "HEAD":
				if r.code != tt.code || r.raw != "" {
					t.Errorf("got %d %q, want %d and no body", r.code, r.raw, tt.code)
				}
			default:
				r.expect(t, tt.code, tt.detail, nil)
				if r.body["path"] == nil || r.body["url"] != f.ts.URL+tt.path || r.body["method"] != tt.method {
					t.Errorf("envelope = %v", r.body)
				}
			}
		})
	}
}

func TestHeadOnGetRoutes(t *testing.T) {
	f := newFixture(t, nil, Options{})
	for _, path := range []string{"/", "/version", "/handlers", "/json", "/api", "/livez"} {
		r := f.call(t, http.MethodHead, path, "")
		if r.code != 200 || r.raw != "" {
			t.Errorf("HEAD %s = %d %q, want 200 and no body", path, r.code, r.raw)
		}
	}
}

func TestNegotiation(t *testing.T) {
	f := newFixture(t, nil, Options{})
	const browser = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"
	tests := []struct {
		name, path string
		headers    []string
		code       int
		want       string // response type in the body; "" for 406
	}{
		{"no accept", "/version", nil, 200, typeJSON},
		{"any", "/version", []string{"Accept", "*/*"}, 200, typeJSON},
		{"empty accept", "/version", []string{"Accept", ""}, 200, typeJSON},
		{"accept first entry", "/version", []string{"Accept", "text/plain;q=0.9, application/json"}, 200, typePlain},
		{"accept html", "/version", []string{"Accept", "text/html"}, 200, typeHTML},
		{"accept app xml", "/version", []string{"Accept", "application/xml"}, 200, typeAppXML},
		{"accept text xml", "/version", []string{"Accept", "text/xml"}, 200, typeTextXML},
		{"browser gets json", "/version", []string{"Accept", "text/html,application/xhtml+xml", "User-Agent", browser}, 200, typeJSON},
		{"browser unsupported gets json", "/version", []string{"Accept", "image/png", "User-Agent", browser}, 200, typeJSON},
		{"format beats accept", "/version?format=xml", []string{"Accept", "text/html"}, 200, typeTextXML},
		{"format beats browser", "/version?format=html", []string{"User-Agent", browser}, 200, typeHTML},
		{"format text", "/version?format=text", nil, 200, typePlain},
		{"format mime", "/version?format=application/xml", nil, 200, typeAppXML},
		{"unknown format ignored", "/version?format=yaml", []string{"Accept", "text/plain"}, 200, typePlain},
		{"format key case-sensitive", "/version?FORMAT=html", nil, 200, typeJSON},
		{"unsupported", "/version", []string{"Accept", "image/png"}, 406, ""},
		{"unsupported unknown path", "/random", []string{"Accept", "image/png"}, 406, ""},
		{"known format avoids 406", "/?format=html", []string{"Accept", "image/png"}, 200, typeHTML},
		{"unsupported case", "/version", []string{"Accept", "Application/JSON"}, 406, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.call(t, http.MethodGet, tt.path, "", tt.headers...)
			if tt.code == 406 {
				r.expect(t, 406, "Unsupported Content-Type in 'Accept' header was specified.", map[string]any{
					"name": "Accept Header or Format Query", "value": firstEntry(tt.headers[1]),
					"compare":    "['application/json', 'text/html', 'text/plain', 'application/xml', 'text/xml']",
					"conditions": map[string]bool{"is_in": false},
				})
				if r.body["type"] != typeJSON {
					t.Errorf("type = %v", r.body["type"])
				}
				return
			}
			if r.code != tt.code {
				t.Fatalf("status = %d; %s", r.code, r.raw)
			}
			ct := r.header.Get("Content-Type")
			switch tt.want {
			case typeJSON, typePlain:
				if !strings.HasPrefix(ct, tt.want) || r.body["type"] != tt.want {
					t.Errorf("Content-Type %q, type %v, want %s", ct, r.body["type"], tt.want)
				}
			case typeHTML:
				want := "Operation successful.<br><h2>Response Details</h2><pre style='word-wrap: break-word; white-space: pre-wrap;'>{\n \"code\": 200,"
				if ct != "text/html; charset=UTF-8" || !strings.HasPrefix(r.raw, want) || !strings.Contains(r.raw, `"type": "text/html"`) {
					t.Errorf("html: %q %q", ct, r.raw)
				}
			case typeAppXML, typeTextXML:
				if ct != "text/xml; charset=UTF-8" || !strings.HasPrefix(r.raw, `<?xml version="1.0" encoding="UTF-8" ?><response><code type="int">200</code>`) ||
					!strings.Contains(r.raw, `<type type="str">`+tt.want+`</type>`) {
					t.Errorf("xml: %q %q", ct, r.raw)
				}
			}
		})
	}
}

func TestRenderErrorsAndLists(t *testing.T) {
	f := newFixture(t, nil, Options{})
	r := f.call(t, http.MethodGet, "/handlers?format=xml", "")
	if !strings.Contains(r.raw, `<handlers type="list"><item type="str">FileSystem</item><item type="str">Magpie</item>`) {
		t.Errorf("xml list: %s", r.raw)
	}
	r = f.call(t, http.MethodGet, "/handlers/Nope?format=xml", "")
	if r.code != 404 || !strings.Contains(r.raw, `<param type="dict"><compare type="str">1</compare><conditions type="dict"><is_equal type="bool">false</is_equal></conditions><name type="str">handler_name</name><value type="int">0</value></param>`) {
		t.Errorf("xml param: %d %s", r.code, r.raw)
	}
	r = f.call(t, http.MethodGet, "/handlers/Nope?format=html", "")
	if r.code != 404 || !strings.HasPrefix(r.raw, "The resource could not be found.<br><h2>Exception Details</h2>") {
		t.Errorf("html error: %d %s", r.code, r.raw)
	}
	r = f.call(t, http.MethodGet, "/handlers/%3Cb%3E?format=html", "")
	if strings.Contains(r.raw, "<b>") {
		t.Errorf("html not escaped: %s", r.raw)
	}
}

func TestHeaderLookup(t *testing.T) {
	r := &http.Request{Header: http.Header{"accept": {"text/html"}, "User_agent": {"Safari"}}}
	if got := header(r, "Accept"); got != "text/html" {
		t.Errorf("Accept = %q", got)
	}
	if got := header(r, "User-Agent"); got != "Safari" {
		t.Errorf("User-Agent = %q", got)
	}
	if got := header(r, "Content-Type"); got != "" {
		t.Errorf("Content-Type = %q", got)
	}
}

func TestProbes(t *testing.T) {
	ready := errors.New("state store not open")
	f := newFixture(t, nil, Options{Ready: func() error { return ready }})
	for _, path := range []string{"/livez", "/healthz", "/cowbird/livez"} {
		r := f.call(t, http.MethodGet, path, "", "Accept", "image/png")
		if r.code != 200 || r.body["status"] != "ok" {
			t.Errorf("%s = %d %s", path, r.code, r.raw)
		}
	}
	r := f.call(t, http.MethodGet, "/readyz", "")
	if r.code != 503 || r.body["error"] != "state store not open" {
		t.Errorf("readyz = %d %s", r.code, r.raw)
	}
	ready = nil
	if r := f.call(t, http.MethodGet, "/readyz", ""); r.code != 200 {
		t.Errorf("readyz = %d %s", r.code, r.raw)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, map[string]error{"user_created": errDisk}, Options{})
	f.call(t, "POST", "/webhooks/users", `{"event":"deleted","user_name":"alice"}`)
	f.call(t, "POST", "/webhooks/users", `{"event":"created","user_name":"bob","callback_url":""}`)
	f.call(t, "POST", "/webhooks/users", `{"event":"nope","user_name":"bob"}`)
	f.call(t, "GET", "/random", "")
	r := f.call(t, http.MethodGet, "/metrics", "", "Accept", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
	if r.code != 200 {
		t.Fatalf("metrics = %d", r.code)
	}
	for _, want := range []string{
		`cowbird_events_received_total{event="user_deleted"} 1`,
		`cowbird_events_received_total{event="user_created"} 1`,
		`cowbird_events_rejected_total{code="400",route="/webhooks/users"} 1`,
		`cowbird_handler_calls_total{event="user_created",handler="FileSystem",outcome="error"} 1`,
		`cowbird_handler_calls_total{event="user_deleted",handler="Magpie",outcome="ok"} 1`,
		`cowbird_dispatch_duration_seconds_count{handler="Magpie"} 2`,
		`cowbird_http_requests_total{code="200",method="POST",route="/webhooks/users"} 1`,
		`cowbird_http_requests_total{code="500",method="POST",route="/webhooks/users"} 1`,
		`cowbird_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`go_goroutines`, `process_`,
	} {
		if !strings.Contains(r.raw, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	f := newFixture(t, nil, Options{BodyLimit: 64})
	body := `{"event":"created","user_name":"` + strings.Repeat("a", 100) + `","callback_url":""}`
	f.call(t, "POST", "/webhooks/users", body).expect(t, 413, detailTooLarge, nil)
	// Without Content-Length the limit applies while reading.
	req, _ := http.NewRequest("POST", f.ts.URL+"/webhooks/users", struct{ *strings.Reader }{strings.NewReader(body)})
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked: status %d", resp.StatusCode)
	}
	form := "event=created&user_name=" + strings.Repeat("a", 100)
	f.call(t, "POST", "/webhooks/users", form, "Content-Type", "application/x-www-form-urlencoded").expect(t, 413, detailTooLarge, nil)
	if got := f.j.snapshot(); len(got) != 0 {
		t.Errorf("handlers called: %v", got)
	}
}

func TestServe(t *testing.T) {
	s := New(Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/cowbird/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET / = %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
