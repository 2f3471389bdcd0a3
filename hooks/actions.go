package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/actions"
)

// ActionRecorder records each hook run as an action of type hook.run, so
// its progress, status and (redacted) output are visible in the actions
// API. The action's Run relays what the hook reports until the hook
// finishes.
type ActionRecorder struct {
	start func(ctx context.Context, label string, body json.RawMessage) error
	log   *logrus.Entry
	seq   atomic.Uint64

	mu   sync.Mutex
	runs map[string]*hookRun
}

// hookRun queues what one hook reports for its action.
type hookRun struct {
	mu      sync.Mutex
	pending []func(context.Context, actions.Progress)
	done    bool
	err     error
	wake    chan struct{}
}

// NewActionRecorder returns a recorder whose runs start, through start, an
// action of the type Type returns with the given label and input.
func NewActionRecorder(log *logrus.Entry) *ActionRecorder {
	return &ActionRecorder{log: log, runs: map[string]*hookRun{}}
}

// Bind sets how the recorder starts a hook.run action (as the daemon, seen
// by the admins); runs started before are only logged.
func (r *ActionRecorder) Bind(start func(ctx context.Context, label string, body json.RawMessage) error) {
	r.start = start
}

// Type is the hook.run action type; its input names the run it relays.
func (r *ActionRecorder) Type() actions.Type {
	return actions.Type{
		Name:        "hook.run",
		Description: "A hook command run for an event (started by the daemon, not runnable through the API).",
		InputSchema: json.RawMessage(`{"type": "object", "required": ["run"], "additionalProperties": false,
			"properties": {"run": {"type": "string"}}}`),
		Run: r.relay,
	}
}

// Start implements Recorder.
func (r *ActionRecorder) Start(ctx context.Context, label string) Run {
	key := strconv.FormatUint(r.seq.Add(1), 10)
	hr := &hookRun{wake: make(chan struct{}, 1)}
	r.mu.Lock()
	r.runs[key] = hr
	r.mu.Unlock()
	body, _ := json.Marshal(map[string]string{"run": key})
	err := errors.New("no action service bound")
	if r.start != nil {
		err = r.start(ctx, label, body)
	}
	if err != nil {
		r.log.WithError(err).WithField("hook", label).Warn("hook run not recorded as an action")
		r.mu.Lock()
		delete(r.runs, key)
		r.mu.Unlock()
	}
	return hr
}

// relay is hook.run's Run: it applies what the hook reports, in order.
func (r *ActionRecorder) relay(ctx context.Context, in json.RawMessage, p actions.Progress) (map[string]any, error) {
	var req struct{ Run string }
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, err
	}
	r.mu.Lock()
	hr := r.runs[req.Run]
	delete(r.runs, req.Run)
	r.mu.Unlock()
	if hr == nil {
		return nil, &actions.Failure{Code: "UNKNOWN_RUN", Err: context.Canceled}
	}
	for {
		hr.mu.Lock()
		todo, done, err := hr.pending, hr.done, hr.err
		hr.pending = nil
		hr.mu.Unlock()
		for _, f := range todo {
			f(ctx, p)
		}
		if done {
			if err != nil {
				return nil, &actions.Failure{Code: "HOOK_FAILED", Err: err}
			}
			return nil, nil
		}
		select {
		case <-hr.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (hr *hookRun) push(f func(context.Context, actions.Progress)) {
	hr.mu.Lock()
	hr.pending = append(hr.pending, f)
	hr.mu.Unlock()
	hr.poke()
}

func (hr *hookRun) poke() {
	select {
	case hr.wake <- struct{}{}:
	default:
	}
}

// Progress implements Run.
func (hr *hookRun) Progress(pct float64, status string) {
	hr.push(func(ctx context.Context, p actions.Progress) { p.Progress(ctx, pct, status, nil) })
}

// Log implements Run.
func (hr *hookRun) Log(line string) {
	hr.push(func(ctx context.Context, p actions.Progress) { p.Log(ctx, "OUTPUT", line) })
}

// Finish implements Run.
func (hr *hookRun) Finish(err error) {
	hr.mu.Lock()
	hr.done, hr.err = true, err
	hr.mu.Unlock()
	hr.poke()
}
