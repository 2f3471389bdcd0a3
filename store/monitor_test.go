package store

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

func TestMonitorsPersistSorted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	puts := []Monitor{
		{Handler: "Geoserver", Path: "/ws/bob/shapefile_datastore", Recursive: true},
		{Handler: "FileSystem", Path: "/wps_outputs", Recursive: true},
		{Handler: "Geoserver", Path: "/ws/alice/shapefile_datastore", Recursive: true},
		{Handler: "Geo", Path: "/z"}, // a handler name that prefixes another
		{Handler: "Catalog", Path: "/ws/alice", Recursive: true},
		{Handler: "Catalog", Path: "/ws/alice"}, // upsert: stored as given
		{Handler: "Catalog", Path: "/ws/bob", Recursive: true},
	}
	for _, m := range puts {
		if err := db.PutMonitor(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // idempotent
		if err := db.DeleteMonitor(ctx, "Catalog", "/ws/bob"); err != nil {
			t.Fatal(err)
		}
	}
	want := []Monitor{
		{Handler: "Catalog", Path: "/ws/alice"},
		{Handler: "FileSystem", Path: "/wps_outputs", Recursive: true},
		{Handler: "Geo", Path: "/z"},
		{Handler: "Geoserver", Path: "/ws/alice/shapefile_datastore", Recursive: true},
		{Handler: "Geoserver", Path: "/ws/bob/shapefile_datastore", Recursive: true},
	}
	got, err := db.Monitors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Monitors() = %+v, want %+v", got, want)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir)
	if got, err = db.Monitors(ctx); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Monitors() after reopen = %+v, want %+v", got, want)
	}
}

func TestMonitorBadInput(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	tests := []struct {
		name, handler, path, want string
	}{
		{"empty handler", "", "/p", "handler is empty"},
		{"NUL in handler", "a\x00b", "/p", "contains NUL"},
		{"empty path", "h", "", "path is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := db.PutMonitor(ctx, Monitor{Handler: tt.handler, Path: tt.path}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("PutMonitor: err = %v, want one containing %q", err, tt.want)
			}
			if err := db.DeleteMonitor(ctx, tt.handler, tt.path); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DeleteMonitor: err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if ms, err := db.Monitors(ctx); err != nil || len(ms) != 0 {
		t.Errorf("Monitors() = %v, %v; want none stored", ms, err)
	}
}
