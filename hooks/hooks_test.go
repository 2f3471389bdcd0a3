package hooks

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/session"
)

// A user_created hook seeds the workspace, reports progress and registers a
// secret that is masked in everything recorded; the daemon's environment
// does not reach it.
func TestUserCreatedEndToEnd(t *testing.T) {
	t.Setenv("COWBIRD_TEST_DAEMON_SECRET", "daemon-only")
	h, rec, ws := newHandler(t, `
hooks:
  env: {GREETING: hello}
`+selfAccount("alice")+`
  user_created:
    run_as: "{{Event.UserName}}"
    environments:
      - name: workspace
        variables: {WORKSPACE: "{{Handler.WorkspaceDir}}/{{Event.UserName}}"}
        onEnter:
          command: /bin/sh
          args: [-c, 'echo "cowbird_redacted_env: TOKEN=s3cr3t-value"']
    tasks:
      - command: /bin/sh
        args:
          - -c
          - |
            mkdir -p "$1" && echo "$GREETING $2" > "$1/welcome.txt"
            echo cowbird_progress: 50
            echo cowbird_status: seeding
            echo "token is $TOKEN"
            tr '\0' '\n' < /proc/$$/environ | cut -d= -f1 | sort | tr '\n' ' '
          - sh
          - "{{Env.WORKSPACE}}"
          - "{{Event.UserName}} in {{Session.WorkingDirectory}}"
`)
	var uh handlers.UserHandler = h
	if err := uh.UserCreated(context.Background(), handlers.UserEvent{Action: handlers.Created, UserName: "alice"}); err != nil {
		t.Fatalf("UserCreated: %v", err)
	}

	run := await(t, rec.started)
	if run.label != "user_created hook for alice" {
		t.Errorf("label = %q", run.label)
	}
	if err := await(t, run.finished); err != nil {
		t.Errorf("Finish(%v), want nil", err)
	}
	data, err := os.ReadFile(filepath.Join(ws, "alice", "welcome.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(data); !strings.HasPrefix(got, "hello alice in "+h.root+"/user_created-") {
		t.Errorf("welcome.txt = %q", got)
	}

	lines := run.log()
	text := strings.Join(lines, "\n")
	if strings.Contains(text, "s3cr3t-value") {
		t.Errorf("the secret leaked into the recorded log:\n%s", text)
	}
	for _, want := range []string{"workspace.onEnter: cowbird_redacted_env: TOKEN=********", "task 1: token is ********"} {
		if !slices.Contains(lines, want) {
			t.Errorf("recorded log lacks %q:\n%s", want, text)
		}
	}
	wantEnv := slices.Concat(config.HookVars, []string{"GREETING", "TOKEN", "WORKSPACE"})
	slices.Sort(wantEnv)
	if want := "task 1: " + strings.Join(wantEnv, " ") + " "; !slices.Contains(lines, want) {
		t.Errorf("environment names: want line %q in\n%s", want, text)
	}

	run.mu.Lock()
	defer run.mu.Unlock()
	// Two environment steps and one task: the task's 50% is 1.5/3 overall.
	if i := slices.Index(run.statuses, "seeding"); i < 0 || run.progress[i] != 50 {
		t.Errorf("progress %v with statuses %q: want 50 with status seeding", run.progress, run.statuses)
	}
	if last := run.progress[len(run.progress)-1]; last != 100 {
		t.Errorf("last progress = %v, want 100", last)
	}
}

func TestFailingHookNamesTheHook(t *testing.T) {
	h, rec, _ := newHandler(t, "hooks:\n"+selfAccount("bob")+`
  user_deleted:
    run_as: bob
    tasks:
      - {command: /bin/sh, args: [-c, "echo cowbird_fail: quota server down; exit 3"]}
      - {command: /bin/sh, args: [-c, "echo never"]}
`)
	err := h.UserDeleted(context.Background(), handlers.UserEvent{Action: handlers.Deleted, UserName: "bob"})
	want := "hook user_deleted: FAILED: task 1 FAILED (exit code 3): quota server down"
	if err == nil || err.Error() != want {
		t.Fatalf("UserDeleted = %v, want %s", err, want)
	}
	var he *HookError
	if !errors.As(err, &he) || he.Hook != "user_deleted" || len(he.Result.Actions) != 1 {
		t.Errorf("error %#v: want a HookError for user_deleted with one action run", err)
	}
	run := await(t, rec.started)
	if got := await(t, run.finished); got == nil || got.Error() != want {
		t.Errorf("Finish(%v), want %s", got, want)
	}
}

func TestRunOnce(t *testing.T) {
	h, _, _ := newHandler(t, "hooks:\n"+selfAccount("carol")+`
  user_created:
    run_as: "{{Event.UserName}}"
    tasks: [{command: /bin/true}]
  permission_created:
    run_as: nobody-such-user
    tasks: [{command: /bin/true}]
`)
	ctx := context.Background()
	res, err := h.RunOnce(ctx, "user_created", handlers.UserEvent{Action: handlers.Created, UserName: "carol"})
	if err != nil || res.State != session.ActionSuccess || len(res.Actions) != 1 {
		t.Errorf("RunOnce = %+v, %v; want SUCCESS with one action", res, err)
	}
	for _, tc := range []struct {
		event string
		ev    handlers.Event
		want  string
	}{
		{"user_deleted", handlers.UserEvent{UserName: "carol"}, "run hook user_deleted: no hook configured"},
		{"user_created", handlers.PermissionEvent{User: "carol"}, "run hook user_created: event user_created: a permission event cannot trigger it"},
		{"user_created", handlers.UserEvent{UserName: "root"}, `run hook user_created: run_as "root" is root (from the OS user database): a templated run_as never runs as a system account unless hooks.accounts has an entry of that exact name`},
		{"user_created", handlers.UserEvent{UserName: ""}, "run hook user_created: run_as is empty"},
		{"permission_created", handlers.PermissionEvent{User: "carol"}, `run hook permission_created: run_as "nobody-such-user": no such user and no accounts entry`},
	} {
		if _, err := h.RunOnce(ctx, tc.event, tc.ev); err == nil || err.Error() != tc.want {
			t.Errorf("RunOnce(%s, %+v) = %v, want %s", tc.event, tc.ev, err, tc.want)
		}
	}
	// Events without a hook are nothing to do.
	if err := h.PermissionDeleted(ctx, handlers.PermissionEvent{User: "carol"}); err != nil {
		t.Errorf("PermissionDeleted without a hook = %v", err)
	}
}

func TestDaemonUserNeedsOptIn(t *testing.T) {
	h, _, _ := newHandler(t, "hooks:\n  accounts:\n    me: {uid: "+itoa(os.Geteuid())+", gid: 0}\n"+`
  user_created:
    run_as: me
    tasks: [{command: /bin/true}]
`)
	_, err := h.RunOnce(context.Background(), "user_created", handlers.UserEvent{UserName: "x"})
	if err == nil || !strings.Contains(err.Error(), "set hooks.allow_run_as_daemon_user to allow it") {
		t.Errorf("RunOnce as the daemon's user = %v, want a refusal", err)
	}
}

// Every reference the config accepts for an event has a value for an
// event of that kind.
func TestTemplateResolution(t *testing.T) {
	h := &Handler{opts: Options{WorkspaceDir: "/ws", WpsOutputsDir: "/wps"}}
	perm := handlers.PermissionEvent{Action: handlers.Created, ServiceName: "thredds", ServiceType: "thredds",
		ResourceID: 42, ResourceFullName: "thredds/birdhouse/a.nc", PermName: "read", Access: "allow",
		Scope: "recursive", Group: "users"}
	events := map[string]handlers.Event{
		"user_created":        handlers.UserEvent{Action: handlers.Created, UserName: "alice"},
		"user_deleted":        handlers.UserEvent{Action: handlers.Deleted, UserName: "alice"},
		"permission_created":  perm,
		"permission_deleted":  perm,
		"wps_output_created":  handlers.FileEvent{Op: handlers.FileCreated, Path: "/wps/users/1/out.nc"},
		"wps_output_deleted":  handlers.FileEvent{Op: handlers.FileDeleted, Path: "/wps/users/1/out.nc"},
		"shapefile_published": handlers.FileEvent{Op: handlers.FileCreated, Path: "/ws/bob/shapefile_datastore/roads.shp"},
		"shapefile_deleted":   handlers.FileEvent{Op: handlers.FileDeleted, Path: "/ws/bob/shapefile_datastore/roads.shp"},
	}
	if got := slices.Sorted(maps.Keys(events)); !slices.Equal(got, config.HookEvents()) {
		t.Fatalf("test events %v, config events %v", got, config.HookEvents())
	}
	for _, name := range config.HookEvents() {
		vals, err := h.eventValues(name, events[name])
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, ref := range config.HookRefs(name) {
			if _, ok := vals[ref]; !ok {
				t.Errorf("%s: no value for {{%s}}", name, ref)
			}
		}
	}
	for _, tc := range []struct {
		event, tmpl, want string
	}{
		{"user_created", "{{Handler.WorkspaceDir}}/{{ Event.UserName }}", "/ws/alice"},
		{"permission_created", "{{Event.Permission}} on {{Event.ServiceName}}:{{Event.ResourceID}} {{Event.ResourceFullName}}", "read-allow-recursive on thredds:42 thredds/birdhouse/a.nc"},
		{"permission_created", "[{{Event.UserName}}][{{Event.GroupName}}] {{Event.PermissionName}}/{{Event.Access}}/{{Event.Scope}}/{{Event.ServiceType}}", "[][users] read/allow/recursive/thredds"},
		{"wps_output_created", "{{Event.Path}} in {{Handler.WpsOutputsDir}}", "/wps/users/1/out.nc in /wps"},
		{"shapefile_published", "{{Event.UserName}}: {{Event.Path}}", "bob: /ws/bob/shapefile_datastore/roads.shp"},
	} {
		vals, _ := h.eventValues(tc.event, events[tc.event])
		tmpl, err := config.ParseTemplate(tc.tmpl)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := tmpl.Resolve(vals); err != nil || got != tc.want {
			t.Errorf("%s %q = %q, %v; want %q", tc.event, tc.tmpl, got, err, tc.want)
		}
	}
}

func TestFileEventNames(t *testing.T) {
	h := &Handler{opts: Options{WorkspaceDir: "/ws", WpsOutputsDir: "/wps"}}
	for _, tc := range []struct {
		ev   handlers.FileEvent
		want string
	}{
		{handlers.FileEvent{Op: handlers.FileCreated, Path: "/wps/a/b.nc"}, "wps_output_created"},
		{handlers.FileEvent{Op: handlers.FileDeleted, Path: "/wps/b.nc"}, "wps_output_deleted"},
		{handlers.FileEvent{Op: handlers.FileModified, Path: "/wps/b.nc"}, ""},
		{handlers.FileEvent{Op: handlers.FileCreated, Path: "/wps/dir", IsDir: true}, ""},
		{handlers.FileEvent{Op: handlers.FileCreated, Path: "/wps"}, ""},
		{handlers.FileEvent{Op: handlers.FileCreated, Path: "/wpsx/b.nc"}, ""},
		{handlers.FileEvent{Op: handlers.FileCreated, Path: "/ws/bob/shapefile_datastore/roads.shp"}, "shapefile_published"},
		{handlers.FileEvent{Op: handlers.FileDeleted, Path: "/ws/bob/shapefile_datastore/roads.shp"}, "shapefile_deleted"},
		{handlers.FileEvent{Op: handlers.FileCreated, Path: "/ws/bob/shapefile_datastore/roads.dbf"}, ""},
		{handlers.FileEvent{Op: handlers.FileCreated, Path: "/ws/bob/other/roads.shp"}, ""},
		{handlers.FileEvent{Op: handlers.FileCreated, Path: "/ws/../bob/shapefile_datastore/x.shp"}, ""},
	} {
		if got := h.fileEventName(tc.ev); got != tc.want {
			t.Errorf("fileEventName(%+v) = %q, want %q", tc.ev, got, tc.want)
		}
	}
}

func TestSudoAction(t *testing.T) {
	got := sudoAction("/usr/bin/sudo", account{uid: 1000, gid: 100},
		session.Action{Command: "/opt/hooks/seed.sh", Args: []string{"alice", "-n"}, Timeout: 5})
	want := []string{"-n", "-E", "-u", "#1000", "-g", "#100", "--", "/opt/hooks/seed.sh", "alice", "-n"}
	if got.Command != "/usr/bin/sudo" || !slices.Equal(got.Args, want) || got.Timeout != 5 {
		t.Errorf("sudoAction = %+v, want sudo with %q", got, want)
	}
}

// The hook runs with the run_as user's uid and gid when the daemon is root.
func TestImpersonation(t *testing.T) {
	name, uid, gid := osUser(t)
	// A directory the user may write into, outside t.TempDir's 0700 parents.
	out, err := os.MkdirTemp("", "cowbird-hooks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(out) })
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	root, err := os.MkdirTemp("", "cowbird-sessions-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil { // the user must reach its working directory
		t.Fatal(err)
	}
	h, err := New(loadHooks(t, `
hooks:
  user_created:
    run_as: "{{Event.UserName}}"
    tasks:
      - {command: /bin/sh, args: [-c, 'id -u > "$1/id"; id -g >> "$1/id"', sh, "`+out+`"]}
`), Options{SessionRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.RunOnce(context.Background(), "user_created", handlers.UserEvent{UserName: name}); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(out, "id")
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if want := itoa(int(uid)) + "\n" + itoa(int(gid)) + "\n"; string(data) != want {
		t.Errorf("id output = %q, want %q", data, want)
	}
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
		t.Errorf("file owner = %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
}
