package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cowbird-go/cowbird/geoserver"
	"github.com/cowbird-go/cowbird/geoserver/geoservertest"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// tree makes the bird-house trees under dir with one public WPS output.
func tree(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"user_workspaces", "jupyterhub_user_data", "wpsoutputs/hummingbird"} {
		must(t, os.MkdirAll(filepath.Join(dir, sub), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(dir, "wpsoutputs/hummingbird/report.txt"), []byte("public"), 0o644))
}

const fileSystemEntry = `  FileSystem:
    active: true
    priority: 1
    workspace_dir: %[1]s/user_workspaces
    jupyterhub_user_data_dir: %[1]s/jupyterhub_user_data
    wps_outputs_dir: %[1]s/wpsoutputs
`

// TestStartsWhileMagpieRefusesTheSignIn: the daemon starts, links the
// public outputs, reports the problem in /readyz and the metrics, answers a
// user webhook 202 (journaled, retried), and converges once Magpie accepts
// the sign-in: the user's workspace is built and the daemon becomes ready.
func TestStartsWhileMagpieRefusesTheSignIn(t *testing.T) {
	dir := t.TempDir()
	tree(t, dir)
	mp := magpietest.NewServer(t, magpietest.Options{QuietSeeding: true})
	_, err := mp.AddUser("alice", "qwertyqwerty", "users")
	must(t, err)
	mp.Inject("POST /signin", magpietest.Fault{Status: http.StatusUnauthorized, Times: 1 << 30})
	cfg := filepath.Join(dir, "config.yml")
	must(t, os.WriteFile(cfg, []byte("handlers:\n  Magpie: {active: true, url: "+mp.URL()+", admin_user: admin, admin_password: qwertyqwerty}\n"+
		fmt.Sprintf(fileSystemEntry, dir)), 0o600))
	base := runDaemon(t, testOptions(t, cfg, dir))

	eventually(t, "the public link", func() bool {
		_, err := os.Lstat(filepath.Join(dir, "user_workspaces/public/wps_outputs/hummingbird/report.txt"))
		return err == nil
	})
	eventually(t, "/readyz to name the refused sign-in", func() bool {
		resp, err := http.Get(base + "/readyz")
		must(t, err)
		defer resp.Body.Close()
		body := make([]byte, 4096)
		n, _ := resp.Body.Read(body)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body[:n]), "signin")
	})
	if m := get(t, base+"/metrics"); !strings.Contains(m, `cowbird_handler_ready{handler="Magpie"} 0`) {
		t.Errorf("metrics lack the Magpie handler not ready")
	}
	code, body := post(t, base+"/webhooks/users", `{"event": "created", "user_name": "alice", "callback_url": ""}`)
	if code != http.StatusAccepted {
		t.Fatalf("user webhook while Magpie refuses = %d %v, want 202", code, body)
	}
	mp.ClearFaults() // the operator fixed Magpie's account
	eventually(t, "the user's notebooks symlink after the retry", func() bool {
		_, err := os.Lstat(filepath.Join(dir, "user_workspaces/alice/notebooks"))
		return err == nil
	})
	eventually(t, "/readyz to pass", func() bool {
		resp, err := http.Get(base + "/readyz")
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// TestFileSystemWithoutMagpie: FileSystem runs without a Magpie entry, as
// in the original: workspaces, notebooks and public links work.
func TestFileSystemWithoutMagpie(t *testing.T) {
	dir := t.TempDir()
	tree(t, dir)
	cfg := filepath.Join(dir, "config.yml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("handlers:\n"+fileSystemEntry, dir)), 0o600))
	base := runDaemon(t, testOptions(t, cfg, dir))
	code, body := post(t, base+"/webhooks/users", `{"event": "created", "user_name": "alice", "callback_url": ""}`)
	if code != http.StatusOK {
		t.Fatalf("user webhook = %d %v", code, body)
	}
	for _, p := range []string{"alice/notebooks", "public/wps_outputs/hummingbird/report.txt"} {
		eventually(t, p, func() bool {
			_, err := os.Lstat(filepath.Join(dir, "user_workspaces", p))
			return err == nil
		})
	}
}

// TestSwitchFromPythonPublishesExistingUsersShapefiles: a user created
// under the Python Cowbird (workspace and datastore on disk, no watch
// registered with us) gets a shapefile written after our first start
// published.
func TestSwitchFromPythonPublishesExistingUsersShapefiles(t *testing.T) {
	s := newPythonEraGeoserver(t)
	s.start(t)
	for _, ext := range []string{".prj", ".dbf", ".shx", ".shp"} {
		must(t, os.WriteFile(filepath.Join(s.ds, "rivers"+ext), []byte("x"), 0o644))
	}
	eventually(t, "alice's layer published", func() bool { return slices.Contains(s.gs.Layers("alice"), "rivers") })
}

// pythonEraGeoserver is alice, with the GeoServer workspace and datastore
// the Python Cowbird made, against the emulators.
type pythonEraGeoserver struct {
	dir, ds string // the test's directory, alice's datastore directory
	mp      *magpietest.Server
	gs      *geoservertest.Server
	gc      *geoserver.Client
}

func newPythonEraGeoserver(t *testing.T) *pythonEraGeoserver {
	t.Helper()
	s := &pythonEraGeoserver{dir: t.TempDir()}
	s.ds = filepath.Join(s.dir, "user_workspaces", "alice", "shapefile_datastore")
	must(t, os.MkdirAll(s.ds, 0o777))
	s.mp = magpietest.NewServer(t, magpietest.Options{QuietSeeding: true})
	_, err := s.mp.AddUser("alice", "qwertyqwerty", "users")
	must(t, err)
	_, err = s.mp.AddService("geoserver", "geoserver")
	must(t, err)
	s.gs = geoservertest.NewServer(t, geoservertest.Options{
		PathMap: map[string]string{"/user_workspaces": filepath.Join(s.dir, "user_workspaces")},
	})
	s.gc = geoserver.NewClient(geoserver.ClientOptions{URL: s.gs.URL(), User: geoservertest.DefaultUser, Password: geoservertest.DefaultPassword})
	must(t, s.gc.CreateWorkspace(context.Background(), "alice"))
	must(t, s.gc.CreateDatastore(context.Background(), "alice"))
	return s
}

// start runs the daemon with the Magpie and Geoserver handlers until it is
// ready.
func (s *pythonEraGeoserver) start(t *testing.T) {
	t.Helper()
	cfg := filepath.Join(s.dir, "config.yml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`handlers:
  Magpie: {active: true, url: %[1]s, admin_user: admin, admin_password: qwertyqwerty}
  Geoserver: {active: true, url: %[2]s, workspace_dir: %[3]s/user_workspaces, admin_user: %[4]s, admin_password: %[5]s}
`, s.mp.URL(), s.gs.URL(), s.dir, geoservertest.DefaultUser, geoservertest.DefaultPassword)), 0o600))
	waitReady(t, runDaemon(t, testOptions(t, cfg, s.dir)))
}

// TestGeoserverWithoutMagpie: Geoserver runs without a Magpie entry, as in
// the original: a new user gets the datastore directory and the GeoServer
// workspace; only the Magpie permission steps fail.
func TestGeoserverWithoutMagpie(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "user_workspaces", "alice"), 0o755))
	gs := geoservertest.NewServer(t, geoservertest.Options{
		PathMap: map[string]string{"/user_workspaces": filepath.Join(dir, "user_workspaces")},
	})
	cfg := filepath.Join(dir, "config.yml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`handlers:
  Geoserver: {active: true, url: %s, workspace_dir: %s/user_workspaces, admin_user: %s, admin_password: %s}
`, gs.URL(), dir, geoservertest.DefaultUser, geoservertest.DefaultPassword)), 0o600))
	base := runDaemon(t, testOptions(t, cfg, dir))
	if code, body := post(t, base+"/webhooks/users", `{"event": "created", "user_name": "alice", "callback_url": ""}`); code != http.StatusOK {
		t.Fatalf("user webhook = %d %v", code, body)
	}
	eventually(t, "alice's GeoServer workspace", func() bool { return slices.Contains(gs.Workspaces(), "alice") })
	if _, err := os.Stat(filepath.Join(dir, "user_workspaces/alice/shapefile_datastore")); err != nil {
		t.Fatal(err)
	}
}
