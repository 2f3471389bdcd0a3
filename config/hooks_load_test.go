package config_test

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/config"
)

func TestLoadHooks(t *testing.T) {
	cfg, _ := mustLoad(t, "testdata/hooks-full.yml", nil)
	if got, want := dispatchOrder(t, cfg), []string{"Hooks"}; !slices.Equal(got, want) {
		t.Errorf("dispatch order = %v, want %v", got, want)
	}
	h := cfg.Hooks
	if h == nil {
		t.Fatal("Hooks = nil")
	}
	if h.DefaultTimeout != 300*time.Second || h.MaxParallel != 2 || h.SessionRoot != "/var/lib/cowbird/sessions" ||
		h.AllowRunAsDaemonUser || h.Env["QUOTA_SERVER"] != "quota.example.org" {
		t.Errorf("settings = %+v", *h)
	}
	wantAccounts := map[string]config.Account{"*": {UID: 1000, GID: 100}, "alice": {UID: 1001, GID: 100, Groups: []uint32{200, 201}}}
	if !reflect.DeepEqual(h.Accounts, wantAccounts) {
		t.Errorf("accounts = %+v, want %+v", h.Accounts, wantAccounts)
	}
	if got := slices.Sorted(maps.Keys(h.Events)); !slices.Equal(got, []string{"permission_created", "user_created", "wps_output_created"}) {
		t.Errorf("events = %v", got)
	}

	uc := h.Events["user_created"]
	if uc.Event != "user_created" || uc.RunAs.String() != "{{ Event.UserName }}" || uc.Group != "birdhouse-users" || !uc.RetainOnFailure {
		t.Errorf("user_created = %+v", *uc)
	}
	if len(uc.Environments) != 1 || len(uc.Tasks) != 1 {
		t.Fatalf("user_created environments %d, tasks %d; want 1 and 1", len(uc.Environments), len(uc.Tasks))
	}
	env := uc.Environments[0]
	if env.Name != "workspace" || env.Variables["WORKSPACE"].String() != "{{Handler.WorkspaceDir}}/{{Event.UserName}}" ||
		env.OnEnter == nil || env.OnEnter.Timeout != 60*time.Second || env.OnExit == nil || env.OnExit.Timeout != 0 {
		t.Errorf("environment = %+v", env)
	}
	task := uc.Tasks[0]
	if task.Command.String() != "/opt/hooks/seed-notebooks.sh" || task.Timeout != 300*time.Second ||
		task.CancelMode != "NOTIFY_THEN_TERMINATE" || task.NotifyPeriod != 30*time.Second {
		t.Errorf("task = %+v", task)
	}
	var args []string
	for _, a := range h.Events["permission_created"].Tasks[0].Args {
		args = append(args, a.String())
	}
	if want := []string{"{{Event.Permission}}", "{{Event.ResourceFullName}}", "{{Event.GroupName}}", "42", ""}; !slices.Equal(args, want) {
		t.Errorf("permission_created args = %q, want %q", args, want)
	}
}

func TestLoadHooksDefaultsAndAbsence(t *testing.T) {
	cfg, _ := mustLoad(t, "testdata/example.yml", exampleEnv)
	if cfg.Hooks != nil {
		t.Errorf("Hooks without a hooks section = %+v, want nil", cfg.Hooks)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "c.yml")
	if err := os.WriteFile(f, []byte("hooks:\n  user_deleted:\n    run_as: svc\n    tasks: [{command: /bin/true}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _ = mustLoad(t, f, nil)
	if h := cfg.Hooks; h.DefaultTimeout != config.DefaultHookTimeout || h.MaxParallel != config.DefaultHookMaxParallel {
		t.Errorf("defaults = %v, %d", h.DefaultTimeout, h.MaxParallel)
	}
}
