package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/session/sessiontest"
)

// markerHook is a user_created hook, run_as the new user, whose task
// writes <out>/<user>: a file there means the hook ran.
func markerHook(out, extra string) string {
	return `
hooks:
` + extra + `
  user_created:
    run_as: "{{Event.UserName}}"
    tasks:
      - {command: /bin/sh, args: [-c, 'id -u > "$0"', "` + out + `/{{Event.UserName}}"]}
`
}

// worldDir is a directory every user may write into, outside t.TempDir's
// 0700 parents.
func worldDir(t *testing.T, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newMarkerHandler builds the handler of markerHook with a session root
// every hook user can reach.
func newMarkerHandler(t *testing.T, extra string) (*Handler, *recorder, string) {
	t.Helper()
	out := worldDir(t, "cowbird-hooks-out-")
	root := worldDir(t, "cowbird-sessions-")
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	h, err := New(loadHooks(t, markerHook(out, extra)), Options{SessionRoot: root, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	return h, rec, out
}

// requireRefused runs user_created for name and checks that the hook was
// refused before anything ran: a *RefusedError whose message has want, a
// recorded run that failed with it, and no marker file.
func requireRefused(t *testing.T, h *Handler, rec *recorder, out, name, want string) {
	t.Helper()
	_, err := h.RunOnce(context.Background(), "user_created", handlers.UserEvent{Action: handlers.Created, UserName: name})
	var refused *RefusedError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), want) {
		t.Errorf("user %s: RunOnce = %v; want a refusal saying %q", name, err, want)
	}
	if handlers.IsTransient(err) {
		t.Errorf("user %s: the refusal is transient; it must not be retried", name)
	}
	run := await(t, rec.started)
	if got := await(t, run.finished); got == nil || got.Error() != fmt.Sprint(err) {
		t.Errorf("user %s: recorded run finished with %v, want %v", name, got, err)
	}
	if _, err := os.Stat(filepath.Join(out, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("user %s: the hook ran (marker: %v)", name, err)
	}
}

// A Magpie user named like a system account never gets a templated hook
// run as that account, even when accounts."*" would map unknown names.
func TestTemplatedRunAsRefusesSystemAccounts(t *testing.T) {
	h, rec, out := newMarkerHandler(t, `  accounts:
    "*": {uid: 1000, gid: 100}`)
	for _, name := range []string{"root", "daemon", "bin", "nobody", "www-data"} {
		u, err := user.Lookup(name)
		if err != nil {
			t.Logf("no OS account %s: skipped", name)
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		var want string
		switch {
		case uid == 0:
			want = fmt.Sprintf("%q is root", name)
		case uid < int(h.sys.uidMin):
			want = fmt.Sprintf("%q has uid %d, below UID_MIN %d", name, uid, h.sys.uidMin)
		default: // nobody is 65534
			want = fmt.Sprintf("%q has the login shell", name)
		}
		t.Run(name, func(t *testing.T) { requireRefused(t, h, rec, out, name, want) })
	}
}

// A name found nowhere but in accounts."*" is refused when "*" is a system
// account; an accounts entry of the exact name is the operator's choice.
func TestTemplatedRunAsThroughAccounts(t *testing.T) {
	self, selfGid := itoa(os.Geteuid()), itoa(os.Getegid())
	selfWant := `is the daemon's own user (uid ` + self + `)`
	if self == "0" {
		selfWant = "is root"
	}
	groupWant := `has the daemon's own group (gid ` + selfGid + `)`
	if selfGid == "0" {
		groupWant = "has group 0 (root's)"
	}
	for _, tc := range []struct {
		star, want string
	}{
		{`{uid: 0, gid: 100}`, `is root (from accounts."*")`},
		{`{uid: 999, gid: 100}`, `has uid 999, below UID_MIN 1000 (from accounts."*")`},
		{`{uid: 1000, gid: 0}`, `has group 0 (root's)`},
		{`{uid: 1000, gid: 5}`, `has group 5, below GID_MIN 1000`},
		{`{uid: 1000, gid: 100, groups: [27]}`, `has group 27, below GID_MIN 1000`},
		{`{uid: ` + self + `, gid: 100}`, selfWant},
		{`{uid: 5000, gid: ` + selfGid + `}`, groupWant},
	} {
		h, rec, out := newMarkerHandler(t, "  allow_run_as_daemon_user: true\n  accounts:\n    \"*\": "+tc.star)
		t.Run(tc.star, func(t *testing.T) { requireRefused(t, h, rec, out, "zz-no-such-user", tc.want) })
	}

	// "*" as a regular user, with the "users" group: allowed.
	h, _, _ := newMarkerHandler(t, "  accounts:\n    \"*\": {uid: 1000, gid: 100}")
	if a, err := h.lookup("zz-no-such-user", h.cfg.Events["user_created"]); err != nil || a.uid != 1000 {
		t.Errorf(`lookup through "*" {uid: 1000, gid: 100} = %+v, %v; want uid 1000`, a, err)
	}
	// An entry of the exact name allows even a system account.
	h, _, _ = newMarkerHandler(t, "  accounts:\n    daemon: {uid: 1, gid: 1}\n    root: {uid: 0, gid: 0}")
	for _, name := range []string{"daemon", "root"} {
		if _, err := h.lookup(name, h.cfg.Events["user_created"]); err != nil && !strings.Contains(err.Error(), "daemon's own user") {
			t.Errorf("lookup(%s) with its own accounts entry = %v", name, err)
		}
	}
}

// A fixed run_as keeps the rules it had: the operator named the account.
func TestFixedRunAsKeepsTodaysRules(t *testing.T) {
	if _, err := user.Lookup("daemon"); err != nil {
		t.Skip("no OS account daemon")
	}
	h, _, _ := newHandler(t, `
hooks:
  user_created:
    run_as: daemon
    tasks: [{command: /bin/true}]
`)
	a, err := h.lookup("daemon", h.cfg.Events["user_created"])
	if err != nil || a.uid != 1 {
		t.Errorf("fixed run_as daemon: %+v, %v; want uid 1", a, err)
	}
}

// OS accounts with a regular uid that are still not a person's: a nologin
// shell, a locked password, a system group. A regular account runs.
func TestTemplatedRunAsRefusesServiceAccounts(t *testing.T) {
	h, rec, out := newMarkerHandler(t, "")
	nologin, _, _ := osUser(t, "-s", "/usr/sbin/nologin")
	requireRefused(t, h, rec, out, nologin, "has the login shell /usr/sbin/nologin")
	falseShell, _, _ := osUser(t, "-s", "/bin/false")
	requireRefused(t, h, rec, out, falseShell, "has the login shell /bin/false")
	locked, _, _ := osUser(t)
	if out, err := exec.Command("usermod", "-L", locked).CombinedOutput(); err != nil {
		t.Fatalf("usermod -L: %v: %s", err, out)
	}
	requireRefused(t, h, rec, out, locked, "has a locked password")
	noPassword, _, _ := osUser(t, "-p", "*")
	requireRefused(t, h, rec, out, noPassword, "has a locked password")
	group := osGroup(t)
	member, _, _ := osUser(t, "-G", group)
	requireRefused(t, h, rec, out, member, "below GID_MIN")

	// A fixed group replaces the primary one, but not the supplementary.
	person, uid, _ := osUser(t)
	if _, err := h.RunOnce(context.Background(), "user_created", handlers.UserEvent{Action: handlers.Created, UserName: person}); err != nil {
		t.Fatalf("regular user %s: %v", person, err)
	}
	<-rec.started
	data, err := os.ReadFile(filepath.Join(out, person))
	if err != nil || strings.TrimSpace(string(data)) != itoa(int(uid)) {
		t.Errorf("regular user's hook wrote %q, %v; want its uid %d", data, err, uid)
	}
}

// UID_MIN and GID_MIN come from login.defs, in any strtol base.
func TestReadSystemAccounts(t *testing.T) {
	f := filepath.Join(t.TempDir(), "login.defs")
	if err := os.WriteFile(f, []byte("# UID_MIN 7\nMAIL_DIR /var/mail\nUID_MIN\t\t 500\nGID_MIN 0x200\nUID_MAX x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := readSystemAccounts(f, "", "")
	if s.uidMin != 500 || s.gidMin != 512 {
		t.Errorf("uidMin, gidMin = %d, %d; want 500, 512", s.uidMin, s.gidMin)
	}
	s = readSystemAccounts(filepath.Join(t.TempDir(), "none"), "", "")
	if s.uidMin != 1000 || s.gidMin != 1000 {
		t.Errorf("defaults = %d, %d; want 1000, 1000", s.uidMin, s.gidMin)
	}

	dir := t.TempDir()
	passwd, shadow := filepath.Join(dir, "passwd"), filepath.Join(dir, "shadow")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(passwd, []byte("a:x:1001:1001::/home/a:\nb:x:1002:1002::/:/usr/sbin/nologin\nc:*:1003:1003::/:/bin/sh\nd:x:1004:1004::/:/bin/bash\n"), 0o644))
	must(os.WriteFile(shadow, []byte("a:$6$salt$hash:1::::::\nb:!:1::::::\nd:!$6$salt$hash:1::::::\n"), 0o600))
	s = systemAccounts{passwd: passwd, shadow: shadow}
	for _, tc := range []struct {
		name, shell string
		found       bool
		locked      bool
	}{
		{"a", "/bin/sh", true, false},
		{"b", "/usr/sbin/nologin", true, true},
		{"c", "/bin/sh", true, true}, // no shadow entry: the passwd field
		{"d", "/bin/bash", true, true},
		{"e", "", false, false},
	} {
		shell, found := s.shell(tc.name)
		if shell != tc.shell || found != tc.found || s.locked(tc.name) != tc.locked {
			t.Errorf("%s: shell %q %v locked %v; want %q %v %v", tc.name, shell, found, s.locked(tc.name), tc.shell, tc.found, tc.locked)
		}
	}
}

var osSeq atomic.Uint32

// osUser creates a throw-away OS account with the extra useradd args (see
// sessiontest.User).
func osUser(t *testing.T, args ...string) (name string, uid, gid uint32) {
	t.Helper()
	return sessiontest.User(t, args...)
}

// osGroup creates a throw-away system group (gid below GID_MIN).
func osGroup(t *testing.T) string {
	t.Helper()
	requireUseradd(t)
	name := fmt.Sprintf("cbg%d%c", os.Getpid(), 'a'+rune(osSeq.Add(1)%26))
	if out, err := exec.Command("groupadd", "--system", name).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("groupdel", name).CombinedOutput(); err != nil {
			t.Errorf("groupdel %s: %v: %s", name, err, out)
		}
	})
	return name
}

func requireUseradd(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("throw-away OS accounts need root: skipped (run the tests as root to cover it)")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("throw-away OS accounts need useradd: skipped")
	}
}
