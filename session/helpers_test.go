package session

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"
)

// TestMain makes the test binary a child subreaper, so background processes
// left by the scripts become its children and can be reaped with Wait4.
func TestMain(m *testing.M) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// hangGuard bounds every wait of the tests.
const hangGuard = 30 * time.Second

// statusEvent is an OnStatus call and the session state seen from inside it.
type statusEvent struct {
	res   ActionResult
	state State
}

// harness is a session whose output lines, statuses and log records are
// recorded.
type harness struct {
	t        *testing.T
	s        *Session
	lines    chan string
	statuses chan statusEvent
	logs     *logtest.Hook
}

func newHarness(t *testing.T, mod func(*Options)) *harness {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	h := &harness{t: t, lines: make(chan string, 1000), statuses: make(chan statusEvent, 1000), logs: hook}
	opts := Options{
		ID:       "ev1",
		Root:     t.TempDir(),
		BaseEnv:  []string{"PATH=/usr/bin:/bin"},
		Log:      logrus.NewEntry(logger),
		OnOutput: func(_, line string) { h.lines <- line },
		OnStatus: func(r ActionResult) { h.statuses <- statusEvent{r, h.s.State()} },
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.s = s
	return h
}

// sh is an action running script with /bin/sh -c (tests only: the runner
// itself never uses a shell).
func sh(script string) *Action {
	return &Action{Command: "/bin/sh", Args: []string{"-c", script}}
}

// start runs a as a task in the background.
func (h *harness) start(ctx context.Context, a *Action) <-chan ActionResult {
	ch := make(chan ActionResult, 1)
	go func() {
		r, err := h.s.RunTask(ctx, *a)
		if err != nil {
			h.t.Errorf("RunTask: %v", err)
		}
		ch <- r
	}()
	return ch
}

// task runs a as a task and fails the test on an error.
func (h *harness) task(a *Action) ActionResult {
	h.t.Helper()
	r, err := h.s.RunTask(context.Background(), *a)
	if err != nil {
		h.t.Fatalf("RunTask: %v", err)
	}
	return r
}

// enter enters env and fails the test on an error.
func (h *harness) enter(env Environment) ActionResult {
	h.t.Helper()
	r, err := h.s.EnterEnvironment(context.Background(), env)
	if err != nil {
		h.t.Fatalf("EnterEnvironment: %v", err)
	}
	return r
}

// waitLine reads output lines until want shows up.
func (h *harness) waitLine(want string) {
	h.t.Helper()
	deadline := time.After(hangGuard)
	for {
		select {
		case l := <-h.lines:
			if l == want {
				return
			}
		case <-deadline:
			h.t.Fatalf("output line %q never came", want)
		}
	}
}

// output returns the lines recorded so far.
func (h *harness) output() []string {
	var out []string
	for {
		select {
		case l := <-h.lines:
			out = append(out, l)
		default:
			return out
		}
	}
}

// logText joins every log message recorded so far.
func (h *harness) logText() string {
	var b strings.Builder
	for _, e := range h.logs.AllEntries() {
		b.WriteString(e.Message + "\n")
	}
	return b.String()
}

// await returns the value ch delivers, failing after hangGuard.
func await[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangGuard):
		t.Fatal("hang guard: no result")
		panic("unreachable")
	}
}

func intp(i int) *int { return &i }

// checkResult compares the state and exit code (nil: none) of r.
func checkResult(t *testing.T, r ActionResult, state ActionState, code *int) {
	t.Helper()
	if r.State != state {
		t.Errorf("%s state = %s, want %s (fail message %q)", r.Action, r.State, state, r.FailMessage)
	}
	switch {
	case code == nil && r.ExitCode != nil:
		t.Errorf("%s exit code = %d, want none", r.Action, *r.ExitCode)
	case code != nil && r.ExitCode == nil:
		t.Errorf("%s exit code = none, want %d", r.Action, *code)
	case code != nil && *code != *r.ExitCode:
		t.Errorf("%s exit code = %d, want %d", r.Action, *r.ExitCode, *code)
	}
}
