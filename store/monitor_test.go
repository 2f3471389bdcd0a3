package store

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/cowbird-go/cowbird/monitor"
)

func TestMonitorsPersistSorted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	puts := []monitor.Registration{
		{Handler: "Geoserver", Path: "/ws/bob/shapefile_datastore", Recursive: true},
		{Handler: "FileSystem", Path: "/wps_outputs", Recursive: true},
		{Handler: "Geoserver", Path: "/ws/alice/shapefile_datastore", Recursive: true},
		{Handler: "Geo", Path: "/z"}, // a handler name that prefixes another
		{Handler: "Catalog", Path: "/ws/alice", Recursive: true},
		{Handler: "Catalog", Path: "/ws/alice"}, // upsert: stored as given
		{Handler: "Catalog", Path: "/ws/bob", Recursive: true},
	}
	for _, m := range puts {
		if err := db.SaveRegistration(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // idempotent
		if err := db.DeleteRegistration(ctx, "/ws/bob", "Catalog"); err != nil {
			t.Fatal(err)
		}
	}
	want := []monitor.Registration{
		{Handler: "Catalog", Path: "/ws/alice"},
		{Handler: "FileSystem", Path: "/wps_outputs", Recursive: true},
		{Handler: "Geo", Path: "/z"},
		{Handler: "Geoserver", Path: "/ws/alice/shapefile_datastore", Recursive: true},
		{Handler: "Geoserver", Path: "/ws/bob/shapefile_datastore", Recursive: true},
	}
	got, err := db.Registrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Registrations() = %+v, want %+v", got, want)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir)
	if got, err = db.Registrations(ctx); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Registrations() after reopen = %+v, want %+v", got, want)
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
			if err := db.SaveRegistration(ctx, monitor.Registration{Handler: tt.handler, Path: tt.path}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("SaveRegistration: err = %v, want one containing %q", err, tt.want)
			}
			if err := db.DeleteRegistration(ctx, tt.path, tt.handler); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DeleteRegistration: err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if ms, err := db.Registrations(ctx); err != nil || len(ms) != 0 {
		t.Errorf("Registrations() = %v, %v; want none stored", ms, err)
	}
}
