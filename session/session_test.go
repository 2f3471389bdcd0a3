package session

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNew(t *testing.T) {
	h := newHarness(t, nil)
	dir := h.s.Dir()
	if !strings.HasPrefix(filepath.Base(dir), "ev1-") {
		t.Errorf("working dir %s: want the prefix ev1-", dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("working dir mode = %o, want 700", fi.Mode().Perm())
	}
	if got := h.s.State(); got != StateReady {
		t.Errorf("state = %s, want READY", got)
	}

	root := t.TempDir()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"empty ID", Options{Root: root}, "ID: "},
		{"ID with slash", Options{ID: "a/b", Root: root}, `ID: "a/b"`},
		{"empty root", Options{ID: "x"}, "Root: must not be empty"},
		{"missing root", Options{ID: "x", Root: filepath.Join(root, "nope")}, "create session x working directory"},
		{"bad base env", Options{ID: "x", Root: root, BaseEnv: []string{"A=1", "NOEQUALS"}}, `BaseEnv[1]: "NOEQUALS"`},
		{"bad var", Options{ID: "x", Root: root, Vars: map[string]string{"1X": ""}}, `Vars: "1X"`},
		{"line cap", Options{ID: "x", Root: root, LineCap: 3}, "LineCap: 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestValidation(t *testing.T) {
	tests := []struct {
		name string
		env  Environment
		want string
	}{
		{"no name", Environment{}, "environment name: must not be empty"},
		{"bad variable", Environment{Name: "e", Variables: map[string]string{"A-B": "x"}}, `environment "e": variables: "A-B"`},
		{"empty command", Environment{Name: "e", OnEnter: &Action{}}, `environment "e": onEnter: command: must not be empty`},
		{"control character", Environment{Name: "e", OnExit: &Action{Command: "a\nb"}}, "onExit: command \"a\\nb\": must not contain control characters"},
		{"negative timeout", Environment{Name: "e", OnExit: &Action{Command: "x", Timeout: -1}}, "onExit: timeout: -1ns is negative"},
		{"bad mode", Environment{Name: "e", OnExit: &Action{Command: "x", Cancelation: Cancelation{Mode: "KILL"}}}, `cancelation.mode: "KILL"`},
		{"long notify", Environment{Name: "e", OnExit: &Action{Command: "x", Cancelation: Cancelation{NotifyPeriod: 601 * time.Second}}}, "cancelation.notifyPeriod: 10m1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			_, err := h.s.EnterEnvironment(context.Background(), tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
			if got := h.s.State(); got != StateReady {
				t.Errorf("state after a refused call = %s, want READY", got)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	if got := resolve(Action{Command: "x"}, kindExit); got.Timeout != 300*time.Second {
		t.Errorf("onExit timeout = %s, want 5m0s", got.Timeout)
	}
	if got := resolve(Action{Command: "x", Timeout: 5 * time.Second}, kindExit); got.Timeout != 5*time.Second {
		t.Errorf("configured onExit timeout = %s, want 5s", got.Timeout)
	}
	for k, want := range map[kind]time.Duration{kindEnter: 30 * time.Second, kindTask: 120 * time.Second, kindExit: 30 * time.Second} {
		got := resolve(Action{Command: "x"}, k)
		if got.Cancelation.NotifyPeriod != want || got.Cancelation.Mode != Terminate {
			t.Errorf("kind %d cancelation = %+v, want TERMINATE with notify period %s", k, got.Cancelation, want)
		}
	}
	if got := resolve(Action{Command: "x"}, kindTask); got.Timeout != 0 {
		t.Errorf("task timeout = %s, want none", got.Timeout)
	}
}

func TestTransitions(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	mustRefuse := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, ErrState) {
			t.Errorf("%s error = %v, want ErrState", op, err)
		}
	}
	wantState := func(want State) {
		t.Helper()
		if got := h.s.State(); got != want {
			t.Fatalf("state = %s, want %s", got, want)
		}
	}

	mustRefuse("cancel in READY", h.s.Cancel(Terminate, 0))
	_, err := h.s.ExitEnvironment(ctx, "a")
	mustRefuse("exit with nothing entered", err)

	checkResult(t, h.enter(Environment{Name: "a", OnEnter: sh("exit 0")}), ActionSuccess, intp(0))
	wantState(StateReady)
	var sawRunning bool
	for _, ev := range drainStatuses(h) {
		sawRunning = sawRunning || (ev.res.State == ActionRunning && ev.state == StateRunning)
	}
	if !sawRunning {
		t.Error("no OnStatus call saw the session RUNNING")
	}
	_, err = h.s.EnterEnvironment(ctx, Environment{Name: "a"})
	mustRefuse("enter a duplicate", err)

	checkResult(t, h.enter(Environment{Name: "b", Variables: map[string]string{"B": "1"}}), ActionSuccess, nil)
	checkResult(t, h.task(sh("exit 0")), ActionSuccess, intp(0))
	wantState(StateReady)

	_, err = h.s.ExitEnvironment(ctx, "a")
	mustRefuse("exit a non-innermost environment", err)
	wantState(StateReady)
	r, err := h.s.ExitEnvironment(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, r, ActionSuccess, nil)
	wantState(StateReadyEnding)

	_, err = h.s.RunTask(ctx, *sh("exit 0"))
	mustRefuse("run a task in READY_ENDING", err)
	_, err = h.s.EnterEnvironment(ctx, Environment{Name: "c"})
	mustRefuse("enter in READY_ENDING", err)

	if _, err := h.s.ExitEnvironment(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	wantState(StateReadyEnding)
	if _, err := h.s.End(ctx); err != nil {
		t.Fatal(err)
	}
	wantState(StateEnded)
	if _, err := os.Stat(h.s.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("working dir after End: %v, want it removed", err)
	}
	if _, err := h.s.End(ctx); err != nil {
		t.Errorf("second End: %v", err)
	}
	_, err = h.s.RunTask(ctx, *sh("exit 0"))
	mustRefuse("run a task when ENDED", err)
}

func drainStatuses(h *harness) []statusEvent {
	var evs []statusEvent
	for {
		select {
		case ev := <-h.statuses:
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

func TestRunningRefusesEverythingButCancel(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	done := h.start(ctx, sh("echo ready; exec sleep 1000"))
	h.waitLine("ready")
	for op, err := range map[string]error{
		"run task": func() error { _, err := h.s.RunTask(ctx, *sh("exit 0")); return err }(),
		"enter":    func() error { _, err := h.s.EnterEnvironment(ctx, Environment{Name: "x"}); return err }(),
		"end":      func() error { _, err := h.s.End(ctx); return err }(),
	} {
		if !errors.Is(err, ErrState) {
			t.Errorf("%s while RUNNING: error = %v, want ErrState", op, err)
		}
	}
	if err := h.s.Cancel(Terminate, 0); err != nil {
		t.Fatal(err)
	}
	checkResult(t, await(t, done), ActionCanceled, intp(-int(syscall.SIGKILL)))
	if got := h.s.State(); got != StateReadyEnding {
		t.Errorf("state after a cancel = %s, want READY_ENDING", got)
	}
}

func TestFailedEnterIsStillExited(t *testing.T) {
	order := filepath.Join(t.TempDir(), "order")
	h := newHarness(t, func(o *Options) { o.Vars = map[string]string{"ORDER": order} })
	checkResult(t, h.enter(Environment{Name: "a", OnExit: sh(`echo a >>"$ORDER"`)}), ActionSuccess, nil)
	checkResult(t, h.enter(Environment{Name: "b", OnEnter: sh("exit 3"), OnExit: sh(`echo b >>"$ORDER"`)}), ActionFailed, intp(3))
	if got := h.s.State(); got != StateReadyEnding {
		t.Fatalf("state after a failed enter = %s, want READY_ENDING", got)
	}
	if _, err := h.s.RunTask(context.Background(), *sh("exit 0")); !errors.Is(err, ErrState) {
		t.Errorf("RunTask after a failed enter: error = %v, want ErrState", err)
	}
	exits, err := h.s.End(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(exits) != 2 || exits[0].Action != "b.onExit" || exits[1].Action != "a.onExit" {
		t.Errorf("End results = %+v, want b.onExit then a.onExit", exits)
	}
	if b, _ := os.ReadFile(order); string(b) != "b\na\n" {
		t.Errorf("onExit order = %q, want b then a", b)
	}
}

func TestRun(t *testing.T) {
	marks := t.TempDir()
	mark := func(name string) *Action { return sh("echo " + name + ` >>"$MARKS/log"`) }
	readMarks := func() string {
		b, _ := os.ReadFile(filepath.Join(marks, "log"))
		return strings.ReplaceAll(string(b), "\n", " ")
	}
	labels := func(rs []ActionResult) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Action+"="+string(r.State))
		}
		return out
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		ctx       context.Context
		envs      []Environment
		tasks     []*Action
		state     ActionState
		actions   []string
		marks     string
		errSubstr string
	}{
		{
			name:    "success",
			envs:    []Environment{{Name: "a", OnEnter: mark("enter-a"), OnExit: mark("exit-a")}},
			tasks:   []*Action{mark("t1"), mark("t2")},
			state:   ActionSuccess,
			actions: []string{"a.onEnter=SUCCESS", "task 1=SUCCESS", "task 2=SUCCESS", "a.onExit=SUCCESS"},
			marks:   "enter-a t1 t2 exit-a ",
		},
		{
			name: "failed enter skips the rest and exits everything",
			envs: []Environment{
				{Name: "a", OnEnter: mark("enter-a"), OnExit: mark("exit-a")},
				{Name: "b", OnEnter: sh("exit 4"), OnExit: mark("exit-b")},
				{Name: "c", OnEnter: mark("enter-c"), OnExit: mark("exit-c")},
			},
			tasks:   []*Action{mark("t1")},
			state:   ActionFailed,
			actions: []string{"a.onEnter=SUCCESS", "b.onEnter=FAILED", "b.onExit=SUCCESS", "a.onExit=SUCCESS"},
			marks:   "enter-a exit-b exit-a ",
		},
		{
			name:    "failed task skips the next one",
			envs:    []Environment{{Name: "a", OnExit: mark("exit-a")}},
			tasks:   []*Action{sh("exit 1"), mark("t2")},
			state:   ActionFailed,
			actions: []string{"a.onEnter=SUCCESS", "task 1=FAILED", "a.onExit=SUCCESS"},
			marks:   "exit-a ",
		},
		{
			name:    "done context still runs onExit",
			ctx:     canceled,
			envs:    []Environment{{Name: "a", OnEnter: mark("enter-a"), OnExit: mark("exit-a")}},
			tasks:   []*Action{mark("t1")},
			state:   ActionFailed,
			actions: []string{"a.onEnter=FAILED", "a.onExit=SUCCESS"},
			marks:   "exit-a ",
		},
		{
			name:      "invalid definitions run nothing",
			envs:      []Environment{{Name: "a", OnEnter: mark("enter-a")}},
			tasks:     []*Action{{Args: []string{"x"}}},
			state:     ActionFailed,
			marks:     "",
			errSubstr: "task 1: command: must not be empty",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(filepath.Join(marks, "log"))
			h := newHarness(t, func(o *Options) { o.Vars = map[string]string{"MARKS": marks} })
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			var tasks []Action
			for _, a := range tt.tasks {
				tasks = append(tasks, *a)
			}
			res := h.s.Run(ctx, tt.envs, tasks)
			if res.State != tt.state {
				t.Errorf("state = %s, want %s", res.State, tt.state)
			}
			if got := labels(res.Actions); !slices.Equal(got, tt.actions) {
				t.Errorf("actions = %v, want %v", got, tt.actions)
			}
			if got := readMarks(); got != tt.marks {
				t.Errorf("marks = %q, want %q", got, tt.marks)
			}
			if tt.errSubstr == "" && res.Err != nil || tt.errSubstr != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tt.errSubstr)) {
				t.Errorf("error = %v, want %q", res.Err, tt.errSubstr)
			}
			if got := h.s.State(); got != StateEnded {
				t.Errorf("session state = %s, want ENDED", got)
			}
		})
	}
}

func TestOutcomes(t *testing.T) {
	notifyLoop := `trap 'echo term' TERM; while :; do sleep 1000 & wait $!; done`
	tests := []struct {
		name    string
		action  *Action
		state   ActionState
		code    *int
		anyCode bool
		fail    string
	}{
		{name: "exit 0", action: sh("exit 0"), state: ActionSuccess, code: intp(0)},
		{name: "non-zero exit", action: sh("exit 7"), state: ActionFailed, code: intp(7)},
		{name: "fail message", action: sh("echo 'cowbird_fail: boom'"), state: ActionFailed, code: intp(0), fail: "boom"},
		{name: "missing command", action: &Action{Command: "/nonexistent/hook"}, state: ActionFailed, fail: "no such file or directory"},
		{name: "command not in PATH", action: &Action{Command: "no-such-hook"}, state: ActionFailed, fail: "not found in the action's PATH"},
		{name: "command found in PATH", action: &Action{Command: "true"}, state: ActionSuccess, code: intp(0)},
		{name: "timeout", action: &Action{Command: "sleep", Args: []string{"1000"}, Timeout: 10 * time.Millisecond},
			state: ActionTimeout, code: intp(-int(syscall.SIGKILL))},
		{name: "timeout with notify", action: &Action{Command: "/bin/sh", Args: []string{"-c", notifyLoop}, Timeout: 10 * time.Millisecond,
			Cancelation: Cancelation{Mode: NotifyThenTerminate, NotifyPeriod: 10 * time.Millisecond}},
			state: ActionTimeout, anyCode: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			r := h.task(tt.action)
			if tt.anyCode {
				if r.State != tt.state || r.ExitCode == nil {
					t.Errorf("result = %s with exit code %v, want %s with one", r.State, r.ExitCode, tt.state)
				}
			} else {
				checkResult(t, r, tt.state, tt.code)
			}
			if !strings.Contains(r.FailMessage, tt.fail) {
				t.Errorf("fail message = %q, want it to contain %q", r.FailMessage, tt.fail)
			}
		})
	}
}

