package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cowbird-go/cowbird/geoserver"
	"github.com/cowbird-go/cowbird/geoserver/geoservertest"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// TestGeoserverCatchesUpAtStartup: what changed in a datastore while
// cowbird was down is caught up at start-up, with no file event: a
// shapefile already there is published (with its Magpie layer resource),
// and a layer whose .shp is gone is removed.
func TestGeoserverCatchesUpAtStartup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ws := filepath.Join(dir, "user_workspaces")
	ds := filepath.Join(ws, "alice", "shapefile_datastore")
	must(t, os.MkdirAll(ds, 0o777))
	mp := magpietest.NewServer(t, magpietest.Options{QuietSeeding: true})
	_, err := mp.AddUser("alice", "qwertyqwerty", "users")
	must(t, err)
	_, err = mp.AddService("geoserver", "geoserver")
	must(t, err)
	gs := geoservertest.NewServer(t, geoservertest.Options{PathMap: map[string]string{"/user_workspaces": ws}})
	// Before the stop: alice's workspace and datastore, and layer "old".
	gc := geoserver.NewClient(geoserver.ClientOptions{URL: gs.URL(), User: geoservertest.DefaultUser, Password: geoservertest.DefaultPassword})
	must(t, gc.CreateWorkspace(ctx, "alice"))
	must(t, gc.CreateDatastore(ctx, "alice"))
	must(t, os.WriteFile(filepath.Join(ds, "old.shp"), []byte("x"), 0o644))
	must(t, gc.PublishShapefile(ctx, "alice", "old"))
	// While it was stopped: old.shp deleted, rivers uploaded.
	must(t, os.Remove(filepath.Join(ds, "old.shp")))
	for _, ext := range []string{".prj", ".dbf", ".shx", ".shp"} {
		must(t, os.WriteFile(filepath.Join(ds, "rivers"+ext), []byte("x"), 0o644))
	}
	cfg := filepath.Join(dir, "config.yml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`handlers:
  Magpie: {active: true, url: %[1]s, admin_user: admin, admin_password: qwertyqwerty}
  Geoserver: {active: true, url: %[2]s, workspace_dir: %[3]s, admin_user: %[4]s, admin_password: %[5]s}
`, mp.URL(), gs.URL(), ws, geoservertest.DefaultUser, geoservertest.DefaultPassword)), 0o600))

	base := runDaemon(t, testOptions(t, cfg, dir))
	eventually(t, "readiness", func() bool {
		resp, err := http.Get(base + "/readyz")
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	eventually(t, "alice's layers caught up", func() bool { return slices.Equal(gs.Layers("alice"), []string{"rivers"}) })
	eventually(t, "rivers' Magpie layer resource", func() bool {
		_, ok := mp.Lookup("geoserver", "alice", "rivers")
		return ok
	})
}
