package geoservertest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

type answer struct {
	status      int
	contentType string
	body        string
	header      http.Header
}

// call sends one request to the emulator with the default credentials,
// unless noAuth.
func call(t *testing.T, s *Server, method, rel, body string, noAuth ...bool) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, s.URL()+rel, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if len(noAuth) == 0 {
		req.SetBasicAuth(DefaultUser, DefaultPassword)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), string(b), resp.Header}
}

func (a answer) check(t *testing.T, status int, kind, contains string) {
	t.Helper()
	if a.status != status || !strings.HasPrefix(a.contentType, kind) || !strings.Contains(a.body, contains) {
		t.Fatalf("got %d %s %q; want %d %s containing %q", a.status, a.contentType, a.body, status, kind, contains)
	}
}

const (
	wsBody = `{"workspace": {"name": "alice", "isolated": "True"}}`
	dsBody = `{"dataStore": {"name": "ds", "type": "Directory of spatial files (shapefiles)", "connectionParameters": {"entry": []}}}`
	dsConf = `{"dataStore": {"name": "ds", "connectionParameters": {"entry": [{"@key": "url", "$": "file:///user_workspaces/alice/shapefile_datastore"}]}}}`
	ftBody = `{"featureType": {"name": "roads", "srs": "EPSG:4326", "maxFeatures": 5000}}`
	dsPath = "/rest/workspaces/alice/datastores/ds"
)

func TestWorkspaces(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts Options
		dup  int
	}{
		{"default 401", Options{}, 401},
		{"409", Options{DuplicateWorkspaceStatus: 409}, 409},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(t, tt.opts)
			a := call(t, s, "POST", "/rest/workspaces/", wsBody)
			a.check(t, 201, "text/plain", "alice")
			if loc := a.header.Get("Location"); !strings.HasSuffix(loc, "/geoserver/rest/workspaces/alice") {
				t.Fatalf("Location = %q", loc)
			}
			call(t, s, "POST", "/rest/workspaces", wsBody).check(t, tt.dup, "text/html", "Workspace &#39;alice&#39; already exists")
			if uri, _ := s.Namespace("alice"); uri != "http://alice" {
				t.Fatalf("namespace = %q", uri)
			}
			call(t, s, "POST", "/rest/workspaces/alice/datastores", dsBody).check(t, 201, "text/plain", "ds")
			call(t, s, "DELETE", "/rest/workspaces/alice", "").check(t, 403, "text/html", "Workspace not empty")
			call(t, s, "DELETE", "/rest/workspaces/alice?recurse=true", "").check(t, 200, "", "")
			call(t, s, "DELETE", "/rest/workspaces/alice?recurse=true", "").check(t, 404, "text/html", "Workspace &#39;alice&#39; not found")
			if len(s.Workspaces()) != 0 {
				t.Fatalf("workspaces = %v", s.Workspaces())
			}
			if _, ok := s.Namespace("alice"); ok {
				t.Fatal("namespace left behind")
			}
		})
	}
}

func TestStrictTrailingSlash(t *testing.T) {
	s := NewServer(t, Options{StrictTrailingSlash: true})
	call(t, s, "POST", "/rest/workspaces/", wsBody).check(t, 404, "text/plain", "No endpoint")
	call(t, s, "POST", "/rest/workspaces", wsBody).check(t, 201, "text/plain", "alice")
}

func TestDatastores(t *testing.T) {
	s := NewServer(t, Options{})
	call(t, s, "POST", "/rest/workspaces/alice/datastores", dsBody).check(t, 500, "text/plain", "NullPointerException")
	call(t, s, "POST", "/rest/workspaces/", wsBody)
	call(t, s, "PUT", dsPath, dsConf).check(t, 404, "text/plain", "No such datastore: alice,ds")
	call(t, s, "POST", "/rest/workspaces/alice/datastores", dsBody).check(t, 201, "text/plain", "ds")
	call(t, s, "POST", "/rest/workspaces/alice/datastores", dsBody).check(t, 500, "text/plain", "Store 'ds' already exists in workspace 'alice'")
	call(t, s, "PUT", dsPath, dsConf).check(t, 200, "", "")
	ds, ok := s.Datastore("alice", "ds")
	if u, _ := ds.Param("url"); !ok || u != "file:///user_workspaces/alice/shapefile_datastore" || ds.Type != "Directory of spatial files (shapefiles)" {
		t.Fatalf("data store = %+v", ds)
	}
	call(t, s, "POST", "/rest/workspaces/alice/datastores", `{"dataStore": `).check(t, 400, "text/html", "Could not parse")
}

