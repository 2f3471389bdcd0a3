package filesystem_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cowbird-go/cowbird/filesystem"
)

// benchEnv is a small tree: 3 birds, 5 users with 20 files each per bird,
// and 100 public files per bird.
func benchEnv(b *testing.B) *env {
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	e := newEnv(b, users, users...)
	for i, u := range users {
		if i%2 == 0 {
			must(b, e.mg.SetUserPermission(u, e.routeID, allow))
		}
	}
	for _, bird := range []string{"weaver", "raven", "finch"} {
		for i := range 100 {
			e.file(fmt.Sprintf("%s/public/job%d/out%d.nc", bird, i/10, i), 0o664)
		}
		for _, u := range users {
			for i := range 20 {
				e.file(e.userFile(bird, u, fmt.Sprintf("job%d/out%d.nc", i/5, i)), 0o664)
			}
		}
	}
	return e
}

func BenchmarkReconcileCold(b *testing.B) {
	e := benchEnv(b)
	for b.Loop() {
		b.StopTimer()
		must(b, os.RemoveAll(filepath.Join(e.ws, "public")))
		for _, u := range []string{"u1", "u2", "u3", "u4", "u5"} {
			must(b, os.RemoveAll(filepath.Join(e.ws, u, "wps_outputs")))
		}
		b.StartTimer()
		if st := e.reconcile(filesystem.Scope{}); st.LinksCreated == 0 {
			b.Fatal("nothing linked")
		}
	}
}

func BenchmarkReconcileWarm(b *testing.B) {
	e := benchEnv(b)
	e.reconcile(filesystem.Scope{})
	for b.Loop() {
		if st := e.reconcile(filesystem.Scope{}); st.LinksCreated+st.ModesFixed != 0 {
			b.Fatalf("warm run changed things: %+v", st)
		}
	}
}
