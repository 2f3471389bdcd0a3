// Package session runs hook commands in Open Job Description-style sessions
// (spec actions_sessions.md Part B and §D3): a working directory, a stack of
// environments entered and exited in LIFO order, one action (process group)
// at a time, and cancelation by SIGKILL, or by SIGTERM then SIGKILL, to the
// whole process group. Nothing runs through a shell and the daemon's
// environment is never inherited.
//
// An action's stdout and stderr are read as one stream of lines. A line that
// is exactly "cowbird_<kind>: <payload>" (or "openjd_<kind>: <payload>") is a
// protocol message: progress (0-100), status, fail (the action then fails
// even with exit code 0), and, honored in onEnter only, env NAME=VALUE,
// unset_env NAME and redacted_env NAME=VALUE (a JSON string payload allows
// multi-line values). A malformed env message fails the onEnter; anything
// else, near misses included, is plain output. Redacted values are masked as
// "********" in every later output line, status and log record.
package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// DefaultLineCap is the longest output line handled as one line.
const DefaultLineCap = 64 << 10

// State is the state of a session (spec B2).
type State string

// The session states.
const (
	// StateReady accepts EnterEnvironment, RunTask and ExitEnvironment.
	StateReady State = "READY"
	// StateRunning has an action running; only Cancel is accepted.
	StateRunning State = "RUNNING"
	// StateReadyEnding follows a failure or an exit: only ExitEnvironment
	// (and End) are accepted.
	StateReadyEnding State = "READY_ENDING"
	// StateEnded is final: the working directory is gone or retained.
	StateEnded State = "ENDED"
)

// ErrState is wrapped by the errors of calls the session's state (or the
// LIFO order of environments) does not allow.
var ErrState = errors.New("not allowed in this session state")

// Credential is the user actions run as.
type Credential struct {
	// Uid and Gid are the user and primary group ids.
	Uid, Gid uint32
	// Groups are the supplementary groups; nil means none.
	Groups []uint32
}

// Options configure a session.
type Options struct {
	// ID names the session; the working directory is <Root>/<ID>-XXXX.
	ID string
	// Root is an existing directory to create the working directory in.
	Root string
	// Credential is the user actions run as; nil (or the daemon's own uid)
	// runs them as the daemon's user. Another user needs the daemon to run
	// as root; the working directory is then owned by that user.
	Credential *Credential
	// BaseEnv is the actions' base environment as NAME=VALUE entries. The
	// daemon's own environment is never inherited.
	BaseEnv []string
	// Vars are session variables (such as COWBIRD_EVENT), over BaseEnv.
	// COWBIRD_SESSION_DIR is always set to the working directory.
	Vars map[string]string
	// RetainOnFailure keeps the working directory at End if an action of
	// the session did not succeed.
	RetainOnFailure bool
	// LineCap is the longest output line, in bytes (default 64 KiB, at
	// least 16); longer lines are cut into pieces of at most LineCap bytes.
	LineCap int
	// Log receives the session's records; nil discards them.
	Log *logrus.Entry
	// OnOutput, if set, receives every output line of an action, protocol
	// lines included, with secrets masked. It runs on the output reader
	// goroutine and must return quickly.
	OnOutput func(action, line string)
	// OnStatus, if set, receives an action's status when it starts, on each
	// valid progress, status and fail message, and at its end. It may run on
	// the output reader goroutine or the caller's and must return quickly;
	// it may call State but not start actions.
	OnStatus func(ActionResult)
}