func TestFeatureTypes(t *testing.T) {
	dir := t.TempDir()
	s := NewServer(t, Options{PathMap: map[string]string{"/user_workspaces": dir}})
	call(t, s, "POST", dsPath+"/featuretypes", ftBody).check(t, 404, "text/plain", "No such data store: alice,ds")
	call(t, s, "POST", "/rest/workspaces/", wsBody)
	call(t, s, "POST", "/rest/workspaces/alice/datastores", dsBody)
	call(t, s, "PUT", dsPath, dsConf)

	// The shapefile is not there yet: GeoServer's 400 until it appears.
	call(t, s, "POST", dsPath+"/featuretypes", ftBody).check(t, 400, "text/html", "no attributes were specified")
	d := filepath.Join(dir, "alice", "shapefile_datastore")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "roads.shp"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a := call(t, s, "POST", dsPath+"/featuretypes", ftBody)
	a.check(t, 201, "text/plain", "")
	if loc := a.header.Get("Location"); !strings.HasSuffix(loc, dsPath+"/featuretypes/roads") {
		t.Fatalf("Location = %q", loc)
	}
	if got := s.Layers("alice"); !slices.Equal(got, []string{"roads"}) {
		t.Fatalf("layers = %v", got)
	}
	if ft, ok := s.FeatureType("alice", "ds", "roads"); !ok || ft.SRS != "EPSG:4326" || ft.MaxFeatures != 5000 {
		t.Fatalf("feature type = %+v", ft)
	}
	if ds, _ := s.Datastore("alice", "ds"); !slices.Equal(ds.FeatureTypes, []string{"roads"}) {
		t.Fatalf("data store feature types = %v", ds.FeatureTypes)
	}
	call(t, s, "POST", dsPath+"/featuretypes", ftBody).check(t, 500, "text/plain", "already exists")

	call(t, s, "DELETE", dsPath+"/featuretypes/roads", "").check(t, 403, "text/html", "referenced by layer")
	call(t, s, "DELETE", dsPath+"/featuretypes/nope?recurse=true", "").check(t, 404, "text/plain", "No such feature type: alice,ds,nope")
	call(t, s, "DELETE", "/rest/workspaces/alice/datastores/other/featuretypes/roads?recurse=true", "").
		check(t, 404, "text/plain", "No such data store: alice,other")
	call(t, s, "DELETE", dsPath+"/featuretypes/roads?recurse=true", "").check(t, 200, "", "")
	if got := s.Layers("alice"); len(got) != 0 {
		t.Fatalf("layers = %v", got)
	}
}

func TestAuth(t *testing.T) {
	s := NewServer(t, Options{User: "root", Password: "pw"})
	for _, a := range []answer{
		call(t, s, "POST", "/rest/workspaces/", wsBody, true),
		call(t, s, "POST", "/rest/workspaces/", wsBody), // default credentials are wrong here
	} {
		a.check(t, 401, "text/html", "Unauthorized")
		if got := a.header.Get("WWW-Authenticate"); got != `Basic realm="GeoServer Realm"` {
			t.Fatalf("WWW-Authenticate = %q", got)
		}
	}
	if len(s.Workspaces()) != 0 {
		t.Fatal("unauthorized request changed state")
	}
}

func TestFaults(t *testing.T) {
	s := NewServer(t, Options{})
	s.SetFault(RouteCreateWorkspace, Fault{Status: 503, Times: 2})
	s.SetFault(AnyRoute, Fault{Status: 500, Body: "it's broken"})
	call(t, s, "POST", "/rest/workspaces/", wsBody).check(t, 503, "text/plain", "Service Unavailable")
	call(t, s, "POST", "/rest/workspaces/", wsBody).check(t, 503, "text/plain", "Service Unavailable")
	// The route's fault is used up; AnyRoute's applies now.
	call(t, s, "POST", "/rest/workspaces/", wsBody).check(t, 500, "text/plain", "it's broken")
	s.SetFault(AnyRoute, Fault{Status: 409, Body: "it's a conflict"})
	call(t, s, "DELETE", "/rest/workspaces/x", "").check(t, 409, "text/html", "it&#39;s a conflict")
	s.ClearFaults()
	call(t, s, "POST", "/rest/workspaces/", wsBody).check(t, 201, "text/plain", "alice")

	var statuses []int
	for _, r := range s.Requests() {
		statuses = append(statuses, r.Status)
	}
	if !slices.Equal(statuses, []int{503, 503, 500, 409, 201}) {
		t.Fatalf("recorded statuses = %v", statuses)
	}
	if r := s.Requests()[4]; r.Method != "POST" || r.Path != "/geoserver/rest/workspaces/" || r.Body != wsBody ||
		r.ContentType != "application/json" {
		t.Fatalf("recorded request = %+v", r)
	}
}

