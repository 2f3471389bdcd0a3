package geoserver

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/geoserver/geoservertest"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/sirupsen/logrus"
)

const (
	testUser     = "admin"
	testPassword = "s3cret-pw"
)

// setup starts an emulator mapping /user_workspaces to a temp dir and a
// client for it; it returns the dir.
func setup(t *testing.T, opts geoservertest.Options) (*geoservertest.Server, *Client, string) {
	t.Helper()
	dir := t.TempDir()
	opts.User, opts.Password = testUser, testPassword
	if opts.PathMap == nil {
		opts.PathMap = map[string]string{"/user_workspaces": dir}
	}
	srv := geoservertest.NewServer(t, opts)
	c := NewClient(ClientOptions{URL: srv.URL(), User: testUser, Password: testPassword})
	return srv, c, dir
}

// addShapefile creates the .shp of name in ws's data store directory.
func addShapefile(t *testing.T, dir, ws, name string) {
	t.Helper()
	d := filepath.Join(dir, ws, "shapefile_datastore")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, name+".shp"), []byte("shp"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestUserLifecycle(t *testing.T) {
	ctx := context.Background()
	srv, c, dir := setup(t, geoservertest.Options{})

	if err := c.CreateWorkspace(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateDatastore(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if got := srv.Workspaces(); !slices.Equal(got, []string{"alice"}) {
		t.Fatalf("workspaces = %v", got)
	}
	if uri, ok := srv.Namespace("alice"); !ok || uri != "http://alice" {
		t.Fatalf("namespace = %q, %v", uri, ok)
	}
	ds, ok := srv.Datastore("alice", "shapefile_datastore_alice")
	if !ok {
		t.Fatal("no data store")
	}
	want := []geoservertest.Param{
		{Key: "charset", Value: "UTF-8"},
		{Key: "filetype", Value: "shapefile"},
		{Key: "create spatial index", Value: "true"},
		{Key: "memory mapped buffer", Value: "true"},
		{Key: "timezone", Value: "GMT"},
		{Key: "enable spatial index", Value: "true"},
		{Key: "namespace", Value: "http://shapefile_datastore_alice"},
		{Key: "cache and reuse memory maps", Value: "true"},
		{Key: "url", Value: "file:///user_workspaces/alice/shapefile_datastore"},
		{Key: "fstype", Value: "shape"},
	}
	if ds.Type != "Directory of spatial files (shapefiles)" || !ds.Enabled || !slices.Equal(ds.Params, want) {
		t.Fatalf("data store = %+v", ds)
	}

	// A name with several dots keeps all but the extension.
	addShapefile(t, dir, "alice", "a.b.c")
	if err := c.PublishShapefile(ctx, "alice", "a.b.c"); err != nil {
		t.Fatal(err)
	}
	if got := srv.Layers("alice"); !slices.Equal(got, []string{"a.b.c"}) {
		t.Fatalf("layers = %v", got)
	}
	ft, _ := srv.FeatureType("alice", "shapefile_datastore_alice", "a.b.c")
	if ft.SRS != "EPSG:4326" || ft.ProjectionPolicy != "REPROJECT_TO_DECLARED" || ft.MaxFeatures != 5000 ||
		ft.NumDecimals != 6 || !strings.Contains(ft.NativeCRS, `AUTHORITY["EPSG","4326"]`) {
		t.Fatalf("feature type = %+v", ft)
	}

	if err := c.RemoveShapefile(ctx, "alice", "a.b.c"); err != nil {
		t.Fatal(err)
	}
	if got := srv.Layers("alice"); len(got) != 0 {
		t.Fatalf("layers after remove = %v", got)
	}
	if err := c.RemoveWorkspace(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if got := srv.Workspaces(); len(got) != 0 {
		t.Fatalf("workspaces after remove = %v", got)
	}
	if _, ok := srv.Namespace("alice"); ok {
		t.Fatal("namespace left behind")
	}

	var got []string
	for _, r := range srv.Requests() {
		if r.ContentType != "application/json" {
			t.Errorf("%s %s: Content-Type %q", r.Method, r.Path, r.ContentType)
		}
		got = append(got, r.Method+" "+strings.TrimPrefix(r.Path, "/geoserver")+"?"+r.Query)
	}
	wantReqs := []string{
		"POST /rest/workspaces/?",
		"POST /rest/workspaces/alice/datastores?",
		"PUT /rest/workspaces/alice/datastores/shapefile_datastore_alice?",
		"POST /rest/workspaces/alice/datastores/shapefile_datastore_alice/featuretypes?",
		"DELETE /rest/workspaces/alice/datastores/shapefile_datastore_alice/featuretypes/a.b.c?recurse=true",
		"DELETE /rest/workspaces/alice?recurse=true",
	}
	if !slices.Equal(got, wantReqs) {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantReqs, "\n"))
	}
	if body := srv.Requests()[0].Body; body != `{"workspace":{"name":"alice","isolated":"True"}}` {
		t.Fatalf("workspace body = %s", body)
	}
	if body := srv.Requests()[1].Body; body != `{"dataStore":{"name":"shapefile_datastore_alice","type":"Directory of spatial files (shapefiles)","connectionParameters":{"entry":[]}}}` {
		t.Fatalf("data store body = %s", body)
	}
	for _, op := range allOps {
		if n := c.Requests(op); n != 1 {
			t.Errorf("Requests(%s) = %d, want 1", op, n)
		}
	}
}

func TestContainerWorkspaceDirOption(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := geoservertest.NewServer(t, geoservertest.Options{PathMap: map[string]string{"/data/ws": dir}})
	c := NewClient(ClientOptions{URL: srv.URL(), User: geoservertest.DefaultUser, Password: geoservertest.DefaultPassword,
		ContainerWorkspaceDir: "/data/ws"})
	if err := errors.Join(c.CreateWorkspace(ctx, "bob"), c.CreateDatastore(ctx, "bob")); err != nil {
		t.Fatal(err)
	}
	ds, _ := srv.Datastore("bob", DatastoreName("bob"))
	if u, _ := ds.Param("url"); u != "file:///data/ws/bob/shapefile_datastore" {
		t.Fatalf("url = %q", u)
	}
	addShapefile(t, dir, "bob", "roads")
	if err := c.PublishShapefile(ctx, "bob", "roads"); err != nil {
		t.Fatal(err)
	}
}

func TestDuplicatesTolerated(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, http.StatusConflict} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			ctx := context.Background()
			srv, c, _ := setup(t, geoservertest.Options{DuplicateWorkspaceStatus: status})
			for range 2 {
				if err := c.CreateWorkspace(ctx, "alice"); err != nil {
					t.Fatal(err)
				}
			}
			reqs := srv.Requests()
			if last := reqs[len(reqs)-1]; last.Status != status {
				t.Fatalf("duplicate answered %d, want %d", last.Status, status)
			}
			// A replayed data store creation reconfigures the existing store.
			for range 2 {
				if err := c.CreateDatastore(ctx, "alice"); err != nil {
					t.Fatal(err)
				}
			}
			if c.Requests(OpCreateDatastore) != 2 || c.Requests(OpConfigureDatastore) != 2 {
				t.Fatalf("create %d, configure %d", c.Requests(OpCreateDatastore), c.Requests(OpConfigureDatastore))
			}
			if ds, _ := srv.Datastore("alice", DatastoreName("alice")); len(ds.Params) != 10 {
				t.Fatalf("params = %v", ds.Params)
			}
		})
	}
}

