package store

import (
	"context"
	"slices"
	"testing"
)

func TestJobsPersistAcrossReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"b", "a", "c"} {
		if err := db.PutJob(ctx, id, []byte(id+"1")); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutJob(ctx, "a", []byte("a2")); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteJob(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteJob(ctx, "missing"); err != nil {
		t.Errorf("DeleteJob(missing) = %v, want nil", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, dir)
	got, err := db.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{[]byte("a2"), []byte("b1")}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Jobs() = %q, want %q", got, want)
	}
	if err := db.PutJob(ctx, "", nil); err == nil {
		t.Error("PutJob with an empty id succeeded")
	}
}
