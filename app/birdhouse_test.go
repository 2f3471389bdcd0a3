package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/cowbird-go/cowbird/geoserver/geoservertest"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// birdhouseConfig activates the six handlers as bird-house's config.yml
// does, against the emulators, with one sync point.
const birdhouseConfig = `handlers:
  Magpie:
    active: true
    url: %[2]s
    admin_user: admin
    admin_password: qwertyqwerty
  Geoserver:
    active: true
    url: %[3]s
    workspace_dir: %[1]s/user_workspaces
    admin_user: admin
    admin_password: geoserver
  Catalog:
    active: true
    url: http://localhost/twitcher/ows/proxy/catalog
    workspace_dir: %[1]s/user_workspaces
  Thredds:
    active: true
  Nginx:
    active: true
  FileSystem:
    active: true
    priority: 1
    workspace_dir: %[1]s/user_workspaces
    jupyterhub_user_data_dir: %[1]s/jupyterhub_user_data
    wps_outputs_dir: %[1]s/wpsoutputs
    public_workspace_wps_outputs_subdir: public/wps_outputs
sync_permissions:
  weaver_outputs:
    services:
      api:
        weaver_wps_outputs:
          - {name: weaver, type: service}
          - {name: wpsoutputs, type: route}
          - {name: "{jobID}", type: route}
        job_outputs:
          - {name: weaver, type: service}
          - {name: jobs, type: route}
          - {name: "{jobID}", type: route}
    permissions_mapping:
      - "weaver_wps_outputs : read -> job_outputs : read"
`

// birdhouse is a daemon with all six handlers against the emulators, with
// Magpie's webhooks wired to it.
type birdhouse struct {
	dir            string
	base           string
	mp             *magpietest.Server
	gs             *geoservertest.Server
	hook           *logtest.Hook
	outJob, jobJob int // weaver routes wpsoutputs/job1 and jobs/job1
}

func startBirdhouse(t *testing.T) *birdhouse {
	t.Helper()
	return startBirdhouseWith(t, "", "")
}

