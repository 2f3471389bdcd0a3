// Package hooks is the Hooks handler: for each event that has a hook in the
// hooks: section of the config, it runs the hook's environments and tasks in
// a session (package session) as the hook's run_as user, with an
// environment built from scratch, never inherited from the daemon (spec
// actions_sessions.md §D3). Sessions of one user run one at a time, in
// arrival order; sessions of different users run in parallel up to
// max_parallel. A hook that does not succeed fails the event for this
// handler only.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/session"
)

// Name is the handler's name in the handlers: section.
const Name = "Hooks"

// basePath is the PATH of the clean base environment.
const basePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Options are what the handler needs besides the hooks section.
type Options struct {
	// WorkspaceDir and WpsOutputsDir are the FileSystem handler's
	// directories: the values of {{Handler.WorkspaceDir}} and
	// {{Handler.WpsOutputsDir}}, and the roots file events are classified by.
	WorkspaceDir, WpsOutputsDir string
	// SessionRoot is the directory of the session working directories when
	// the config sets no session_root; it must exist.
	SessionRoot string
	// Recorder, if set, records every run; nil means the runs are only logged.
	Recorder Recorder
	// Log receives the handler's and the sessions' records.
	Log *logrus.Entry
}

// Handler runs hooks for events. It implements handlers.UserHandler,
// handlers.PermissionHandler and handlers.FileObserver; an event without a
// hook does nothing.
type Handler struct {
	cfg  *config.Hooks
	opts Options
	root string
	log  *logrus.Entry
	q    *queue
	sudo string // path of sudo; empty when not found
	seq  atomic.Uint64
	// sys tells system accounts apart for templated run_as names.
	sys systemAccounts
	// secrets masks the values of the env setting's secret variables.
	secrets *masker
}