// validate checks o's fields; errors name the field.
func (o *Options) validate() error {
	var errs []error
	if o.ID == "" || strings.ContainsAny(o.ID, "/\x00") || o.ID == "." || o.ID == ".." {
		errs = append(errs, fmt.Errorf("ID: %q is not a valid directory name prefix", o.ID))
	}
	if o.Root == "" {
		errs = append(errs, errors.New("Root: must not be empty"))
	}
	for i, kv := range o.BaseEnv {
		if name, _, ok := strings.Cut(kv, "="); !ok || !envName.MatchString(name) {
			errs = append(errs, fmt.Errorf("BaseEnv[%d]: %q is not NAME=VALUE", i, kv))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(o.Vars)) {
		if !envName.MatchString(name) {
			errs = append(errs, fmt.Errorf("Vars: %q is not a valid variable name", name))
		}
	}
	if o.LineCap != 0 && o.LineCap < 16 {
		errs = append(errs, fmt.Errorf("LineCap: %d is below the minimum of 16", o.LineCap))
	}
	return errors.Join(errs...)
}

// entered is an environment on the session's stack, with the changes its
// onEnter made through the stdout protocol.
type entered struct {
	Environment
	set   map[string]string
	unset map[string]bool
}

// Session runs actions one at a time in a working directory. Cancel and
// State may be called from any goroutine; the other methods must not be
// called concurrently with each other.
type Session struct {
	opts    Options
	dir     string
	cred    *syscall.Credential
	lineCap int
	log     *logrus.Entry
	red     redactor

	mu         sync.Mutex
	state      State
	envs       []*entered // attempted, in entry order
	endingOnly bool       // an environment was exited
	failed     bool       // an action did not succeed
	cur        *run       // the running action
	tasks      int
}

// New validates opts and creates the session's working directory (mode
// 0700, owned by the Credential's user when there is one).
func New(opts Options) (*Session, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	s := &Session{opts: opts, lineCap: opts.LineCap, log: opts.Log, state: StateReady}
	if s.lineCap == 0 {
		s.lineCap = DefaultLineCap
	}
	if s.log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		s.log = logrus.NewEntry(l)
	}
	s.log = s.log.WithField("session_id", opts.ID)
	if c := opts.Credential; c != nil && int(c.Uid) != os.Getuid() {
		s.cred = &syscall.Credential{Uid: c.Uid, Gid: c.Gid, Groups: c.Groups}
	}
	dir, err := os.MkdirTemp(opts.Root, opts.ID+"-")
	if err != nil {
		return nil, fmt.Errorf("create session %s working directory: %w", opts.ID, err)
	}
	s.dir = dir
	if s.cred != nil {
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return nil, errors.Join(fmt.Errorf("chown session %s working directory: %w", opts.ID, err), os.Remove(dir))
		}
	}
	return s, nil
}

// Dir is the session's working directory.
func (s *Session) Dir() string { return s.dir }

// State is the session's current state.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// EnterEnvironment enters env and runs its OnEnter, if any (an environment
// without one succeeds with no exit code). It is allowed in READY only. The
// environment counts as entered, and must be exited, even when OnEnter fails.
func (s *Session) EnterEnvironment(ctx context.Context, env Environment) (ActionResult, error) {
	if err := env.validate(); err != nil {
		return ActionResult{}, fmt.Errorf("enter environment: %w", err)
	}
	s.mu.Lock()
	if err := s.allow("enter environment "+env.Name, StateReady); err != nil {
		s.mu.Unlock()
		return ActionResult{}, err
	}
	if slices.ContainsFunc(s.envs, func(e *entered) bool { return e.Name == env.Name }) {
		s.mu.Unlock()
		return ActionResult{}, fmt.Errorf("enter environment %s: already entered: %w", env.Name, ErrState)
	}
	e := &entered{Environment: env, set: map[string]string{}, unset: map[string]bool{}}
	s.envs = append(s.envs, e)
	r := s.startLocked(ctx, env.Name+".onEnter", env.OnEnter, kindEnter, e)
	s.mu.Unlock()
	return s.wait(ctx, r), nil
}

// RunTask runs a as a task. It is allowed in READY only.
func (s *Session) RunTask(ctx context.Context, a Action) (ActionResult, error) {
	if err := a.validate(); err != nil {
		return ActionResult{}, fmt.Errorf("run task: %w", err)
	}
	s.mu.Lock()
	if err := s.allow("run task", StateReady); err != nil {
		s.mu.Unlock()
		return ActionResult{}, err
	}
	s.tasks++
	r := s.startLocked(ctx, fmt.Sprintf("task %d", s.tasks), &a, kindTask, nil)
	s.mu.Unlock()
	return s.wait(ctx, r), nil
}