func TestLatencyAndDown(t *testing.T) {
	s := New(Options{}) // no testing.T needed, as in demo mode
	defer s.Close()
	s.SetFault(AnyRoute, Fault{Latency: time.Hour, Times: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL()+"/rest/workspaces/", strings.NewReader(wsBody))
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout", err)
	}

	s.SetDown(true)
	req, _ = http.NewRequestWithContext(context.Background(), "POST", s.URL()+"/rest/workspaces/", strings.NewReader(wsBody))
	req.SetBasicAuth(DefaultUser, DefaultPassword)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("down server answered %d", resp.StatusCode)
	}
	s.SetDown(false)
	call(t, s, "POST", "/rest/workspaces/", wsBody).check(t, 201, "text/plain", "alice")
}

func TestCloseEndsLatency(t *testing.T) {
	s := New(Options{})
	s.SetFault(AnyRoute, Fault{Latency: time.Hour})
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(s.URL()+"/rest/workspaces/", "application/json", strings.NewReader(wsBody))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	// Close must not wait for the hour, whether or not the request has arrived.
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung on a delayed request")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("request hung after Close")
	}
}

func TestBadOptions(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "Options.DuplicateWorkspaceStatus") {
			t.Fatalf("recover = %v", r)
		}
	}()
	New(Options{DuplicateWorkspaceStatus: 500})
}

// TestReads: the read-only routes answer GeoServer's JSON (an empty list
// as "", one element as an object) and its 404s.
func TestReads(t *testing.T) {
	s := NewServer(t, Options{})
	call(t, s, http.MethodGet, "/rest/workspaces/alice", "").check(t, 404, "text/plain", "No such workspace: 'alice' found")
	call(t, s, http.MethodGet, "/rest/workspaces/alice/layers", "").check(t, 404, "text/plain", "No such workspace")
	call(t, s, http.MethodPost, "/rest/workspaces", wsBody).check(t, 201, "text/plain", "alice")
	call(t, s, http.MethodGet, "/rest/workspaces/alice", "").check(t, 200, "application/json", `{"workspace":{"isolated":true,"name":"alice"}}`)
	call(t, s, http.MethodGet, dsPath, "").check(t, 404, "text/plain", "No such datastore: alice,ds")
	call(t, s, http.MethodGet, dsPath+"/featuretypes", "").check(t, 404, "text/plain", "No such data store: alice,ds")
	call(t, s, http.MethodGet, "/rest/workspaces/alice/layers", "").check(t, 200, "application/json", `{"layers":""}`)
	call(t, s, http.MethodPost, "/rest/workspaces/alice/datastores", dsBody).check(t, 201, "text/plain", "ds")
	call(t, s, http.MethodPut, dsPath, dsConf).check(t, 200, "", "")
	call(t, s, http.MethodGet, dsPath, "").check(t, 200, "application/json",
		`"connectionParameters":{"entry":[{"$":"file:///user_workspaces/alice/shapefile_datastore","@key":"url"}]}`)
	call(t, s, http.MethodGet, dsPath+"/featuretypes", "").check(t, 200, "application/json", `{"featureTypes":""}`)
	call(t, s, http.MethodPost, dsPath+"/featuretypes", ftBody).check(t, 201, "text/plain", "")
	call(t, s, http.MethodGet, dsPath+"/featuretypes", "").check(t, 200, "application/json", `{"featureTypes":{"featureType":{"name":"roads"}}}`)
	call(t, s, http.MethodPost, dsPath+"/featuretypes", strings.Replace(ftBody, "roads", "lakes", 1)).check(t, 201, "text/plain", "")
	call(t, s, http.MethodGet, "/rest/workspaces/alice/layers", "").check(t, 200, "application/json",
		`{"layers":{"layer":[{"name":"lakes"},{"name":"roads"}]}}`)
	call(t, s, http.MethodGet, "/rest/workspaces/alice", "", true).check(t, 401, "text/html", "")
}
