package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/magpie/magpietest"
	"github.com/cowbird-go/cowbird/session/sessiontest"
)

const adminToken = "s3cret-admin-token"

// call sends an authenticated request to the actions API and decodes the answer.
func call(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		must(t, json.Unmarshal(raw, &out))
	}
	return resp.StatusCode, out
}

// waitAction polls an action's status until it is terminal.
func waitAction(t *testing.T, base, typ, id string) map[string]any {
	t.Helper()
	var st map[string]any
	eventually(t, "action "+id+" to end", func() bool {
		_, st = call(t, http.MethodGet, base+"/actions/v1/"+typ+"/"+id, "")
		return st["status"] == "SUCCEEDED" || st["status"] == "FAILED"
	})
	return st
}

// TestResyncActions runs the admin actions on a real tree: a dry-run
// handler.resync reports the diff without applying it, a real one applies
// it, and PUT /handlers/FileSystem/resync runs as a visible action.
func TestResyncActions(t *testing.T) {
	b := startBirdhouseWith(t, "", "cowbird:\n  admin_tokens:\n    ops: "+adminToken+"\n")
	id, err := b.mp.AddUser("dana", "", "users")
	must(t, err)
	ws := filepath.Join(b.dir, "user_workspaces", "dana")
	eventually(t, "dana's workspace", func() bool { _, err := os.Stat(ws); return err == nil })
	// A WPS output that appeared while nothing watched (written, then its
	// link removed, as after an outage).
	src := filepath.Join(b.dir, "wpsoutputs", "finch", "users", fmt.Sprint(id), "j9", "x.nc")
	must(t, os.MkdirAll(filepath.Dir(src), 0o755))
	must(t, os.WriteFile(src, []byte("x"), 0o644))
	link := filepath.Join(ws, "wps_outputs", "finch", "j9", "x.nc")
	eventually(t, "link", func() bool { _, err := os.Stat(link); return err == nil })
	settle(t, b.base)
	must(t, os.Remove(link))
	if _, err := os.Lstat(link); err == nil {
		t.Fatal("link still there")
	}

	if code, _ := post(t, b.base+"/actions/v1/handler.resync", `{"body": {"handler": "FileSystem"}}`); code != http.StatusUnauthorized {
		t.Fatalf("run without token = %d, want 401", code)
	}
	code, st := call(t, http.MethodPost, b.base+"/actions/v1/handler.resync", `{"request_id": "r1", "body": {"handler": "FileSystem", "dry_run": true}}`)
	if code != http.StatusAccepted {
		t.Fatalf("run dry-run resync = %d %v", code, st)
	}
	st = waitAction(t, b.base, "handler.resync", st["action_id"].(string))
	details := st["details"].(map[string]any)
	if st["status"] != "SUCCEEDED" || details["links_created"] != float64(1) || !strings.Contains(fmt.Sprint(details["diff"]), link) {
		_, lerr := os.Lstat(link)
		t.Fatalf("dry run = %v (link: %v)", st, lerr)
	}
	if _, err := os.Stat(link); err == nil {
		t.Fatal("dry run created the link")
	}
	if code, again := call(t, http.MethodPost, b.base+"/actions/v1/handler.resync", `{"request_id": "r1", "body": {"handler": "FileSystem", "dry_run": true}}`); code != http.StatusOK || again["action_id"] != st["action_id"] {
		t.Fatalf("same request_id = %d %v", code, again)
	}

	resp, err := http.DefaultClient.Do(mustRequest(t, http.MethodPut, b.base+"/handlers/FileSystem/resync"))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT resync = %d", resp.StatusCode)
	}
	if a, err1 := os.Stat(src); err1 != nil {
		t.Fatal(err1)
	} else if l, err2 := os.Stat(link); err2 != nil || !os.SameFile(a, l) {
		t.Fatalf("resync did not restore the link: %v", err2)
	}
	code, list := callList(t, b.base+"/actions/v1/handler.resync?status=succeeded&roles=monitor_by")
	if code != http.StatusOK || !strings.Contains(list, "PUT /handlers/FileSystem/resync") {
		t.Fatalf("enumerate = %d %s", code, list)
	}
}

