package session

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// drainWait is how long the output is still read after the process exits,
// for a background process that keeps the pipe open (spec B5.5, C1 #3).
const drainWait = time.Second

// cancelCause records who canceled an action; it decides the outcome (B3).
type cancelCause int

const (
	byCaller  cancelCause = iota // Session.Cancel, the context or the runner
	byTimeout                    // the action's Timeout
)

// run is one action of a session, from start to outcome.
type run struct {
	s      *Session
	label  string
	action Action    // resolved
	env    *entered  // the environment being entered (onEnter only)
	cmd    *exec.Cmd // nil when nothing was started
	out    *os.File  // read end of the merged stdout/stderr pipe
	log    *logrus.Entry
	result ActionResult // guarded by mu while the action runs

	mu         sync.Mutex
	exited     bool
	killed     bool // SIGKILL was sent: later cancels change nothing
	failLine   bool // a fail message was seen
	canceled   bool
	timedOut   bool
	markFailed bool // the runner failed the action (even if it exited)
	killAt     time.Time
	killTimer  *time.Timer
}

// start launches r.action with env. A failure before start makes the run
// FAILED with no exit code.
func (r *run) start(ctx context.Context, env []string) {
	r.result = ActionResult{Action: r.label, State: ActionRunning}
	if err := r.launch(ctx, env); err != nil {
		r.result.State = ActionFailed
		r.result.FailMessage = r.s.red.redact(err.Error())
		r.cmd = nil
	}
}

func (r *run) launch(ctx context.Context, env []string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start %s: %w", r.action.Command, err)
	}
	path, err := lookPath(r.action.Command, env)
	if err != nil {
		return err
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start %s: output pipe: %w", path, err)
	}
	defer wr.Close()
	r.cmd = &exec.Cmd{
		Path:        path,
		Args:        append([]string{r.action.Command}, r.action.Args...),
		Env:         env,
		Dir:         r.s.dir,
		Stdout:      wr,
		Stderr:      wr,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Credential: r.s.cred},
	}
	r.log.WithField("content_kind", "PROCESS_CONTROL").
		Info(r.s.red.redactCommand("run " + strings.Join(r.cmd.Args, " ")))
	if err := r.cmd.Start(); err != nil {
		rd.Close()
		return fmt.Errorf("start %s: %w", path, err)
	}
	r.out = rd
	return nil
}

// lookPath resolves a command without a slash in the PATH of the action's
// environment (not the daemon's).
func lookPath(command string, env []string) (string, error) {
	if strings.Contains(command, "/") {
		return command, nil
	}
	var path string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, command)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("start %s: not found in the action's PATH %q", command, path)
}

// wait follows a started action to its end: it pumps the output, reaps the
// process, enforces the timeout and ctx, and drains the output for at most
// drainWait after the exit.
func (r *run) wait(ctx context.Context) {
	r.s.notify(r.snapshot())
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		r.pump()
	}()
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		_ = r.cmd.Wait() // the outcome is read from ProcessState
	}()
	var timeout <-chan time.Time
	if r.action.Timeout > 0 {
		t := time.NewTimer(r.action.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	done := ctx.Done()
	for waiting := true; waiting; {
		select {
		case <-exited:
			waiting = false
		case <-timeout:
			r.log.WithField("content_kind", "PROCESS_CONTROL").Infof("timeout %s reached: canceling", r.action.Timeout)
			r.cancel(r.action.Cancelation.Mode, r.action.Cancelation.NotifyPeriod, byTimeout)
			timeout = nil
		case <-done:
			r.log.WithField("content_kind", "PROCESS_CONTROL").Info("context done: canceling")
			r.cancel(r.action.Cancelation.Mode, r.action.Cancelation.NotifyPeriod, byCaller)
			done = nil
		}
	}
	r.reaped()
	select {
	case <-pumped:
	case <-time.After(drainWait):
		r.log.WithField("content_kind", "PROCESS_CONTROL").
			Warnf("output still open %s after exit (a background process holds it): closing it", drainWait)
	}
	r.out.Close() // unblocks the pump if a background process holds the pipe
	<-pumped
}

// reaped records the exit; what is left of a canceled action's process
// group is killed.
func (r *run) reaped() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exited = true
	if r.killTimer != nil {
		r.killTimer.Stop()
	}
	if r.canceled {
		r.signal(syscall.SIGKILL)
	}
	code := exitCode(r.cmd.ProcessState)
	r.result.ExitCode = &code
	r.log.WithField("content_kind", "PROCESS_CONTROL").Infof("exit code %d", code)
}

// exitCode is the exit status, or minus the number of the killing signal.
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -int(ws.Signal())
	}
	return ps.ExitCode()
}

// finish decides the outcome (spec B3, first match wins) and returns it.
func (r *run) finish() ActionResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.result.State != ActionRunning { // failed before start
		return r.result
	}
	switch {
	case r.markFailed:
		r.result.State = ActionFailed
	case r.canceled && r.timedOut:
		r.result.State = ActionTimeout
	case r.canceled:
		r.result.State = ActionCanceled
	case *r.result.ExitCode != 0 || r.failLine:
		r.result.State = ActionFailed
	default:
		r.result.State = ActionSuccess
	}
	return r.result
}

// snapshot copies the current status.
func (r *run) snapshot() ActionResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.result
}

