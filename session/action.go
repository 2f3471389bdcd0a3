package session

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
)

// CancelMode is how an action is stopped on cancel or timeout.
type CancelMode string

// The cancelation modes of an action (spec B4, B6).
const (
	// Terminate sends SIGKILL to the action's process group at once.
	Terminate CancelMode = "TERMINATE"
	// NotifyThenTerminate writes cancel_info.json, sends SIGTERM to the
	// process group and SIGKILL when the grace period ends.
	NotifyThenTerminate CancelMode = "NOTIFY_THEN_TERMINATE"
)

// Defaults and bounds of action timing (spec B4, D3.3).
const (
	// DefaultExitTimeout bounds an onExit action that sets no Timeout.
	DefaultExitTimeout = 300 * time.Second
	// DefaultEnvNotifyPeriod is the grace of an environment action's
	// NOTIFY_THEN_TERMINATE when NotifyPeriod is zero.
	DefaultEnvNotifyPeriod = 30 * time.Second
	// DefaultTaskNotifyPeriod is the same for a task.
	DefaultTaskNotifyPeriod = 120 * time.Second
	// MaxNotifyPeriod is the longest NotifyPeriod accepted.
	MaxNotifyPeriod = 600 * time.Second
)

// Cancelation says how an action is stopped when it is canceled through its
// context or reaches its timeout.
type Cancelation struct {
	// Mode is TERMINATE (the default when empty) or NOTIFY_THEN_TERMINATE.
	Mode CancelMode
	// NotifyPeriod is the grace between SIGTERM and SIGKILL for
	// NOTIFY_THEN_TERMINATE; zero means 30 s for environment actions and
	// 120 s for tasks; at most 600 s.
	NotifyPeriod time.Duration
}

// Action is one command run as one process group. Nothing is interpreted by
// a shell: Command is executed with Args as they are.
type Action struct {
	// Command is an executable path, or a name looked up in the PATH of the
	// action's own environment.
	Command string
	// Args are the arguments after the command name.
	Args []string
	// Timeout cancels the action (outcome TIMEOUT) after this long; zero
	// means none, except for onExit actions, which get DefaultExitTimeout.
	Timeout time.Duration
	// Cancelation is how a timeout or a canceled context stops the action.
	Cancelation Cancelation
}

// Environment is a named set of variables with optional enter and exit
// actions. While it is entered, its Variables and the variables its OnEnter
// sets through the stdout protocol apply to every later action.
type Environment struct {
	// Name identifies the environment; it is unique among those entered.
	Name string
	// Variables are set for the environment's own actions and every action
	// run while it is entered.
	Variables map[string]string
	// OnEnter runs when the environment is entered; nil means nothing to run.
	OnEnter *Action
	// OnExit runs when the environment is exited, even when OnEnter failed.
	OnExit *Action
}

// ActionState is the state of an action (spec B3).
type ActionState string

// The action states. SUCCESS is spelled as in Open Job Description.
const (
	ActionRunning  ActionState = "RUNNING"
	ActionSuccess  ActionState = "SUCCESS"
	ActionFailed   ActionState = "FAILED"
	ActionCanceled ActionState = "CANCELED"
	ActionTimeout  ActionState = "TIMEOUT"
)

// ActionResult is the status of an action: a point-in-time copy while it
// runs (State RUNNING), and its outcome once it has ended.
type ActionResult struct {
	// Action names the action in the session: "<env>.onEnter",
	// "<env>.onExit" or "task <n>".
	Action string
	// State is RUNNING, then SUCCESS, FAILED, CANCELED or TIMEOUT.
	State ActionState
	// ExitCode is the process's exit status, or minus the signal number
	// that killed it; nil when no process was started.
	ExitCode *int
	// Progress is the last valid cowbird_progress value (0-100).
	Progress *float64
	// StatusMessage is the last cowbird_status text.
	StatusMessage string
	// FailMessage is the last cowbird_fail text, or why the action could
	// not start or was failed by the runner.
	FailMessage string
}

// kind is the role of an action in the session; it decides defaults and
// whether env messages are honored.
type kind int

const (
	kindEnter kind = iota
	kindTask
	kindExit
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validate checks a's fields; errors name the field.
func (a *Action) validate() error {
	var errs []error
	switch {
	case a.Command == "":
		errs = append(errs, errors.New("command: must not be empty"))
	case strings.ContainsFunc(a.Command, unicode.IsControl):
		errs = append(errs, fmt.Errorf("command %q: must not contain control characters", a.Command))
	}
	if a.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: %s is negative", a.Timeout))
	}
	switch a.Cancelation.Mode {
	case "", Terminate, NotifyThenTerminate:
	default:
		errs = append(errs, fmt.Errorf("cancelation.mode: %q is not TERMINATE or NOTIFY_THEN_TERMINATE", a.Cancelation.Mode))
	}
	if p := a.Cancelation.NotifyPeriod; p < 0 || p > MaxNotifyPeriod {
		errs = append(errs, fmt.Errorf("cancelation.notifyPeriod: %s is outside 0-%s", p, MaxNotifyPeriod))
	}
	return errors.Join(errs...)
}

// validate checks e's fields; errors name the environment and the field.
func (e *Environment) validate() error {
	if e.Name == "" {
		return errors.New("environment name: must not be empty")
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(e.Variables)) {
		if !envName.MatchString(name) {
			errs = append(errs, fmt.Errorf("variables: %q is not a valid variable name", name))
		}
	}
	if e.OnEnter != nil {
		if err := e.OnEnter.validate(); err != nil {
			errs = append(errs, fmt.Errorf("onEnter: %w", err))
		}
	}
	if e.OnExit != nil {
		if err := e.OnExit.validate(); err != nil {
			errs = append(errs, fmt.Errorf("onExit: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("environment %q: %w", e.Name, err)
	}
	return nil
}

// resolve returns a with the defaults of its kind filled in.
func resolve(a Action, k kind) Action {
	if a.Cancelation.Mode == "" {
		a.Cancelation.Mode = Terminate
	}
	if a.Cancelation.NotifyPeriod == 0 {
		a.Cancelation.NotifyPeriod = DefaultEnvNotifyPeriod
		if k == kindTask {
			a.Cancelation.NotifyPeriod = DefaultTaskNotifyPeriod
		}
	}
	if a.Timeout == 0 && k == kindExit {
		a.Timeout = DefaultExitTimeout
	}
	return a
}
