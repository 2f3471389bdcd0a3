package app

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestGeoserverCatchesUpAtStartup: what changed in a datastore while
// cowbird was down is caught up at start-up, with no file event: a
// shapefile already there is published (with its Magpie layer resource),
// and a layer whose .shp is gone is removed.
func TestGeoserverCatchesUpAtStartup(t *testing.T) {
	ctx := context.Background()
	s := newPythonEraGeoserver(t)
	// Before the stop: layer "old" published.
	must(t, os.WriteFile(filepath.Join(s.ds, "old.shp"), []byte("x"), 0o644))
	must(t, s.gc.PublishShapefile(ctx, "alice", "old"))
	// While it was stopped: old.shp deleted, rivers uploaded.
	must(t, os.Remove(filepath.Join(s.ds, "old.shp")))
	for _, ext := range []string{".prj", ".dbf", ".shx", ".shp"} {
		must(t, os.WriteFile(filepath.Join(s.ds, "rivers"+ext), []byte("x"), 0o644))
	}
	s.start(t)
	eventually(t, "alice's layers caught up", func() bool { return slices.Equal(s.gs.Layers("alice"), []string{"rivers"}) })
	eventually(t, "rivers' Magpie layer resource", func() bool {
		_, ok := s.mp.Lookup("geoserver", "alice", "rivers")
		return ok
	})
}
