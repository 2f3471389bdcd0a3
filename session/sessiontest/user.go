// Package sessiontest helps tests of code that runs hook sessions as other
// users.
package sessiontest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"sync/atomic"
	"testing"
)

var seq atomic.Uint32

// User creates a throw-away OS user (no home, its own group, a password
// nobody knows) with the extra useradd args, deleted when the test ends,
// and returns its name, uid and gid. It skips the test unless it runs as
// root with useradd.
func User(t testing.TB, args ...string) (name string, uid, gid uint32) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("impersonation needs the daemon to run as root: skipped (run the tests as root to cover it)")
	}
	useradd, err := exec.LookPath("useradd")
	if err != nil {
		t.Skip("impersonation test needs useradd: skipped")
	}
	name = fmt.Sprintf("cbtest%d%c", os.Getpid(), 'a'+rune(seq.Add(1)%26))
	// A password (one nobody knows) so that the account is not locked: hooks
	// refuse to run as a locked account reached through a template.
	all := append([]string{"--no-create-home", "--user-group", "-p", "$6$cowbird$notarealhash"}, args...)
	if out, err := exec.Command(useradd, append(all, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := strconv.ParseUint(u.Uid, 10, 32)
	g, _ := strconv.ParseUint(u.Gid, 10, 32)
	return name, uint32(id), uint32(g)
}