func TestErrorClassification(t *testing.T) {
	ctx := context.Background()
	type tc struct {
		name      string
		fault     *geoservertest.Fault
		route     geoservertest.Route
		call      func(*Client) error
		transient bool
		status    int
		notFound  bool
		msg       string
	}
	createWS := func(c *Client) error { return c.CreateWorkspace(ctx, "alice") }
	cases := []tc{
		{name: "wrong credentials", fault: &geoservertest.Fault{Status: 401}, route: geoservertest.AnyRoute, call: createWS,
			status: 401, msg: "lacks valid authentication credentials"},
		{name: "500 text", fault: &geoservertest.Fault{Status: 500, Body: "boom: disk full"}, route: geoservertest.RouteCreateWorkspace,
			call: createWS, status: 500, msg: "Operation [_create_workspace_request] failed : boom: disk full"},
		{name: "502", fault: &geoservertest.Fault{Status: 502}, route: geoservertest.AnyRoute, call: createWS, transient: true, status: 502,
			msg: "Operation [_create_workspace_request] failed with HTTP error code [502]"},
		{name: "503", fault: &geoservertest.Fault{Status: 503}, route: geoservertest.AnyRoute, call: createWS, transient: true, status: 503},
		{name: "409 not a duplicate", fault: &geoservertest.Fault{Status: 409, Body: "conflict"}, route: geoservertest.AnyRoute,
			call: createWS, transient: true, status: 409},
		{name: "403 on workspace delete", fault: &geoservertest.Fault{Status: 403}, route: geoservertest.RouteDeleteWorkspace,
			call: func(c *Client) error { return c.RemoveWorkspace(ctx, "alice") }, status: 403, msg: "Make sure `recurse` is set to `true`"},
		{name: "403 elsewhere", fault: &geoservertest.Fault{Status: 403}, route: geoservertest.RoutePublishFeatureType,
			call: func(c *Client) error { return c.PublishShapefile(ctx, "alice", "x") }, transient: true, status: 403},
		{name: "missing workspace on delete",
			call: func(c *Client) error { return c.RemoveWorkspace(ctx, "nobody") }, status: 404, notFound: true,
			msg: "Operation [_remove_workspace_request] failed: Geoserver workspace was not found"},
		{name: "missing data store on publish",
			call: func(c *Client) error { return c.PublishShapefile(ctx, "nobody", "x") }, status: 404, notFound: true,
			msg: ":Geoserver datastore was not found"},
		{name: "missing feature type on remove",
			call: func(c *Client) error { return c.RemoveShapefile(ctx, "alice", "nothing") }, status: 404, notFound: true,
			msg: ":Geoserver feature type was not found"},
		{name: "data store in missing workspace",
			call: func(c *Client) error { return c.CreateDatastore(ctx, "nobody") }, status: 500, msg: "NullPointerException"},
		{name: "shapefile absent (400)",
			call: func(c *Client) error { return c.PublishShapefile(ctx, "alice", "absent") }, transient: true, status: 400},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			srv, c, _ := setup(t, geoservertest.Options{})
			if err := errors.Join(c.CreateWorkspace(ctx, "alice"), c.CreateDatastore(ctx, "alice")); err != nil {
				t.Fatal(err)
			}
			if tt.fault != nil {
				srv.SetFault(tt.route, *tt.fault)
			}
			err := tt.call(c)
			if err == nil {
				t.Fatal("no error")
			}
			if handlers.IsTransient(err) != tt.transient {
				t.Fatalf("transient = %v, want %v: %v", !tt.transient, tt.transient, err)
			}
			var ge *GeoserverError
			var re *RequestError
			switch {
			case errors.As(err, &ge) && !tt.transient:
				if ge.Status != tt.status {
					t.Fatalf("status %d, want %d", ge.Status, tt.status)
				}
			case errors.As(err, &re) && tt.transient:
				if re.Status != tt.status {
					t.Fatalf("status %d, want %d", re.Status, tt.status)
				}
			default:
				t.Fatalf("error type %T: %v", err, err)
			}
			if errors.Is(err, ErrNotFound) != tt.notFound {
				t.Fatalf("errors.Is(ErrNotFound) = %v: %v", !tt.notFound, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
}

func TestTransportFailuresAreTransient(t *testing.T) {
	ctx := context.Background()
	t.Run("down then up", func(t *testing.T) {
		srv, c, _ := setup(t, geoservertest.Options{})
		srv.SetDown(true)
		err := c.CreateWorkspace(ctx, "alice")
		var re *RequestError
		if !errors.As(err, &re) || re.Status != 0 || !handlers.IsTransient(err) ||
			!strings.Contains(err.Error(), "Connection to Geoserver failed using [") {
			t.Fatalf("err = %v", err)
		}
		srv.SetDown(false)
		if err := c.CreateWorkspace(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		srv := geoservertest.NewServer(t, geoservertest.Options{})
		srv.SetFault(geoservertest.RouteCreateWorkspace, geoservertest.Fault{Latency: time.Hour, Times: 1})
		c := NewClient(ClientOptions{URL: srv.URL(), User: geoservertest.DefaultUser, Password: geoservertest.DefaultPassword,
			HTTPClient: &http.Client{Timeout: 50 * time.Millisecond}})
		if err := c.CreateWorkspace(ctx, "alice"); !handlers.IsTransient(err) {
			t.Fatalf("err = %v, want transient", err)
		}
		if err := c.CreateWorkspace(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("context canceled", func(t *testing.T) {
		_, c, _ := setup(t, geoservertest.Options{})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := c.CreateWorkspace(cctx, "alice"); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("first N fail then succeed", func(t *testing.T) {
		srv, c, _ := setup(t, geoservertest.Options{})
		srv.SetFault(geoservertest.RouteCreateWorkspace, geoservertest.Fault{Status: 503, Times: 2})
		for i := range 2 {
			if err := c.CreateWorkspace(ctx, "alice"); !handlers.IsTransient(err) {
				t.Fatalf("attempt %d: err = %v", i, err)
			}
		}
		if err := c.CreateWorkspace(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if got := srv.Workspaces(); !slices.Equal(got, []string{"alice"}) || c.Requests(OpCreateWorkspace) != 3 {
			t.Fatalf("workspaces %v after %d requests", got, c.Requests(OpCreateWorkspace))
		}
	})
}

func TestCredentialsNeverLeak(t *testing.T) {
	srv := geoservertest.NewServer(t, geoservertest.Options{User: testUser, Password: testPassword})
	var logs bytes.Buffer
	l := logrus.New()
	l.SetOutput(&logs)
	l.SetLevel(logrus.DebugLevel)
	// The password is both in the URL and in the options.
	u := strings.Replace(srv.URL(), "http://", "http://"+testUser+":"+testPassword+"@", 1)
	c := NewClient(ClientOptions{URL: u, User: testUser, Password: testPassword, Log: logrus.NewEntry(l)})
	ctx := context.Background()
	var errs []error
	errs = append(errs, c.CreateWorkspace(ctx, "alice"), c.CreateWorkspace(ctx, "alice")) // success, tolerated
	srv.SetFault(geoservertest.AnyRoute, geoservertest.Fault{Status: 401})
	errs = append(errs, c.RemoveWorkspace(ctx, "alice"))
	srv.SetDown(true)
	errs = append(errs, c.RemoveWorkspace(ctx, "alice"))
	if errs[2] == nil || errs[3] == nil {
		t.Fatalf("errors = %v", errs)
	}
	bad := NewClient(ClientOptions{URL: "http//" + testUser + ":" + testPassword + "@nowhere"})
	errs = append(errs, bad.CreateWorkspace(ctx, "alice"))
	all := errors.Join(errs...).Error() + logs.String()
	if strings.Contains(all, testPassword) {
		t.Fatalf("password leaked:\n%s", all)
	}
	if !strings.Contains(logs.String(), "already exists") {
		t.Fatalf("no warning for the duplicate in logs:\n%s", logs.String())
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	bad := NewClient(ClientOptions{URL: "geoserver:8080"})
	if err := bad.CreateWorkspace(ctx, "alice"); err == nil || !strings.Contains(err.Error(), "ClientOptions.URL") {
		t.Fatalf("err = %v", err)
	}
	c := NewClient(ClientOptions{URL: "http://127.0.0.1:1/geoserver"})
	if err := c.PublishShapefile(ctx, "alice", ""); err == nil || !strings.Contains(err.Error(), "shapefile name is empty") {
		t.Fatalf("err = %v", err)
	}
	if err := c.CreateWorkspace(ctx, ""); err == nil || !strings.Contains(err.Error(), "workspace name is empty") {
		t.Fatalf("err = %v", err)
	}
	if c.Requests(OpCreateWorkspace)+c.Requests(OpPublishShapefile) != 0 {
		t.Fatal("requests sent for bad input")
	}
}

func TestClassify(t *testing.T) {
	dupHTML := "<p><b>Message</b> Workspace &#39;alice&#39; already exists</p>"
	cases := []struct {
		name   string
		op     Op
		status int
		body   string
		want   string // "" success, "dup", or the error text
	}{
		{"200", OpRemoveWorkspace, 200, "", ""},
		{"201", OpCreateWorkspace, 201, "alice", ""},
		{"duplicate 401", OpCreateWorkspace, 401, dupHTML, "dup"},
		{"duplicate 409", OpCreateWorkspace, 409, dupHTML, "dup"},
		{"401", OpCreateWorkspace, 401, "Unauthorized",
			"Operation [_create_workspace_request] failed because it lacks valid authentication credentials."},
		{"403 remove workspace", OpRemoveWorkspace, 403, "",
			"Operation [_remove_workspace_request] failed : Make sure `recurse` is set to `true` to delete workspace"},
		{"404 workspace", OpRemoveWorkspace, 404, "Workspace &#39;x&#39; not found",
			"Operation [_remove_workspace_request] failed: Geoserver workspace was not found"},
		{"404 data store", OpPublishShapefile, 404, "No such data store: a,b",
			"Operation [_publish_shapefile_request] failed :Geoserver datastore was not found"},
		{"404 feature type", OpRemoveShapefile, 404, "No such feature type: a,b,c",
			"Operation [_remove_shapefile_request] failed :Geoserver feature type was not found"},
		{"404 datastore spelled together is retried", OpConfigureDatastore, 404, "No such datastore: a,b",
			"Operation [_configure_datastore_request] failed with HTTP error code [404]"},
		{"500", OpCreateDatastore, 500, "Store 'x' already exists in workspace 'a'",
			"Operation [_create_datastore_request] failed : Store 'x' already exists in workspace 'a'"},
		{"500 long body is cut", OpCreateDatastore, 500, strings.Repeat("x", 5000),
			"Operation [_create_datastore_request] failed : " + strings.Repeat("x", maxQuoted) + "…"},
		{"400", OpPublishShapefile, 400, "", "Operation [_publish_shapefile_request] failed with HTTP error code [400]"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			err := classify(tt.op, tt.status, tt.body)
			switch tt.want {
			case "":
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			case "dup":
				if !errors.Is(err, errDuplicateWorkspace) {
					t.Fatalf("err = %v", err)
				}
			default:
				if err == nil || err.Error() != tt.want {
					t.Fatalf("err = %v\nwant  %s", err, tt.want)
				}
			}
		})
	}
	if err := classify(OpCreateDatastore, 500, "Store 'x' already exists"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate store: %v does not match ErrExists", err)
	}
}