// startBirdhouseWith adds moreHandlers to the handlers section and extra
// sections at the end of the configuration.
func startBirdhouseWith(t *testing.T, moreHandlers, extra string) *birdhouse {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"user_workspaces", "jupyterhub_user_data", "wpsoutputs"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b := &birdhouse{dir: dir}
	b.mp = magpietest.NewServer(t, magpietest.Options{})
	b.gs = geoservertest.NewServer(t, geoservertest.Options{
		PathMap: map[string]string{"/user_workspaces": filepath.Join(dir, "user_workspaces")},
	})
	mp := b.mp
	sdp, err := mp.AddService("secure-data-proxy", "api")
	must(t, err)
	wpsRoute, err := mp.AddResource(sdp, "wps_outputs", "route")
	must(t, err)
	must(t, mp.SetGroupPermission("users", wpsRoute, "read-allow-recursive"))
	weaver, err := mp.AddService("weaver", "api")
	must(t, err)
	outs, err := mp.AddResource(weaver, "wpsoutputs", "route")
	must(t, err)
	b.outJob, err = mp.AddResource(outs, "job1", "route")
	must(t, err)
	jobs, err := mp.AddResource(weaver, "jobs", "route")
	must(t, err)
	b.jobJob, err = mp.AddResource(jobs, "job1", "route")
	must(t, err)
	_, err = mp.AddService("geoserver", "geoserver")
	must(t, err)

	cfgPath := filepath.Join(dir, "config.yml")
	cfg := fmt.Sprintf(birdhouseConfig, dir, mp.URL(), b.gs.URL())
	cfg = strings.Replace(cfg, "sync_permissions:", moreHandlers+"sync_permissions:", 1) + extra
	must(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	log := logrus.New()
	log.SetOutput(discard{})
	b.hook = logtest.NewLocal(log)
	o := testOptions(t, cfgPath, dir)
	o.Log = log
	b.base = runDaemon(t, o)
	waitReady(t, b.base)
	must(t, mp.SetWebhooks(append(magpietest.CowbirdWebhooks(b.base), magpietest.CowbirdGroupWebhooks(b.base)...)))
	return b
}

// TestBirdhouseEventMatrix checks that a user event, a permission event and
// a file event each reach exactly the handlers of the matrix in
// docs/handlers.md, with their effects on disk and in the emulators.
func TestBirdhouseEventMatrix(t *testing.T) {
	b := startBirdhouse(t)
	dir, mp, gs, hook := b.dir, b.mp, b.gs, b.hook

	// user_created: FileSystem, Geoserver and Catalog act; Magpie, Thredds
	// and Nginx only log.
	aliceID, err := mp.AddUser("alice", "", "users")
	must(t, err)
	ws := filepath.Join(dir, "user_workspaces", "alice")
	eventually(t, "GeoServer workspace of alice", func() bool { return slices.Contains(gs.Workspaces(), "alice") })
	if _, err := os.Lstat(filepath.Join(ws, "notebooks")); err != nil {
		t.Fatalf("FileSystem: notebooks symlink: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(ws, "shapefile_datastore")); err != nil || fi.Mode().Perm()&0o007 != 0o007 {
		t.Fatalf("Geoserver: datastore dir: %v %v", fi, err)
	}
	for _, h := range []string{"Magpie", "Thredds", "Nginx"} {
		waitLog(t, hook, fmt.Sprintf("Event [user_created] for handler [%s] is not implemented", h))
	}

	// permission_created: Magpie mirrors it; the others log or ignore it.
	must(t, mp.SetUserPermission("alice", b.outJob, "read"))
	eventually(t, "mirrored permission", func() bool {
		return slices.Contains(mp.UserPermissions("alice", b.jobJob), "read-allow-recursive")
	})
	for _, h := range []string{"Catalog", "Thredds", "Nginx"} {
		waitLog(t, hook, fmt.Sprintf("Event [permission_created] for handler [%s] is not implemented", h))
	}
	// No ping-pong: one PATCH, whose own webhook changes nothing more.
	wctx, wcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer wcancel()
	must(t, mp.WaitWebhooks(wctx))
	if n := countDeliveries(mp, "create_user_permission"); n != 2 || mp.Hits("PATCH /permissions") != 1 {
		t.Fatalf("after one permission: %d permission webhooks, %d PATCHes; want 2 and 1", n, mp.Hits("PATCH /permissions"))
	}
	// Deleting the source permission removes the mirrored one (no other
	// source grants it), again with one PATCH.
	must(t, mp.DeleteUserPermission("alice", b.outJob, "read"))
	eventually(t, "mirrored permission removed", func() bool {
		return len(mp.UserPermissions("alice", b.jobJob)) == 0
	})
	must(t, mp.WaitWebhooks(wctx))
	if n := countDeliveries(mp, "delete_user_permission"); n != 2 || mp.Hits("PATCH /permissions") != 2 {
		t.Fatalf("after the delete: %d delete webhooks, %d PATCHes; want 2 and 2", n, mp.Hits("PATCH /permissions"))
	}

	// A WPS output file: FileSystem links it into alice's workspace, where
	// Catalog's watch sees the new link.
	src := filepath.Join(dir, "wpsoutputs", "finch", "users", fmt.Sprint(aliceID), "job1", "out.nc")
	must(t, os.MkdirAll(filepath.Dir(src), 0o755))
	must(t, os.WriteFile(src, []byte("data"), 0o644))
	link := filepath.Join(ws, "wps_outputs", "finch", "job1", "out.nc")
	eventually(t, "hardlink of the WPS output", func() bool {
		a, errA := os.Stat(src)
		b, errB := os.Stat(link)
		return errA == nil && errB == nil && os.SameFile(a, b)
	})
	waitLog(t, hook, fmt.Sprintf("The following path [%s] has just been created", link))
}

// countDeliveries counts the webhooks of action Magpie delivered.
func countDeliveries(mp *magpietest.Server, action string) int {
	n := 0
	for _, d := range mp.Deliveries() {
		if d.Action == action && !d.Dropped {
			n++
		}
	}
	return n
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until a log entry with exactly msg was recorded.
func waitLog(t *testing.T, hook *logtest.Hook, msg string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, e := range hook.AllEntries() {
			if e.Message == msg {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q", msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMagpieOutageRetriedFromJournal: Magpie answers 503 to the
// synchronizer's PATCH, then comes back; the journal retries the event
// until the mirrored permission exists, and applies it once.
func TestMagpieOutageRetriedFromJournal(t *testing.T) {
	b := startBirdhouse(t)
	_, err := b.mp.AddUser("bob", "", "users")
	must(t, err)
	eventually(t, "bob's GeoServer workspace", func() bool { return slices.Contains(b.gs.Workspaces(), "bob") })

	b.mp.FailNext("PATCH /permissions", 2, 503)
	must(t, b.mp.SetUserPermission("bob", b.outJob, "read"))
	eventually(t, "mirrored permission after the outage", func() bool {
		return slices.Contains(b.mp.UserPermissions("bob", b.jobJob), "read-allow-recursive")
	})
	// The webhook was answered 202 (the first PATCH got 503: journaled for
	// a retry): the permission came from the journal's retry.
	retried := false
	for _, dl := range b.mp.Deliveries() {
		retried = retried || dl.Action == "create_user_permission" && dl.Status == 202
	}
	if !retried {
		t.Fatalf("no permission webhook answered 202: %+v", b.mp.Deliveries())
	}
	if got := b.mp.UserPermissions("bob", b.jobJob); len(got) != 1 {
		t.Fatalf("bob's permissions on jobs/job1 = %v, want exactly one", got)
	}
}

// TestGeoserverFailureReported: a GeoServer error (not retryable) stops the
// user's job chain; the failure shows in GET /handlers/Geoserver and in
// /metrics.
func TestGeoserverFailureReported(t *testing.T) {
	b := startBirdhouse(t)
	b.gs.SetFault(geoservertest.RouteCreateDatastore, geoservertest.Fault{Status: 500, Body: "java.lang.RuntimeException: disk full"})
	_, err := b.mp.AddUser("gus", "", "users")
	must(t, err)
	var detail map[string]any
	eventually(t, "the failed job in the handler's status", func() bool {
		resp, err := http.Get(b.base + "/handlers/Geoserver")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		detail = nil
		_ = json.NewDecoder(resp.Body).Decode(&detail)
		return strings.Contains(fmt.Sprint(detail), "disk full")
	})
	if !slices.Contains(b.gs.Workspaces(), "gus") || len(b.gs.Layers("gus")) != 0 {
		t.Fatalf("workspace step should be done, datastore not: %v", b.gs.Workspaces())
	}
	resp, err := http.Get(b.base + "/metrics")
	must(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "cowbird_geoserver_jobs_failed_total 1") {
		t.Fatalf("metric not reported; handler detail: %v", detail)
	}
}
