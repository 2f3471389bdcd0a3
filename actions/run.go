package actions

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// run is the in-process state of a non-terminal action.
type run struct {
	typ  *actionType
	lock string
	// cancel stops the run; nil while the action waits for its lock.
	cancel     context.CancelFunc
	canceledBy string
	// done is closed when the service lets go of the action: terminal,
	// or left for the next Start.
	done chan struct{}
}

// outcome is how an action ends.
type outcome struct {
	state   State
	display string
	details map[string]any
}

// failure is the outcome of a FAILED action.
func failure(display, code, description string) outcome {
	return outcome{Failed, display, map[string]any{"code": code, "description": description}}
}

func canceled(by string) outcome {
	return failure("Canceled by "+by, CodeCanceled, "canceled by "+by)
}

// admitLocked sets a new or resumed action ACTIVE, or INACTIVE if its lock is
// held.
func (s *Service) admitLocked(r *Record) {
	if r.Lock != "" && s.holders[r.Lock] != "" {
		r.Status.Status, r.Status.DisplayStatus = Inactive, "Waiting for lock"
		r.Status.Details = map[string]any{"code": CodeWaitingForLock, "description": "another action holds lock " + r.Lock}
		return
	}
	r.Status.Status, r.Status.DisplayStatus, r.Status.Details = Active, "Running", map[string]any{}
}

// enqueueLocked takes charge of stored action r, admitted: it runs it, or
// queues it for its lock.
func (s *Service) enqueueLocked(ctx context.Context, r Record, t *actionType) {
	id := r.Status.ActionID
	rn := &run{typ: t, lock: r.Lock, done: make(chan struct{})}
	s.runs[id] = rn
	if r.Status.Status == Inactive {
		s.queues[r.Lock] = append(s.queues[r.Lock], id)
		s.appendLog(ctx, id, CodeWaitingForLock, "waiting for lock "+r.Lock)
		return
	}
	s.launchLocked(ctx, id, rn, r)
}

// launchLocked starts the run of ACTIVE action r in a goroutine.
func (s *Service) launchLocked(ctx context.Context, id string, rn *run, r Record) {
	s.appendLog(ctx, id, "STARTED", "running")
	var (
		runCtx context.Context
		cancel context.CancelFunc
	)
	if rn.typ.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(context.Background(), rn.typ.Timeout)
	} else {
		runCtx, cancel = context.WithCancel(context.Background())
	}
	rn.cancel = cancel
	if rn.lock != "" {
		s.holders[rn.lock] = id
	}
	s.wg.Go(func() {
		defer cancel()
		details, err := call(runCtx, rn.typ, r.Input, progress{s, id})
		s.finish(runCtx, id, rn, details, err)
	})
}

// call runs t, turning a panic into an error.
func call(ctx context.Context, t *actionType, input []byte, p Progress) (details map[string]any, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return t.Run(ctx, input, p)
}

// finish records what a run returned.
func (s *Service) finish(runCtx context.Context, id string, rn *run, details map[string]any, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var f *Failure
	var o outcome
	switch {
	case rn.canceledBy != "":
		o = canceled(rn.canceledBy)
	case err != nil && s.state == stopping && errors.Is(runCtx.Err(), context.Canceled):
		s.forgetLocked(id, rn) // for the next Start to resume or fail
		return
	case err == nil:
		if details == nil {
			details = map[string]any{}
		}
		o = outcome{Succeeded, "Succeeded", details}
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		o = failure("Timed out", CodeTimeout, fmt.Sprintf("timed out after %s: %v", rn.typ.Timeout, err))
	case errors.As(err, &f):
		desc := f.Code
		if f.Err != nil {
			desc = f.Err.Error()
		}
		o = failure("Failed", f.Code, desc)
	default:
		o = failure("Failed", CodeHandlerError, err.Error())
	}
	if _, err := s.endLocked(context.Background(), id, rn, o); err != nil {
		s.log.WithError(err).WithField("action", id).Error("record action outcome")
	}
}

// endLocked makes action id terminal and lets go of rn (nil for an action
// not in s.runs).
func (s *Service) endLocked(ctx context.Context, id string, rn *run, o outcome) (Record, error) {
	now := s.now().UTC()
	r, err := s.store.UpdateAction(ctx, id, func(r *Record) error {
		if r.Status.Status.Terminal() {
			return fmt.Errorf("it is already %s: %w", r.Status.Status, ErrConflict)
		}
		end := now
		if end.Before(r.Status.StartTime) {
			end = r.Status.StartTime
		}
		r.Status.Status, r.Status.DisplayStatus, r.Status.Details = o.state, truncate(o.display), o.details
		r.Status.CompletionTime = &end
		return nil
	})
	if err == nil {
		code, _ := o.details["code"].(string)
		desc, _ := o.details["description"].(string)
		s.appendLog(ctx, id, cmp.Or(code, string(o.state)), cmp.Or(desc, o.display))
	}
	if rn != nil {
		s.forgetLocked(id, rn)
	}
	return r, err
}