// settle waits until the monitor has delivered every file event: the
// count of delivered events stops changing.
func settle(t *testing.T, base string) {
	t.Helper()
	count := func() string {
		_, text := callList(t, base+"/metrics")
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "cowbird_monitor_events_total ") {
				return line
			}
		}
		return ""
	}
	last, same := count(), 0
	eventually(t, "file events to settle", func() bool {
		time.Sleep(150 * time.Millisecond) // the monitor's coalescing window is 100 ms
		now := count()
		if now == last {
			same++
		} else {
			last, same = now, 0
		}
		return same >= 2
	})
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	must(t, err)
	return req
}

func callList(t *testing.T, url string) (int, string) {
	t.Helper()
	req := mustRequest(t, http.MethodGet, url)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = io.Copy(&buf, resp.Body)
	return resp.StatusCode, buf.String()
}

// TestHookRunsAsTheUser: a user webhook triggers a hook that runs as the new
// user (an OS account of that name), writes into the new workspace and
// reports progress; the hook.run action's log shows the progress and the
// redacted secret masked.
func TestHookRunsAsTheUser(t *testing.T) {
	name, uid, gid := sessiontest.User(t)

	hooksHandler := "  Hooks:\n    active: true\n    priority: 50\n"
	hooksSection := `hooks:
  user_created:
    run_as: "{{Event.UserName}}"
    environments:
      - name: secrets
        onEnter: {command: /bin/sh, args: ["-c", "echo 'cowbird_redacted_env: API_KEY=topsecret42'"]}
    tasks:
      - command: /bin/sh
        args: ["-c", "echo cowbird_progress: 50; echo key=$API_KEY; id -u > {{Handler.WorkspaceDir}}/{{Event.UserName}}/notebooks/hook-was-here; echo cowbird_status: seeded"]
cowbird:
  admin_tokens:
    ops: ` + adminToken + "\n"
	b := startBirdhouseWith(t, hooksHandler, hooksSection)
	// The hook user must reach the tree (t.TempDir makes it root-only) and
	// own its JupyterHub data dir, which the notebooks symlink points to.
	for _, d := range []string{filepath.Dir(b.dir), b.dir} {
		must(t, os.Chmod(d, 0o755))
	}
	home := filepath.Join(b.dir, "jupyterhub_user_data", name)
	must(t, os.Mkdir(home, 0o755))
	must(t, os.Chown(home, int(uid), int(gid)))
	if _, err := b.mp.AddUser(name, "", "users"); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(home, "hook-was-here")
	var got []byte
	eventually(t, "the hook's file", func() bool {
		var err error
		got, err = os.ReadFile(marker) // the shell creates it, then writes it
		return err == nil && strings.HasSuffix(string(got), "\n")
	})
	if strings.TrimSpace(string(got)) != strconv.Itoa(int(uid)) {
		t.Fatalf("hook ran as uid %q, want %d", got, uid)
	}

	var id string
	eventually(t, "a finished hook.run action", func() bool {
		_, list := callList(t, b.base+"/actions/v1/hook.run?status=succeeded,failed&roles=monitor_by")
		var sts []map[string]any
		if json.Unmarshal([]byte(list), &sts) != nil || len(sts) == 0 {
			return false
		}
		id, _ = sts[0]["action_id"].(string)
		return sts[0]["status"] == "SUCCEEDED"
	})
	code, page := call(t, http.MethodGet, b.base+"/actions/v1/hook.run/"+id+"/log?limit=100", "")
	logText := fmt.Sprint(page)
	if code != http.StatusOK || !strings.Contains(logText, "key=********") || strings.Contains(logText, "topsecret42") {
		t.Fatalf("hook log = %d %s", code, logText)
	}
	_, st := call(t, http.MethodGet, b.base+"/actions/v1/hook.run/"+id, "")
	if st["display_status"] != "seeded" && st["display_status"] != "Succeeded" {
		t.Errorf("display_status = %v", st["display_status"])
	}
}

