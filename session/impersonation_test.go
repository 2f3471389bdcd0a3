package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/cowbird-go/cowbird/session/sessiontest"
)

func TestImpersonation(t *testing.T) {
	_, uid, gid := sessiontest.User(t)
	// The session root and the secret must be reachable by the user, so
	// they cannot live under t.TempDir (0700 parents).
	root, err := os.MkdirTemp("", "cowbird-impersonation-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(root, "secret")
	if err := os.WriteFile(secret, []byte("topsecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(o *Options) {
		o.Root = root
		o.Credential = &Credential{Uid: uid, Gid: gid}
		o.Vars = map[string]string{"SECRET": secret}
	})

	fi, err := os.Stat(h.s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != 0o700 {
		t.Errorf("working dir = %d:%d %o, want %d:%d 700", st.Uid, st.Gid, fi.Mode().Perm(), uid, gid)
	}

	r := h.task(sh(`id -u; id -G; cat "$SECRET" 2>/dev/null && echo READ || echo DENIED; touch owned && echo WROTE`))
	checkResult(t, r, ActionSuccess, intp(0))
	want := []string{fmt.Sprint(uid), fmt.Sprint(gid), "DENIED", "WROTE"}
	if got := h.output(); !slices.Equal(got, want) {
		t.Errorf("output = %q, want %q", got, want)
	}

	t.Run("SIGKILL reaches a grandchild", func(t *testing.T) {
		done := h.start(context.Background(), sh("sleep 1000 & echo $!; echo ready; wait"))
		pidLine := await(t, h.lines)
		h.waitLine("ready")
		pid, err := strconv.Atoi(pidLine)
		if err != nil {
			t.Fatalf("pid line %q: %v", pidLine, err)
		}
		if err := h.s.Cancel(Terminate, 0); err != nil {
			t.Fatal(err)
		}
		checkResult(t, await(t, done), ActionCanceled, intp(-int(syscall.SIGKILL)))
		if ws := reap(t, pid); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("grandchild ended with %v, want killed by SIGKILL", ws)
		}
	})

	if _, err := h.s.End(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.s.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("working dir after End: %v, want it removed", err)
	}
}