// New returns the handler for cfg (nil: no hooks). It checks that the
// session root is a directory, and warns when it is writable by others
// without the sticky bit.
func New(cfg *config.Hooks, opts Options) (*Handler, error) {
	if cfg == nil {
		cfg = &config.Hooks{MaxParallel: config.DefaultHookMaxParallel, DefaultTimeout: config.DefaultHookTimeout}
	}
	h := &Handler{cfg: cfg, opts: opts, root: cfg.SessionRoot, log: opts.Log, q: newQueue(max(1, cfg.MaxParallel)),
		sys: readSystemAccounts(loginDefsFile, passwdFile, shadowFile), secrets: &masker{}}
	h.secrets.add(cfg.Env)
	if h.log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		h.log = logrus.NewEntry(l)
	}
	if h.root == "" {
		h.root = opts.SessionRoot
	}
	if len(cfg.Events) > 0 {
		fi, err := os.Stat(h.root)
		if err != nil {
			return nil, fmt.Errorf("hooks session root: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("hooks session root %s: not a directory", h.root)
		}
		if fi.Mode()&0o002 != 0 && fi.Mode()&os.ModeSticky == 0 {
			h.log.WithField("path", h.root).Warn("hooks session root is writable by others without the sticky bit")
		}
	}
	h.sudo, _ = exec.LookPath("sudo")
	return h, nil
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// UserCreated implements handlers.UserHandler: it runs the user_created hook.
func (h *Handler) UserCreated(ctx context.Context, ev handlers.UserEvent) error {
	return h.handle(ctx, "user_created", ev)
}

// UserDeleted implements handlers.UserHandler: it runs the user_deleted hook.
func (h *Handler) UserDeleted(ctx context.Context, ev handlers.UserEvent) error {
	return h.handle(ctx, "user_deleted", ev)
}

// PermissionCreated implements handlers.PermissionHandler: it runs the
// permission_created hook.
func (h *Handler) PermissionCreated(ctx context.Context, ev handlers.PermissionEvent) error {
	return h.handle(ctx, "permission_created", ev)
}

// PermissionDeleted implements handlers.PermissionHandler: it runs the
// permission_deleted hook.
func (h *Handler) PermissionDeleted(ctx context.Context, ev handlers.PermissionEvent) error {
	return h.handle(ctx, "permission_deleted", ev)
}

// ObserveFile implements handlers.FileObserver: it runs the wps_output_* hook
// for a file created or deleted under the WPS outputs, and the
// shapefile_published / shapefile_deleted hook for a .shp file in a user's
// shapefile_datastore.
func (h *Handler) ObserveFile(ctx context.Context, ev handlers.FileEvent) error {
	if name := h.fileEventName(ev); name != "" {
		return h.handle(ctx, name, ev)
	}
	return nil
}

// handle runs the hook of event, if there is one.
func (h *Handler) handle(ctx context.Context, event string, ev handlers.Event) error {
	if h.cfg.Events[event] == nil {
		return nil
	}
	_, err := h.RunOnce(ctx, event, ev)
	return err
}

// HookError reports a hook session that did not succeed.
type HookError struct {
	// Hook is the event name of the hook, e.g. "user_created".
	Hook string
	// Result is the session's outcome: its State is FAILED, CANCELED or
	// TIMEOUT; the last of its Actions that did not succeed says why.
	Result session.Result
}

// Error implements error.
func (e *HookError) Error() string {
	msg := fmt.Sprintf("hook %s: %s", e.Hook, e.Result.State)
	for _, a := range e.Result.Actions {
		if a.State == session.ActionSuccess {
			continue
		}
		msg += fmt.Sprintf(": %s %s", a.Action, a.State)
		if a.ExitCode != nil {
			msg += " (exit code " + strconv.Itoa(*a.ExitCode) + ")"
		}
		if a.FailMessage != "" {
			msg += ": " + a.FailMessage
		}
		break
	}
	if e.Result.Err != nil {
		msg += ": " + e.Result.Err.Error()
	}
	return msg
}

// Unwrap returns the session's own error, if any.
func (e *HookError) Unwrap() error { return e.Result.Err }

// Transient tells the dispatcher not to retry: a hook runs operator
// commands that need not be idempotent; an admin re-runs it on purpose
// (events.replay).
func (e *HookError) Transient() bool { return false }

// RunOnce runs the hook of event for ev now, waiting for its turn in the
// user's line, and returns the session's outcome; the error is a
// *HookError when the session ran and did not succeed, and wraps a
// *RefusedError when a templated run_as named a system account. ev must be
// of the event's kind (a UserEvent for user_created, ...). The values of
// secret variables (IsSecretName) are masked in the result, the error, the
// log and what the Recorder is told.
func (h *Handler) RunOnce(ctx context.Context, event string, ev handlers.Event) (session.Result, error) {
	hook := h.cfg.Events[event]
	if hook == nil {
		return session.Result{}, fmt.Errorf("run hook %s: no hook configured", event)
	}
	vals, err := h.eventValues(event, ev)
	if err != nil {
		return session.Result{}, fmt.Errorf("run hook %s: %w", event, err)
	}
	user := vals["Event.UserName"]
	key := user
	if key == "" {
		key = ev.Key()
	}
	m := h.secrets.clone()
	log := m.log(h.log.WithFields(logrus.Fields{"handler": Name, "event": event, "user": user}))
	t := h.q.enqueue(key)
	var run Run
	if h.opts.Recorder != nil {
		label := event + " hook"
		if user != "" {
			label += " for " + user
		}
		run = maskedRun{run: h.opts.Recorder.Start(ctx, label), m: m}
		run.Progress(0, "queued")
	}
	res, err := h.runTurn(ctx, t, hook, vals, run, log, m)
	res = m.result(res)
	if err != nil {
		err = m.err(fmt.Errorf("run hook %s: %w", event, err))
	} else if res.State != session.ActionSuccess || res.Err != nil {
		err = &HookError{Hook: event, Result: res}
	}
	if err != nil && res.State == "" {
		res.State = session.ActionFailed // it failed before it started
	}
	if run != nil {
		run.Finish(err)
	}
	return res, err
}

// runTurn waits for t's turn, then runs hook in a session; m learns the
// values of the hook's secret variables once they are resolved.
func (h *Handler) runTurn(ctx context.Context, t *ticket, hook *config.Hook, vals map[string]string, run Run, log *logrus.Entry, m *masker) (session.Result, error) {
	if err := t.wait(ctx); err != nil {
		return session.Result{}, err
	}
	defer t.release()
	name, err := hook.RunAs.Resolve(vals)
	if err != nil {
		return session.Result{}, err
	}
	acct, err := h.lookup(name, hook)
	if err != nil {
		return session.Result{}, err
	}
	opts := session.Options{
		ID:              fmt.Sprintf("%s-%d", hook.Event, h.seq.Add(1)),
		Root:            h.root,
		BaseEnv:         h.baseEnv(acct),
		Vars:            map[string]string{"COWBIRD_EVENT": hook.Event, "COWBIRD_USER": vals["Event.UserName"], "COWBIRD_PATH": vals["Event.Path"]},
		RetainOnFailure: hook.RetainOnFailure,
		Log:             log.WithField("run_as", name),
	}
	if viaSudo(acct) && h.sudo == "" {
		return session.Result{}, fmt.Errorf("run as %q: the daemon is not root and sudo was not found", name)
	}
	if !viaSudo(acct) {
		opts.Credential = &session.Credential{Uid: acct.uid, Gid: acct.gid, Groups: acct.groups}
	}
	if run != nil {
		p := &progress{run: run, total: 2*len(hook.Environments) + len(hook.Tasks)}
		opts.OnStatus, opts.OnOutput = p.status, p.output
	}
	s, err := session.New(opts)
	if err != nil {
		return session.Result{}, err
	}
	envs, tasks, err := h.resolve(hook, vals, opts, s.Dir())
	for _, e := range envs {
		m.add(e.Variables)
	}
	if err == nil && viaSudo(acct) {
		err = h.shareDir(s.Dir(), acct)
		envs, tasks = h.wrapSudo(acct, envs, tasks)
	}
	if err != nil {
		_, endErr := s.End(ctx) // nothing was entered: this only removes the directory
		return session.Result{State: session.ActionFailed}, errors.Join(err, endErr)
	}
	return s.Run(ctx, envs, tasks), nil
}

// baseEnv is the clean base environment of a's sessions, then the env
// setting.
func (h *Handler) baseEnv(a account) []string {
	m := map[string]string{"PATH": basePath, "HOME": a.home, "USER": a.name, "LOGNAME": a.name, "LANG": "C.UTF-8"}
	maps.Copy(m, h.cfg.Env)
	env := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		env = append(env, k+"="+m[k])
	}
	return env
}