// ExitEnvironment runs the OnExit of the innermost entered environment,
// which must be name, and removes it. It is allowed in READY and
// READY_ENDING, and leaves the session READY_ENDING: once an environment is
// exited, no task or environment can start.
func (s *Session) ExitEnvironment(ctx context.Context, name string) (ActionResult, error) {
	s.mu.Lock()
	op := "exit environment " + name
	if err := s.allow(op, StateReady, StateReadyEnding); err != nil {
		s.mu.Unlock()
		return ActionResult{}, err
	}
	if len(s.envs) == 0 || s.envs[len(s.envs)-1].Name != name {
		var inner string
		if len(s.envs) > 0 {
			inner = s.envs[len(s.envs)-1].Name
		}
		s.mu.Unlock()
		return ActionResult{}, fmt.Errorf("%s: the innermost environment is %q (exits are LIFO): %w", op, inner, ErrState)
	}
	s.endingOnly = true
	e := s.envs[len(s.envs)-1]
	r := s.startLocked(ctx, name+".onExit", e.OnExit, kindExit, nil) // e's variables still apply
	s.envs = s.envs[:len(s.envs)-1]
	s.mu.Unlock()
	return s.wait(ctx, r), nil
}

// Cancel cancels the running action: TERMINATE, or a grace of zero, kills
// its process group at once; NOTIFY_THEN_TERMINATE writes cancel_info.json
// into the working directory, sends SIGTERM to the group and SIGKILL after
// grace. A later Cancel can shorten the grace, never lengthen it. The
// action ends CANCELED (TIMEOUT if its timeout had fired). It is allowed in
// RUNNING only.
func (s *Session) Cancel(mode CancelMode, grace time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.allow("cancel", StateRunning); err != nil {
		return err
	}
	if s.cur != nil && s.cur.cmd != nil {
		s.cur.cancel(mode, grace, byCaller)
	}
	return nil
}

// End exits every entered environment, innermost first (their onExit runs
// even if their onEnter failed), then removes the working directory, unless
// RetainOnFailure is set and an action did not succeed. The session is then
// ENDED; End on an ended session does nothing. ctx bounds the onExit actions
// as it does any action: pass context.WithoutCancel(ctx) to run them after
// a shutdown began (each still has its timeout, DefaultExitTimeout unless
// set). It returns the onExit results.
func (s *Session) End(ctx context.Context) ([]ActionResult, error) {
	var results []ActionResult
	for {
		s.mu.Lock()
		switch {
		case s.state == StateEnded:
			s.mu.Unlock()
			return results, nil
		case s.state == StateRunning:
			s.mu.Unlock()
			return results, fmt.Errorf("end session: session is %s: %w", StateRunning, ErrState)
		case len(s.envs) == 0:
			s.state = StateEnded
			retain := s.failed && s.opts.RetainOnFailure
			s.mu.Unlock()
			return results, s.cleanup(retain)
		}
		name := s.envs[len(s.envs)-1].Name
		s.mu.Unlock()
		res, err := s.ExitEnvironment(ctx, name)
		if err != nil {
			return results, fmt.Errorf("end session: %w", err)
		}
		results = append(results, res)
	}
}

// Result is the outcome of Run.
type Result struct {
	// State is SUCCESS, or the state of the first action that did not
	// succeed (FAILED when the definitions were invalid).
	State ActionState
	// Actions are the results of the actions run, in order.
	Actions []ActionResult
	// Err reports invalid definitions, calls the session refused, and a
	// working directory that could not be removed.
	Err error
}

