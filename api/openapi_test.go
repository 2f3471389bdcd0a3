package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestSwaggerMatchesRoutes(t *testing.T) {
	f := newFixture(t, nil, Options{URL: "https://host.example/cowbird"})
	r := f.call(t, http.MethodGet, "/cowbird/json", "", "X-Forwarded-Proto", "https")
	if r.code != 200 {
		t.Fatalf("GET /json = %d", r.code)
	}
	var doc struct {
		Swagger string
		Host    string
		Schemes []string
		Info    struct {
			Title, Version, Description string
			Contact                     map[string]string
		}
		Tags  []struct{ Name, Description string }
		Paths map[string]map[string]struct {
			Parameters []struct{ Name, In string }
			Responses  map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(r.raw), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Swagger != "2.0" || doc.Info.Title != "Cowbird REST API" || doc.Info.Version != "2.6.0" ||
		doc.Host != "https://host.example/cowbird" || len(doc.Schemes) != 1 || doc.Schemes[0] != "https" ||
		doc.Info.Contact["name"] != "Ouranos inc., CRIM" || doc.Info.Description != apiDescription {
		t.Errorf("header fields: %+v", doc)
	}
	var tagNames []string
	for _, tag := range doc.Tags {
		tagNames = append(tagNames, tag.Name)
		if tag.Description == "" {
			t.Errorf("tag %s has no description", tag.Name)
		}
	}
	if strings.Join(tagNames, ",") != "API,Webhooks,Handlers" {
		t.Errorf("tags = %v", tagNames)
	}

	// Every registered echo route is documented, and every documented
	// operation is registered.
	registered := map[string]bool{}
	for _, rt := range f.srv.e.Routes() {
		method := rt.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		key := strings.ToLower(method) + " " + swaggerPath(rt.Path)
		registered[key] = true
		if _, ok := doc.Paths[swaggerPath(rt.Path)][strings.ToLower(method)]; !ok {
			t.Errorf("route %s %s is not in the document", rt.Method, rt.Path)
		}
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if !registered[method+" "+path] {
				t.Errorf("documented %s %s is not registered", method, path)
			}
			if len(op.Responses["200"]) == 0 {
				t.Errorf("%s %s documents no 200", method, path)
			}
		}
	}
	if len(doc.Paths) != 13 {
		t.Errorf("documented paths = %d, want 13", len(doc.Paths))
	}
	resync := doc.Paths["/handlers/{handler_name}/resync"]["put"]
	if len(resync.Parameters) == 0 || resync.Parameters[0].Name != "handler_name" || resync.Parameters[0].In != "path" {
		t.Errorf("resync parameters = %+v", resync.Parameters)
	}
	for _, path := range []string{"/webhooks/users", "/webhooks/permissions"} {
		op := doc.Paths[path]["post"]
		hasBody := false
		for _, p := range op.Parameters {
			hasBody = hasBody || p.In == "body"
		}
		if !hasBody || len(op.Responses["422"]) == 0 || len(op.Responses["500"]) == 0 {
			t.Errorf("%s lacks body schema or error responses: %+v", path, op)
		}
	}
	if r := f.call(t, http.MethodPost, "/json", ""); r.code != 405 {
		t.Errorf("POST /json = %d", r.code)
	}
}

func TestAPIPage(t *testing.T) {
	f := newFixture(t, nil, Options{})
	r := f.call(t, http.MethodGet, "/cowbird/api", "")
	if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /api = %d %s", r.code, r.header.Get("Content-Type"))
	}
	for _, want := range []string{"<title>Cowbird REST API</title>", `fetch("json")`} {
		if !strings.Contains(r.raw, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(r.raw, "://") {
		t.Error("page loads something from another origin")
	}
}