// TestCancelResync cancels a handler.resync while it waits on a slow Magpie:
// the action ends FAILED CANCELED without waiting for Magpie, and the next
// resync brings the tree to the desired state.
func TestCancelResync(t *testing.T) {
	b := startBirdhouseWith(t, "", "cowbird:\n  admin_tokens:\n    ops: "+adminToken+"\n")
	id, err := b.mp.AddUser("fay", "", "users")
	must(t, err)
	ws := filepath.Join(b.dir, "user_workspaces", "fay")
	eventually(t, "fay's workspace", func() bool { _, err := os.Stat(ws); return err == nil })
	settle(t, b.base)
	// 300 outputs whose links are missing, as after an outage.
	for i := range 300 {
		src := filepath.Join(b.dir, "wpsoutputs", "emu", "users", fmt.Sprint(id), fmt.Sprintf("j%d", i%10), fmt.Sprintf("f%d.nc", i))
		must(t, os.MkdirAll(filepath.Dir(src), 0o755))
		must(t, os.WriteFile(src, nil, 0o644))
	}
	settle(t, b.base)
	must(t, os.RemoveAll(filepath.Join(ws, "wps_outputs")))

	// Magpie holds the next permission look-up for a minute: far longer than
	// the test waits for the cancel to take effect.
	const route = "GET /users/{user}/resources/{id}/permissions"
	before := b.mp.Hits(route)
	b.mp.Inject(route, magpietest.Fault{Delay: time.Minute, Times: 1})
	code, st := call(t, http.MethodPost, b.base+"/actions/v1/handler.resync", `{"request_id": "slow", "body": {"handler": "FileSystem"}}`)
	if code != http.StatusAccepted {
		t.Fatalf("run = %d %v", code, st)
	}
	aid := st["action_id"].(string)
	eventually(t, "the resync to wait on Magpie", func() bool { return b.mp.Hits(route) > before })
	if code, st = call(t, http.MethodPost, b.base+"/actions/v1/handler.resync/"+aid+"/cancel", ""); code != http.StatusOK {
		t.Fatalf("cancel = %d %v", code, st)
	}
	st = waitAction(t, b.base, "handler.resync", aid)
	if st["status"] != "FAILED" || st["details"].(map[string]any)["code"] != "CANCELED" {
		t.Fatalf("canceled resync = %v", st)
	}

	code, st = call(t, http.MethodPost, b.base+"/actions/v1/handler.resync", `{"request_id": "again", "body": {"handler": "FileSystem"}}`)
	if code != http.StatusAccepted {
		t.Fatalf("run = %d %v", code, st)
	}
	if st = waitAction(t, b.base, "handler.resync", st["action_id"].(string)); st["status"] != "SUCCEEDED" {
		t.Fatalf("resync after cancel = %v", st)
	}
	for i := range 300 {
		link := filepath.Join(ws, "wps_outputs", "emu", fmt.Sprintf("j%d", i%10), fmt.Sprintf("f%d.nc", i))
		if _, err := os.Stat(link); err != nil {
			t.Fatalf("after the resync: %v", err)
		}
	}
}

// TestPeriodicReconcile: with reconcile_interval set, the daemon runs the
// FileSystem reconcile on its own, as handler.resync actions admins can see.
func TestPeriodicReconcile(t *testing.T) {
	b := startBirdhouseWith(t, "", "cowbird:\n  reconcile_interval: 100ms\n  admin_tokens:\n    ops: "+adminToken+"\n")
	eventually(t, "a periodic reconcile action", func() bool {
		_, list := callList(t, b.base+"/actions/v1/handler.resync?status=succeeded&roles=monitor_by")
		return strings.Contains(list, `"label":"periodic reconcile"`)
	})
	_, metrics := callList(t, b.base+"/metrics")
	if !strings.Contains(metrics, `cowbird_reconcile_runs_total{outcome="ok"}`) {
		t.Fatal("reconcile runs not counted in /metrics")
	}
}

// TestWpsOutputHook: a wps_output_created hook runs for a new WPS output,
// from the FileSystem handler's watch.
func TestWpsOutputHook(t *testing.T) {
	out := filepath.Join(t.TempDir(), "seen")
	hooksSection := `hooks:
  allow_run_as_daemon_user: true
  accounts:
    runner: {uid: ` + strconv.Itoa(os.Getuid()) + `, gid: ` + strconv.Itoa(os.Getgid()) + `}
  wps_output_created:
    run_as: runner
    tasks:
      - {command: /bin/sh, args: ["-c", "echo \"$0\" >> ` + out + `", "{{Event.Path}}"]}
`
	b := startBirdhouseWith(t, "  Hooks:\n    active: true\n", hooksSection)
	src := filepath.Join(b.dir, "wpsoutputs", "finch", "public", "j1", "out.nc")
	must(t, os.MkdirAll(filepath.Dir(src), 0o755))
	must(t, os.WriteFile(src, []byte("x"), 0o644))
	eventually(t, "the hook's record of the new output", func() bool {
		got, err := os.ReadFile(out)
		return err == nil && strings.Contains(string(got), src+"\n")
	})
}