// Run does a whole brittle session (spec D3.1): it checks every definition,
// enters envs in order, runs tasks, then ends the session. After the first
// action that does not succeed, the remaining enters and tasks are skipped;
// every environment entered is still exited, innermost first, even after ctx
// is done (the onExit actions are bounded by their timeouts).
func (s *Session) Run(ctx context.Context, envs []Environment, tasks []Action) Result {
	res := Result{State: ActionSuccess}
	record := func(r ActionResult, err error) {
		if err != nil {
			res.Err = errors.Join(res.Err, err)
			r.State = ActionFailed
		} else {
			res.Actions = append(res.Actions, r)
		}
		if res.State == ActionSuccess {
			res.State = r.State
		}
	}
	for _, e := range envs {
		if err := e.validate(); err != nil {
			record(ActionResult{}, fmt.Errorf("run session: %w", err))
		}
	}
	for i, t := range tasks {
		if err := t.validate(); err != nil {
			record(ActionResult{}, fmt.Errorf("run session: task %d: %w", i+1, err))
		}
	}
	for _, e := range envs {
		if res.State != ActionSuccess {
			break
		}
		record(s.EnterEnvironment(ctx, e))
	}
	for _, t := range tasks {
		if res.State != ActionSuccess {
			break
		}
		record(s.RunTask(ctx, t))
	}
	exits, err := s.End(context.WithoutCancel(ctx))
	for _, r := range exits {
		record(r, nil)
	}
	if err != nil {
		res.Err = errors.Join(res.Err, err)
	}
	return res
}

func (s *Session) cleanup(retain bool) error {
	if retain {
		s.log.WithField("path", s.dir).Info("session failed: working directory retained")
		return nil
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove session working directory: %w", err)
	}
	return nil
}

// allow checks that the session is in one of states; s.mu is held.
func (s *Session) allow(op string, states ...State) error {
	if !slices.Contains(states, s.state) {
		return fmt.Errorf("%s: session is %s: %w", op, s.state, ErrState)
	}
	return nil
}

// startLocked moves the session to RUNNING and starts a (nil: nothing to
// run) with the environment composed now; s.mu is held.
func (s *Session) startLocked(ctx context.Context, label string, a *Action, k kind, e *entered) *run {
	s.state = StateRunning
	r := &run{s: s, label: label, env: e, log: s.log.WithField("action", label)}
	s.cur = r
	if a == nil {
		r.result = ActionResult{Action: label, State: ActionSuccess}
		return r
	}
	r.action = resolve(*a, k)
	r.start(ctx, s.environ())
	return r
}

// wait follows r to its outcome and moves the session to READY, or to
// READY_ENDING after a failure or an exit.
func (s *Session) wait(ctx context.Context, r *run) ActionResult {
	if r.cmd != nil {
		r.wait(ctx)
	}
	res := r.finish()
	s.mu.Lock()
	s.cur = nil
	if res.State != ActionSuccess {
		s.failed = true
	}
	s.state = StateReady
	if s.failed || s.endingOnly {
		s.state = StateReadyEnding
	}
	s.mu.Unlock()
	entry := r.log.WithField("content_kind", "PROCESS_CONTROL").WithField("state", res.State)
	if res.FailMessage != "" {
		entry = entry.WithField("fail_message", res.FailMessage)
	}
	entry.Info("action ended")
	s.notify(res)
	return res
}

// notify passes a status to the OnStatus callback.
func (s *Session) notify(res ActionResult) {
	if s.opts.OnStatus != nil {
		s.opts.OnStatus(res)
	}
}

// environ composes an action's environment (spec D3.7), lowest precedence
// first: BaseEnv, Vars, COWBIRD_SESSION_DIR, then each entered environment
// in entry order: its Variables, the variables its onEnter set, minus those
// it unset (an unset wins over a set in the same environment).
func (s *Session) environ() []string {
	m := map[string]string{}
	for _, kv := range s.opts.BaseEnv {
		name, value, _ := strings.Cut(kv, "=")
		m[name] = value
	}
	maps.Copy(m, s.opts.Vars)
	m["COWBIRD_SESSION_DIR"] = s.dir
	for _, e := range s.envs {
		maps.Copy(m, e.Variables)
		maps.Copy(m, e.set)
		for name := range e.unset {
			delete(m, name)
		}
	}
	env := make([]string, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		env = append(env, name+"="+m[name])
	}
	return env
}