// cancel stops the action. TERMINATE, or a grace of zero or less, kills the
// process group now. NOTIFY_THEN_TERMINATE writes cancel_info.json, sends
// SIGTERM to the group and SIGKILL when the grace ends; a repeated cancel
// can only bring that moment closer.
func (r *run) cancel(mode CancelMode, grace time.Duration, cause cancelCause) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exited || r.killed {
		return
	}
	r.canceled = true
	r.timedOut = r.timedOut || cause == byTimeout
	log := r.log.WithField("content_kind", "PROCESS_CONTROL")
	if mode != NotifyThenTerminate || grace <= 0 {
		log.Info("cancel: SIGKILL to the process group")
		r.kill()
		return
	}
	at := time.Now().Add(grace)
	if !r.killAt.IsZero() && r.killAt.Before(at) {
		at = r.killAt
	}
	r.killAt = at
	if err := r.s.writeCancelInfo(at); err != nil {
		log.WithError(err).Warn("cancel: cancel_info.json not written")
	}
	log.Infof("cancel: SIGTERM to the process group, SIGKILL at %s", at.UTC().Format(time.RFC3339))
	r.signal(syscall.SIGTERM)
	if r.killTimer != nil {
		r.killTimer.Stop()
	}
	r.killTimer = time.AfterFunc(time.Until(at), func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.exited && !r.killed {
			log.Info("cancel: grace over, SIGKILL to the process group")
			r.kill()
		}
	})
}

// kill sends SIGKILL to the action's process group; r.mu is held.
func (r *run) kill() {
	r.killed = true
	if r.killTimer != nil {
		r.killTimer.Stop()
	}
	r.signal(syscall.SIGKILL)
}

// signal sends sig to the action's process group; r.mu is held.
func (r *run) signal(sig syscall.Signal) {
	err := syscall.Kill(-r.cmd.Process.Pid, sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		r.log.WithError(err).Warnf("signal %s to process group %d", sig, r.cmd.Process.Pid)
	}
}

// pump reads the merged output line by line until EOF or until wait closes
// the pipe. Lines longer than the line cap are cut into pieces of at most
// the cap, each handled as a line.
func (r *run) pump() {
	br := bufio.NewReaderSize(r.out, r.s.lineCap)
	split := false
	for {
		b, err := br.ReadSlice('\n')
		line := strings.TrimRight(string(b), "\r\n")
		// The end of a line that was just split at the cap is not a line.
		if line != "" || (len(b) > 0 && !split) {
			r.handle(line)
		}
		split = errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !split {
			return
		}
	}
}

// handle applies one output line: the protocol message it may carry, then
// logging and the callbacks, with every registered secret masked.
func (r *run) handle(line string) {
	var problem error
	notify := false
	if m, ok := parseMessage(line); ok {
		switch m.kind {
		case "progress":
			p, err := parseProgress(m.payload)
			problem = err
			if err == nil {
				r.update(func(res *ActionResult) { res.Progress = &p })
				notify = true
			}
		case "status":
			r.update(func(res *ActionResult) { res.StatusMessage = r.s.red.redact(m.payload) })
			notify = true
		case "fail":
			r.update(func(res *ActionResult) {
				res.FailMessage = r.s.red.redact(m.payload)
				r.failLine = true
			})
			notify = true
		default: // env, unset_env, redacted_env
			problem = r.applyEnv(m)
		}
	}
	out := r.s.red.redact(line)
	r.log.WithField("content_kind", "COMMAND_OUTPUT").Info(out)
	if r.s.opts.OnOutput != nil {
		r.s.opts.OnOutput(r.label, out)
	}
	if problem != nil {
		r.log.WithField("content_kind", "PROCESS_CONTROL").Warn(r.s.red.redact(problem.Error()))
	}
	if notify {
		r.s.notify(r.snapshot())
	}
}

// update changes the running status under r.mu.
func (r *run) update(f func(*ActionResult)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.result)
}

// applyEnv records an env message of an onEnter action for the environment
// being entered. Elsewhere it is ignored. A malformed one fails the action.
func (r *run) applyEnv(m message) error {
	if r.env == nil {
		return fmt.Errorf("%s message ignored: env messages are honored in onEnter only", m.kind)
	}
	var err error
	if m.kind == "unset_env" {
		var name string
		if name, err = parseUnset(m.payload); err == nil {
			r.env.unset[name] = true
		}
	} else {
		var a assignment
		if a, err = parseAssignment(m.payload); err == nil {
			if m.kind == "redacted_env" {
				r.s.red.add(a.value)
				r.s.red.add(a.escaped)
			}
			r.env.set[a.name] = a.value
		}
	}
	if err != nil {
		err = fmt.Errorf("malformed %s message: %w", m.kind, err)
		r.update(func(res *ActionResult) {
			res.FailMessage = r.s.red.redact(err.Error())
			r.markFailed = true
		})
		r.cancel(r.action.Cancelation.Mode, r.action.Cancelation.NotifyPeriod, byCaller)
	}
	return err
}

// writeCancelInfo writes cancel_info.json, {"NotifyEnd": "<RFC3339 UTC>"},
// into the working directory, readable by the action's user.
func (s *Session) writeCancelInfo(end time.Time) error {
	b, err := json.Marshal(map[string]string{"NotifyEnd": end.UTC().Format("2006-01-02T15:04:05Z")})
	if err != nil {
		return fmt.Errorf("encode cancel info: %w", err)
	}
	path := filepath.Join(s.dir, "cancel_info.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if s.cred != nil {
		if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	return nil
}
