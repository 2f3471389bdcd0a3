package geoserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/geoserver/geoservertest"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// TestRetryAcrossRestart: GeoServer is down when the user is created; the
// job retries, survives a restart (new store handle, Jobs and handler) and
// completes once GeoServer is back.
func TestRetryAcrossRestart(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, magpietest.Options{})
	e.gs.SetDown(true)
	e.userCreated(ctx)
	e.waitFor("a retry", func() bool {
		p := e.h.Status().Pending
		return len(p) == 1 && p[0].Retries > 0
	})
	e.restart()
	e.waitFor("a retry after restart", func() bool {
		p := e.h.Status().Pending
		return len(p) == 1 && p[0].Retries > 1 && p[0].Next == 0
	})
	e.gs.SetDown(false)
	e.wait()
	if got := e.gs.Workspaces(); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("workspaces = %v", got)
	}
	if _, ok := e.gs.Datastore("alice", DatastoreName("alice")); !ok {
		t.Error("datastore not created")
	}
	if st := e.h.Status(); len(st.Failed) != 0 || st.FailedTotal != 0 {
		t.Errorf("status = %+v", st)
	}
	e.restart() // nothing left to resume
	if st := e.h.Status(); len(st.Pending) != 0 {
		t.Errorf("pending after restart = %+v", st.Pending)
	}
}

func TestRetriesExhausted(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, magpietest.Options{})
	e.stop()
	e.jopts.MaxRetries = 3
	e.restart()
	e.gs.SetDown(true)
	e.userCreated(ctx)
	e.wait()
	st := e.h.Status()
	if len(st.Failed) != 1 || st.Failed[0].Retries != 3 || st.Failed[0].Next != 0 {
		t.Fatalf("status = %+v, want one job failed after 3 retries of step 0", st)
	}
	if got := e.gs.Requests(); len(got) != 4 {
		t.Errorf("geoserver got %d requests, want 4 (1 + 3 retries)", len(got))
	}
}

// TestGeoserverErrorStopsChain: a 500 on the datastore creation is final:
// no retry, the chain stops, the job is reported, also after a restart.
func TestGeoserverErrorStopsChain(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, magpietest.Options{})
	e.gs.SetFault(geoservertest.RouteCreateDatastore, geoservertest.Fault{Status: 500, Body: "boom"})
	e.userCreated(ctx)
	e.wait()
	if got := e.gs.Workspaces(); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("workspaces = %v, want the first step done", got)
	}
	if _, ok := e.gs.Datastore("alice", DatastoreName("alice")); ok {
		t.Error("datastore exists")
	}
	if n := e.client.Requests(OpCreateDatastore); n != 1 {
		t.Errorf("datastore creation sent %d times, want 1", n)
	}
	for _, when := range []string{"before restart", "after restart"} {
		st := e.h.Status()
		if len(st.Failed) != 1 || st.Failed[0].Next != 1 || !strings.Contains(st.Failed[0].Err, "_create_datastore_request") {
			t.Errorf("%s: status = %+v, want the datastore step failed", when, st)
		}
		e.restart()
	}
	if st := e.h.Status(); st.FailedTotal != 0 || len(st.Pending) != 0 {
		t.Errorf("after restart: status = %+v, want the failure listed but not counted again", st)
	}
}

func TestRetryPolicy(t *testing.T) {
	j := NewJobs(nil, JobsOptions{})
	// The original's policy (cowbird.md §5.4) is handlers.Backoff's zero value.
	for n, limit := range map[int]time.Duration{0: time.Second, 3: 8 * time.Second, 9: 512 * time.Second, 10: 600 * time.Second, 100: 600 * time.Second} {
		for range 50 {
			if d := j.opts.Backoff.Delay(n); d < 0 || d > limit {
				t.Fatalf("Backoff.Delay(%d) = %s, want within [0, %s]", n, d, limit)
			}
		}
	}
	if got := j.maxRetries(Step{Kind: StepCreateWorkspace}, &GeoserverError{}); got != 0 {
		t.Errorf("retries on GeoserverError = %d, want 0", got)
	}
	if got := j.maxRetries(Step{Kind: StepCreateWorkspace}, fmt.Errorf("x: %w", &RequestError{})); got != DefaultMaxRetries {
		t.Errorf("retries on RequestError = %d, want %d", got, DefaultMaxRetries)
	}
	if got := j.maxRetries(Step{Kind: StepValidateShapefile}, fmt.Errorf("x: %w", errShapefileIncomplete)); got != DefaultMaxValidateRetries {
		t.Errorf("retries on a missing companion = %d, want %d", got, DefaultMaxValidateRetries)
	}
	if got := j.maxRetries(Step{Kind: StepValidateShapefile}, errors.New("other")); got != 0 {
		t.Errorf("retries on another validation error = %d, want 0", got)
	}
}