// resolve turns the hook's templates into session definitions. {{Env.X}}
// takes the value the action will see from the configuration: base, env
// setting, session variables and the variables of the environments entered
// so far (values set by an onEnter through cowbird_env are only in the
// process environment).
func (h *Handler) resolve(hook *config.Hook, vals map[string]string, opts session.Options, dir string) ([]session.Environment, []session.Action, error) {
	vals = maps.Clone(vals)
	vals["Session.WorkingDirectory"] = dir
	setEnv := func(name, value string) { vals["Env."+name] = value }
	for _, kv := range opts.BaseEnv {
		name, value, _ := strings.Cut(kv, "=")
		setEnv(name, value)
	}
	for name, value := range opts.Vars {
		setEnv(name, value)
	}
	setEnv("COWBIRD_SESSION_DIR", dir)

	var errs []error
	action := func(a *config.HookAction, timeout bool) *session.Action {
		if a == nil {
			return nil
		}
		out := session.Action{Timeout: a.Timeout,
			Cancelation: session.Cancelation{Mode: session.CancelMode(a.CancelMode), NotifyPeriod: a.NotifyPeriod}}
		if out.Timeout == 0 && timeout {
			out.Timeout = h.cfg.DefaultTimeout
		}
		var err error
		out.Command, err = a.Command.Resolve(vals)
		errs = append(errs, err)
		for _, t := range a.Args {
			arg, err := t.Resolve(vals)
			errs = append(errs, err)
			out.Args = append(out.Args, arg)
		}
		return &out
	}
	var envs []session.Environment
	for _, e := range hook.Environments {
		env := session.Environment{Name: e.Name, Variables: map[string]string{}}
		for name, t := range e.Variables {
			v, err := t.Resolve(vals)
			errs = append(errs, err)
			env.Variables[name] = v
		}
		for name, v := range env.Variables {
			setEnv(name, v)
		}
		env.OnEnter = action(e.OnEnter, true)
		env.OnExit = action(e.OnExit, false) // the session's onExit default applies
		envs = append(envs, env)
	}
	var tasks []session.Action
	for i := range hook.Tasks {
		tasks = append(tasks, *action(&hook.Tasks[i], true))
	}
	return envs, tasks, errors.Join(errs...)
}

// shareDir gives a's group the session directory (chgrp first, then 0770),
// so that a user reached through sudo can work in it.
func (h *Handler) shareDir(dir string, a account) error {
	if err := os.Chown(dir, -1, int(a.gid)); err != nil {
		return fmt.Errorf("share session directory with gid %d (the daemon must be a member of the group): %w", a.gid, err)
	}
	if err := os.Chmod(dir, 0o770); err != nil {
		return fmt.Errorf("share session directory: %w", err)
	}
	return nil
}

// wrapSudo makes every action run through sudo as a.
func (h *Handler) wrapSudo(a account, envs []session.Environment, tasks []session.Action) ([]session.Environment, []session.Action) {
	wrap := func(act *session.Action) *session.Action {
		if act == nil {
			return nil
		}
		w := sudoAction(h.sudo, a, *act)
		return &w
	}
	for i := range envs {
		envs[i].OnEnter, envs[i].OnExit = wrap(envs[i].OnEnter), wrap(envs[i].OnExit)
	}
	for i := range tasks {
		tasks[i] = *wrap(&tasks[i])
	}
	return envs, tasks
}

// sortedEvents lists the configured hook events, sorted.
func sortedEvents(cfg *config.Hooks) []string { return slices.Sorted(maps.Keys(cfg.Events)) }

var (
	_ handlers.UserHandler       = (*Handler)(nil)
	_ handlers.PermissionHandler = (*Handler)(nil)
	_ handlers.FileObserver      = (*Handler)(nil)
)
