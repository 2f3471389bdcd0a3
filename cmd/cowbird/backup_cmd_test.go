package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/monitor"
	"github.com/cowbird-go/cowbird/store"
)

// seedStore creates a state database in dir with n events (all pending) and
// one monitor registration, and returns it open.
func seedStore(t *testing.T, dir string, n int) *store.DB {
	t.Helper()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	for i := range n {
		ev := handlers.UserEvent{Action: handlers.Created, UserName: fmt.Sprintf("user%d", i)}
		if _, err := db.Append(ctx, ev, []string{"FileSystem"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.SaveRegistration(ctx, monitor.Registration{Path: "/data/wps_outputs", Handler: "FileSystem", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	return db
}

// pendingUsers opens the database of dir and lists its pending events' users.
func pendingUsers(t *testing.T, dir string) int {
	t.Helper()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

func TestBackupRestoreDataDir(t *testing.T) {
	dir := t.TempDir()
	db := seedStore(t, dir, 3)
	out := filepath.Join(t.TempDir(), "backups", "cowbird.db")

	code, _, errOut := runCLI(t, "backup", "--data-dir", dir, out)
	if code != exitFailure || !strings.Contains(errOut, "in use by a running cowbird") {
		t.Fatalf("backup of a held database: exit %d, stderr %q; want 1 and \"in use\"", code, errOut)
	}
	db.Close()
	code, stdout, errOut := runCLI(t, "backup", "--data-dir", dir, out)
	if code != exitOK || !strings.HasPrefix(stdout, "backed up to "+out+": ") || !strings.Contains(stdout, "events=3") {
		t.Fatalf("backup: exit %d, stdout %q, stderr %q", code, stdout, errOut)
	}

	target := filepath.Join(t.TempDir(), "state")
	code, stdout, errOut = runCLI(t, "restore", "--data-dir", target, out, "--json")
	if code != exitOK {
		t.Fatalf("restore: exit %d, stderr %q", code, errOut)
	}
	var sum backupSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Keys["events"] != 3 || sum.Keys["monitors"] != 1 ||
		sum.File != filepath.Join(target, store.FileName) {
		t.Errorf("restore --json: %q (%v)", stdout, err)
	}
	if n := pendingUsers(t, target); n != 3 {
		t.Errorf("restored database has %d pending events, want 3", n)
	}

	held, err := store.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "restore", "--data-dir", target, out)
	held.Close()
	if code != exitFailure || !strings.Contains(errOut, "stop it first") {
		t.Errorf("restore under a running daemon: exit %d, stderr %q", code, errOut)
	}
	junk := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(junk, []byte("mongodump output"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, "restore", "--data-dir", target, junk); code != exitFailure || !strings.Contains(errOut, "not a bbolt database") {
		t.Errorf("restore of a junk file: exit %d, stderr %q", code, errOut)
	}
	if n := pendingUsers(t, target); n != 3 {
		t.Errorf("after refused restores the database has %d pending events, want 3", n)
	}
}

func TestBackupUsage(t *testing.T) {
	for _, args := range [][]string{
		{"backup"},
		{"restore", "x.db"},
		{"backup", "--data-dir", "/tmp", "--url", "http://x", "x.db"},
		{"backup", "--url", "://bad", "x.db"},
	} {
		if code, _, errOut := runCLI(t, args...); code != exitUsage {
			t.Errorf("cowbird %q: exit %d, want %d (%s)", args, code, exitUsage, errOut)
		}
	}
}

// snapshotDaemon serves the snapshot route as the daemon does: admin
// bearer token, Content-Length, the bbolt file as the body; webhook-like
// writes go on in the background while it is read.
type snapshotDaemon struct {
	db    *store.DB
	token string
	mu    sync.Mutex
	// mangle, when set, changes the answer (faults).
	mangle func(w http.ResponseWriter) bool
}

func (d *snapshotDaemon) setMangle(f func(w http.ResponseWriter) bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mangle = f
}

func (d *snapshotDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != snapshotPath || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+d.token {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"code": 401, "detail": "UnauthorizedRequest: missing or invalid credentials."}`)
		return
	}
	d.mu.Lock()
	mangle := d.mangle
	d.mu.Unlock()
	if mangle != nil && mangle(w) {
		return
	}
	w.Header().Set("Content-Type", snapshotType)
	_, _ = d.db.Snapshot(w, func(size int64) {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
	})
}

func TestBackupOnline(t *testing.T) {
	dir := t.TempDir()
	db := seedStore(t, dir, 5)
	d := &snapshotDaemon{db: db, token: "s3cret"}
	ts := httptest.NewServer(d)
	defer ts.Close()

	// Writes during the backup, as webhooks would.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ev := handlers.UserEvent{Action: handlers.Created, UserName: fmt.Sprintf("burst%d", i)}
			if _, err := db.Append(context.Background(), ev, []string{"FileSystem"}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	out := filepath.Join(t.TempDir(), "cowbird.db")
	code, stdout, errOut := runCLI(t, "backup", "--url", ts.URL, "--token", "s3cret", out)
	close(stop)
	wg.Wait()
	if code != exitOK || !strings.Contains(stdout, "monitors=1") {
		t.Fatalf("online backup: exit %d, stdout %q, stderr %q", code, stdout, errOut)
	}
	restored := t.TempDir()
	if code, _, errOut := runCLI(t, "restore", "--data-dir", restored, out); code != exitOK {
		t.Fatalf("restore of the online backup: exit %d, %s", code, errOut)
	}
	if n := pendingUsers(t, restored); n < 5 {
		t.Errorf("online backup holds %d pending events, want at least the 5 seeded", n)
	}

	t.Run("token from COWBIRD_TOKEN, to stdout", func(t *testing.T) {
		t.Setenv("COWBIRD_TOKEN", "s3cret")
		code, stdout, errOut := runCLI(t, "backup", "--url", ts.URL+"/", "-")
		if code != exitOK {
			t.Fatalf("exit %d, %s", code, errOut)
		}
		p := filepath.Join(t.TempDir(), "stdout.db")
		if err := os.WriteFile(p, []byte(stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Verify(p); err != nil {
			t.Errorf("the backup written to stdout: %v", err)
		}
	})

	for _, tc := range []struct {
		name, url, token string
		mangle           func(http.ResponseWriter) bool
		want             string
	}{
		{name: "no token", url: ts.URL, want: "401: UnauthorizedRequest: missing or invalid credentials."},
		{name: "route missing", url: ts.URL + "/cowbird/other", token: "s3cret", want: "serves no online snapshot"},
		{name: "not a snapshot", url: ts.URL, token: "s3cret", want: "not a database snapshot", mangle: func(w http.ResponseWriter) bool {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>login</html>")
			return true
		}},
		{name: "cut short", url: ts.URL, token: "s3cret", want: "unexpected EOF", mangle: func(w http.ResponseWriter) bool {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", "65536")
			w.WriteHeader(http.StatusOK)
			fmt.Fprint(w, "partial")
			return true
		}},
		{name: "daemon down", url: "http://127.0.0.1:1", token: "s3cret", want: "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.setMangle(tc.mangle)
			defer d.setMangle(nil)
			out := filepath.Join(t.TempDir(), "cowbird.db")
			code, _, errOut := runCLI(t, "backup", "--url", tc.url, "--token", tc.token, out)
			if code != exitFailure || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a failed backup left %s (%v)", out, err)
			}
		})
	}
}