func TestCancelByContext(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := h.start(ctx, sh("echo ready; exec sleep 1000"))
	h.waitLine("ready")
	cancel()
	checkResult(t, await(t, done), ActionCanceled, intp(-int(syscall.SIGKILL)))
}

func TestNotifyThenTerminate(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "term")
	h := newHarness(t, func(o *Options) { o.Vars = map[string]string{"MARK": marker} })
	done := h.start(context.Background(), sh(`trap 'echo term >>"$MARK"; echo got-term' TERM
echo ready
while :; do sleep 1000 & wait $!; done`))
	h.waitLine("ready")
	notifyEnd := func() time.Time {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(h.s.Dir(), "cancel_info.json"))
		if err != nil {
			t.Fatal(err)
		}
		var info map[string]string
		if err := json.Unmarshal(b, &info); err != nil || len(info) != 1 {
			t.Fatalf("cancel_info.json = %s (%v), want one key NotifyEnd", b, err)
		}
		end, err := time.Parse("2006-01-02T15:04:05Z", info["NotifyEnd"])
		if err != nil {
			t.Fatalf("NotifyEnd: %v", err)
		}
		return end
	}

	before := time.Now()
	if err := h.s.Cancel(NotifyThenTerminate, time.Hour); err != nil {
		t.Fatal(err)
	}
	h.waitLine("got-term")
	first := notifyEnd()
	if first.Before(before.Add(time.Hour).Truncate(time.Second)) {
		t.Errorf("NotifyEnd = %s, want about an hour after %s", first, before)
	}

	if err := h.s.Cancel(NotifyThenTerminate, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	h.waitLine("got-term") // the job may get SIGTERM more than once
	if second := notifyEnd(); !second.Equal(first) {
		t.Errorf("NotifyEnd after a longer cancel = %s, want unchanged %s", second, first)
	}

	if err := h.s.Cancel(NotifyThenTerminate, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	checkResult(t, await(t, done), ActionCanceled, intp(-int(syscall.SIGKILL)))
	if third := notifyEnd(); !third.Before(first) {
		t.Errorf("NotifyEnd after a shorter cancel = %s, want before %s", third, first)
	}
	if b, _ := os.ReadFile(marker); strings.Count(string(b), "term") < 2 {
		t.Errorf("trap marker = %q, want SIGTERM seen at least twice", b)
	}
}

func TestCancelGraceZeroKillsAtOnce(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "term")
	h := newHarness(t, func(o *Options) { o.Vars = map[string]string{"MARK": marker} })
	done := h.start(context.Background(), sh(`trap 'echo term >"$MARK"' TERM; echo ready; while :; do sleep 1000 & wait $!; done`))
	h.waitLine("ready")
	if err := h.s.Cancel(NotifyThenTerminate, 0); err != nil {
		t.Fatal(err)
	}
	checkResult(t, await(t, done), ActionCanceled, intp(-int(syscall.SIGKILL)))
	for _, p := range []string{marker, filepath.Join(h.s.Dir(), "cancel_info.json")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want no such file (no SIGTERM, no notice)", p, err)
		}
	}
}

