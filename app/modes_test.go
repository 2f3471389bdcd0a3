package app

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestChmodOfDeniedSourceReverted: the daemon makes a denied user's WPS
// output unreadable by others; a chmod that makes it readable again, right
// after, is reverted (the daemon leaves out only the event of its own
// change, not a time window around it).
func TestChmodOfDeniedSourceReverted(t *testing.T) {
	b := startBirdhouse(t)
	id, err := b.mp.AddUser("dana", "") // not in users: denied
	must(t, err)
	ws := filepath.Join(b.dir, "user_workspaces", "dana")
	eventually(t, "dana's workspace", func() bool { _, err := os.Stat(ws); return err == nil })
	src := filepath.Join(b.dir, "wpsoutputs", "finch", "users", strconv.Itoa(id), "j1", "out.nc")
	must(t, os.MkdirAll(filepath.Dir(src), 0o755))
	must(t, os.WriteFile(src, []byte("x"), 0o664))
	others := func() os.FileMode {
		fi, err := os.Stat(src)
		must(t, err)
		return fi.Mode().Perm() & 0o007
	}
	eventually(t, "others bits --- on the denied output", func() bool { return others() == 0 })
	must(t, os.Chmod(src, 0o664))
	eventually(t, "others bits --- again after the chmod", func() bool { return others() == 0 })
	if _, err := os.Lstat(filepath.Join(ws, "wps_outputs", "finch", "j1", "out.nc")); !os.IsNotExist(err) {
		t.Errorf("denied output linked: %v", err)
	}
}