// forgetLocked lets go of action id: wakes its waiters and passes its lock
// on.
func (s *Service) forgetLocked(id string, rn *run) {
	delete(s.runs, id)
	close(rn.done)
	if rn.lock == "" {
		return
	}
	if q := slices.DeleteFunc(s.queues[rn.lock], func(w string) bool { return w == id }); len(q) > 0 {
		s.queues[rn.lock] = q
	} else {
		delete(s.queues, rn.lock)
	}
	if s.holders[rn.lock] == id {
		delete(s.holders, rn.lock)
		s.nextLocked(rn.lock)
	}
}

// nextLocked starts the first action waiting for lock.
func (s *Service) nextLocked(lock string) {
	ctx := context.Background()
	for s.state == started && len(s.queues[lock]) > 0 {
		id := s.queues[lock][0]
		rn := s.runs[id]
		s.queues[lock] = s.queues[lock][1:]
		r, err := s.store.UpdateAction(ctx, id, func(r *Record) error {
			s.admitLocked(r)
			return nil
		})
		if err != nil {
			s.log.WithError(err).WithField("action", id).Error("start action waiting for lock " + lock)
			s.forgetLocked(id, rn)
			continue
		}
		s.launchLocked(ctx, id, rn, r)
		return
	}
}

// appendLog appends to an action's log; a failure is only logged, as the
// log is informative.
func (s *Service) appendLog(ctx context.Context, id, code, description string) {
	err := s.store.AppendActionLog(ctx, id, LogEntry{Time: s.now().UTC(), Code: code, Description: description})
	if err != nil {
		s.log.WithError(err).WithField("action", id).Warn("append to action log")
	}
}

// progress implements Progress for one running action.
type progress struct {
	s  *Service
	id string
}

// Progress implements Progress.
func (p progress) Progress(ctx context.Context, percent float64, status string, details map[string]any) {
	if math.IsNaN(percent) {
		percent = 0
	}
	_, err := p.s.store.UpdateAction(ctx, p.id, func(r *Record) error {
		if r.Status.Status.Terminal() {
			return fmt.Errorf("it is already %s: %w", r.Status.Status, ErrConflict)
		}
		if r.Status.Details == nil {
			r.Status.Details = map[string]any{}
		}
		maps.Copy(r.Status.Details, details)
		r.Status.Details["progress"] = min(max(percent, 0), 100)
		if status != "" && r.CanceledBy == "" {
			r.Status.DisplayStatus = truncate(status)
		}
		return nil
	})
	if err != nil {
		p.s.log.WithError(err).WithField("action", p.id).Warn("record action progress")
	}
}

// Log implements Progress.
func (p progress) Log(ctx context.Context, code, description string) {
	p.s.appendLog(ctx, p.id, code, description)
}

// truncate cuts s to the 64 characters allowed in display_status.
func truncate(s string) string {
	n := 0
	for i := range s {
		if n == maxLabel {
			return s[:i]
		}
		n++
	}
	return s
}

// ReleaseExpired releases the terminal actions whose release_after has
// passed since their completion, and returns how many it released.
func (s *Service) ReleaseExpired(ctx context.Context) (int, error) {
	now := s.now()
	expired := func(r Record) bool {
		return r.Status.Status.Terminal() && r.Status.CompletionTime != nil &&
			!now.Before(r.Status.CompletionTime.Add(r.Retention))
	}
	errKept := errors.New("not expired")
	recs, err := s.store.Actions(ctx)
	if err != nil {
		return 0, fmt.Errorf("release expired actions: %w", err)
	}
	n := 0
	for _, r := range recs {
		if !expired(r) {
			continue
		}
		_, err := s.store.DeleteAction(ctx, r.Status.ActionID, func(r Record) error {
			if !expired(r) {
				return errKept
			}
			return nil
		})
		switch {
		case err == nil:
			n++
		case !errors.Is(err, errKept) && !errors.Is(err, ErrNotFound):
			return n, fmt.Errorf("release expired actions: %w", err)
		}
	}
	return n, nil
}

// janitor releases expired actions periodically until Shutdown.
func (s *Service) janitor() {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-tick.C:
			n, err := s.ReleaseExpired(context.Background())
			if err != nil {
				s.log.WithError(err).Error("janitor")
			} else if n > 0 {
				s.log.WithField("released", n).Info("released expired actions")
			}
		}
	}
}
