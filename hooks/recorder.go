package hooks

import (
	"context"
	"sync"

	"github.com/cowbird-go/cowbird/session"
)

// Recorder records hook runs, e.g. as actions of type hook.run.
type Recorder interface {
	// Start records a new run, labelled like "user_created hook for alice".
	Start(ctx context.Context, label string) Run
}

// Run is one recorded hook run. Its methods may be called from the session's
// output goroutine and must return quickly.
type Run interface {
	// Progress reports the run's overall progress (0-100) and a status.
	Progress(pct float64, status string)
	// Log appends one output line, secrets already masked.
	Log(line string)
	// Finish ends the run: nil for success, else why it failed.
	Finish(err error)
}

// progress turns the session's per-action statuses into the run's overall
// progress: every environment counts twice (enter and exit), every task
// once, and the running action's own cowbird_progress fills its share.
type progress struct {
	run   Run
	total int

	mu   sync.Mutex
	done int
}

// status implements session.Options.OnStatus.
func (p *progress) status(r session.ActionResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	share := 0.0
	if r.State != session.ActionRunning {
		p.done++
	} else if r.Progress != nil {
		share = *r.Progress / 100
	}
	msg := r.StatusMessage
	if msg == "" {
		msg = r.Action + ": " + string(r.State)
	}
	p.run.Progress(min(100, 100*(float64(p.done)+share)/float64(p.total)), msg)
}

// output implements session.Options.OnOutput.
func (p *progress) output(action, line string) { p.run.Log(action + ": " + line) }