// TestNoFeedbackLoop wires Magpie's webhooks back into the handler: one
// chmod of a shapefile leads to one Magpie write per changed permission, one
// webhook each, and no file change in return.
func TestNoFeedbackLoop(t *testing.T) {
	ctx := context.Background()
	var h atomic.Pointer[Handler]
	var webhookErrs atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := decodePermissionWebhook(r.Body)
		if err == nil && r.URL.Path == "/webhooks/permissions" {
			if ev.Action == handlers.Created {
				err = h.Load().PermissionCreated(r.Context(), ev)
			} else {
				err = h.Load().PermissionDeleted(r.Context(), ev)
			}
		}
		if err != nil {
			webhookErrs.Add(1)
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	t.Cleanup(hook.Close)
	e := newEnv(t, magpietest.Options{Webhooks: magpietest.CowbirdWebhooks(hook.URL)})
	var chmods atomic.Int64
	e.h.hook = func(point, _ string) {
		if point == "chmod" {
			chmods.Add(1)
		}
	}
	h.Store(e.h)

	e.userCreated(ctx)
	e.wait()
	for _, ext := range []string{".shp", ".shx", ".dbf", ".prj"} {
		e.write(ds+"/s"+ext, 0o664)
	}
	e.file(ctx, handlers.FileModified, ds+"/s.shp")
	settle := func() {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := e.mg.WaitWebhooks(wctx); err != nil {
			t.Fatal(err)
		}
	}
	settle()
	delivered, changed := e.mg.Delivered(), chmods.Load()
	if delivered != len(readableNames) {
		t.Errorf("first sync: %d webhooks, want %d", delivered, len(readableNames))
	}

	e.chmod(ds+"/s.shp", 0o666)
	e.file(ctx, handlers.FileModified, ds+"/s.shp")
	settle()
	if got := e.mg.Delivered() - delivered; got != len(writableNames) {
		t.Errorf("after one chmod: %d webhooks, want %d (one per writable permission)", got, len(writableNames))
	}
	// The companions follow the .shp (3 chmods); the webhooks change nothing.
	if got := chmods.Load() - changed; got != 3 {
		t.Errorf("after one chmod: %d file changes by the handler, want 3", got)
	}
	if n := webhookErrs.Load(); n != 0 {
		t.Errorf("%d webhooks failed", n)
	}
	for _, ext := range []string{".shp", ".shx", ".dbf", ".prj"} {
		if got := e.mode(ds + "/s" + ext); got != 0o666 {
			t.Errorf("s%s mode = %o, want 666", ext, got)
		}
	}
}

// decodePermissionWebhook reads bird-house's permission webhook payload.
func decodePermissionWebhook(r io.Reader) (handlers.PermissionEvent, error) {
	var raw map[string]any
	if err := json.NewDecoder(r).Decode(&raw); err != nil {
		return handlers.PermissionEvent{}, err
	}
	str := func(k string) string { s, _ := raw[k].(string); return s }
	id, err := strconv.Atoi(strings.Trim(fmt.Sprint(raw["resource_id"]), `"`))
	if err != nil {
		return handlers.PermissionEvent{}, fmt.Errorf("resource_id: %w", err)
	}
	return handlers.PermissionEvent{Action: handlers.Action(str("event")), ResourceID: id, PermName: str("name"),
		Access: str("access"), Scope: str("scope"), User: str("user"), Group: str("group")}, nil
}