func TestBackgroundProcessHoldingOutput(t *testing.T) {
	h := newHarness(t, nil)
	done := h.start(context.Background(), sh("sleep 1000 & echo $!"))
	r := await(t, done)
	checkResult(t, r, ActionSuccess, intp(0))
	if !strings.Contains(h.logText(), "output still open") {
		t.Error("no warning about the output held open")
	}
	out := h.output()
	if len(out) != 1 {
		t.Fatalf("output = %q, want the background pid", out)
	}
	pid, err := strconv.Atoi(out[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	reap(t, pid)
}

// reap waits for pid, a process reparented to the test binary (a child
// subreaper), and returns how it ended.
func reap(t *testing.T, pid int) unix.WaitStatus {
	t.Helper()
	ch := make(chan unix.WaitStatus, 1)
	go func() {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			t.Errorf("wait4 %d: %v", pid, err)
		}
		ch <- ws
	}()
	return await(t, ch)
}

func TestRetainOnFailure(t *testing.T) {
	for _, tt := range []struct {
		name   string
		retain bool
		script string
		kept   bool
	}{
		{"failed and retained", true, "exit 1", true},
		{"succeeded", true, "exit 0", false},
		{"failed, not retained", false, "exit 1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.RetainOnFailure = tt.retain })
			h.task(sh(tt.script))
			if _, err := h.s.End(context.Background()); err != nil {
				t.Fatal(err)
			}
			_, err := os.Stat(h.s.Dir())
			if kept := err == nil; kept != tt.kept {
				t.Errorf("working dir kept = %v (%v), want %v", kept, err, tt.kept)
			}
		})
	}
}

func TestLineCap(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.LineCap = 16 })
	h.task(sh(`printf '%040d\n' 0; printf '0123456789abcdef\r\n'; printf 'last'`))
	want := []string{strings.Repeat("0", 16), strings.Repeat("0", 16), strings.Repeat("0", 8), "0123456789abcdef", "last"}
	if got := h.output(); !slices.Equal(got, want) {
		t.Errorf("lines = %q, want %q", got, want)
	}
}
