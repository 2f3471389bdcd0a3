package handlers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Options tunes a Dispatcher. The zero value is usable.
type Options struct {
	// Journal makes Submit durable and enables retries; nil disables both.
	Journal Journal
	// Observe, if set, is called after every handler call.
	Observe func(handler string, ev Event, took time.Duration, err error)
	// Backoff spaces the attempts of a transient failure; its zero value
	// is the original's Celery policy (1s doubling up to 10m, full jitter).
	Backoff Backoff
	// MaxAttempts bounds the number of attempts; default 15.
	MaxAttempts int
	// GaveUp, if set, is called when a journaled retry of ev fails for good
	// for the handler (an error that is not transient, or the last attempt).
	GaveUp func(ev Event, handler string, err error)
}

// Dispatcher runs events through the registry's active handlers in priority
// order (spec §1.8): every handler runs, the errors are collected with the
// handler's name and joined. Events with the same Key run one at a time, in
// arrival order; others run in parallel.
type Dispatcher struct {
	reg  *Registry
	log  *logrus.Entry
	opts Options

	mu       sync.Mutex
	keys     map[string]*keyLock
	inflight map[uint64]bool
	// waiting indexes the journal's unfinished (key, event, handler) triples
	// that wait for a retry or a replay, for supersede.
	waiting map[string]map[uint64]map[string]bool
	wake    chan struct{}
	// newTimer makes the timers Run waits on; tests replace it.
	newTimer func(time.Duration) timer
}

// timer is the part of a *time.Timer that Run uses.
type timer interface {
	// Chan returns the channel the timer fires on.
	Chan() <-chan time.Time
	// Stop stops the timer, as time.Timer.Stop.
	Stop() bool
}

// sysTimer is a timer from package time.
type sysTimer struct{ *time.Timer }

// Chan implements timer.
func (t sysTimer) Chan() <-chan time.Time { return t.C }

func newSysTimer(d time.Duration) timer { return sysTimer{time.NewTimer(d)} }

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// NewDispatcher returns a dispatcher over reg.
func NewDispatcher(reg *Registry, log *logrus.Entry, opts Options) *Dispatcher {
	opts.Backoff = opts.Backoff.withDefaults()
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 15
	}
	return &Dispatcher{
		reg: reg, log: log, opts: opts,
		keys:     map[string]*keyLock{},
		inflight: map[uint64]bool{},
		waiting:  map[string]map[uint64]map[string]bool{},
		wake:     make(chan struct{}, 1),
		newTimer: newSysTimer,
	}
}

// Registry returns the registry the dispatcher runs.
func (d *Dispatcher) Registry() *Registry { return d.reg }

// targets lists, in dispatch order, the active handlers that have the
// capability for ev and that keep (nil: all) accepts; the handlers without
// the capability log the original's "not implemented" line.
func (d *Dispatcher) targets(ev Event, keep func(Handler) bool) []string {
	if fe, ok := ev.(FileEvent); ok {
		return d.fileTargets(fe, keep)
	}
	var names []string
	for _, h := range d.reg.Active() {
		ok := false
		switch ev.(type) {
		case UserEvent:
			_, ok = h.(UserHandler)
		case PermissionEvent:
			_, ok = h.(PermissionHandler)
		}
		if !ok {
			if d.log.Logger.IsLevelEnabled(logrus.InfoLevel) {
				d.log.WithFields(logrus.Fields{"handler": h.Name(), "event": ev.Name()}).
					Infof("Event [%s] for handler [%s] is not implemented", ev.Name(), h.Name())
			}
			continue
		}
		if keep == nil || keep(h) {
			names = append(names, h.Name())
		}
	}
	return names
}

// fileTargets lists the handler whose watch saw ev and, when it shares its
// file events, the active FileObservers.
func (d *Dispatcher) fileTargets(ev FileEvent, keep func(Handler) bool) []string {
	var names []string
	if h, ok := d.reg.Lookup(ev.Handler); !ok || keep == nil || keep(h) {
		names = append(names, ev.Handler)
	}
	if !d.reg.sharesFiles(ev.Handler) {
		return names
	}
	for _, h := range d.reg.Active() {
		if _, ok := h.(FileObserver); ok && h.Name() != ev.Handler && (keep == nil || keep(h)) {
			names = append(names, h.Name())
		}
	}
	return names
}

// Dispatch runs ev through the handlers without journaling it first (file
// events: after a crash the monitor's start-up resync covers them). The
// handlers that fail transiently are journaled then, pending, and retried
// by Run as a webhook's are; a newer event of the same key that succeeds
// settles them.
func (d *Dispatcher) Dispatch(ctx context.Context, ev Event) error {
	if len(d.reg.Active()) == 0 {
		d.log.WithField("event", ev.Name()).Warn("no active handler: event ignored")
		return nil
	}
	err := d.run(ctx, Record{Event: ev, Pending: d.targets(ev, nil)}, false)
	var retry []*HandlerError
	var names []string
	for _, e := range handlerErrors(err) {
		if IsTransient(e.Err) {
			retry, names = append(retry, e), append(names, e.Handler)
		}
	}
	if len(retry) == 0 || d.opts.Journal == nil {
		return err
	}
	rec, jerr := d.opts.Journal.Append(ctx, ev, names)
	if jerr != nil {
		return errors.Join(err, fmt.Errorf("journal %s for a retry: %w", ev.Name(), jerr))
	}
	errs := []error{err}
	for _, e := range retry {
		retrying, jerr := d.record(ctx, rec, e.Handler, e.Err)
		e.Retrying = retrying
		errs = append(errs, jerr)
	}
	return errors.Join(errs...)
}

// handlerErrors lists the *HandlerError of a run's joined error.
func handlerErrors(err error) []*HandlerError {
	var out []*HandlerError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if he, ok := e.(*HandlerError); ok {
				out = append(out, he)
			}
		}
	}
	return out
}

// Submit journals ev (when a journal is set), then dispatches it. It returns
// the journal ID (0 without a journal) and the joined handler errors. Handlers
// that failed transiently, or were not reached before ctx ended, stay pending
// and are retried by Run.
func (d *Dispatcher) Submit(ctx context.Context, ev Event) (uint64, error) {
	return d.SubmitTo(ctx, ev, nil)
}

// SubmitTo is Submit for the active handlers that have the event's capability
// and for which keep returns true (nil keeps them all): only those are
// journaled as pending, run (in dispatch order, under the event key's lock)
// and retried.
func (d *Dispatcher) SubmitTo(ctx context.Context, ev Event, keep func(Handler) bool) (uint64, error) {
	if len(d.reg.Active()) == 0 {
		d.log.WithField("event", ev.Name()).Warn("no active handler: event ignored")
		return 0, nil
	}
	targets := d.targets(ev, keep)
	if d.opts.Journal == nil {
		return 0, d.run(ctx, Record{Event: ev, Pending: targets}, false)
	}
	rec, err := d.opts.Journal.Append(ctx, ev, targets)
	if err != nil {
		return 0, fmt.Errorf("journal %s: %w", ev.Name(), err)
	}
	d.mu.Lock()
	d.inflight[rec.ID] = true
	d.mu.Unlock()
	defer d.release(rec.ID)
	return rec.ID, d.run(ctx, rec, false)
}

func (d *Dispatcher) release(id uint64) {
	d.mu.Lock()
	delete(d.inflight, id)
	d.mu.Unlock()
}

// run calls rec.Pending handlers in order, under the event key's lock.
// A replayed run (the journal's retries) reports the handlers that fail for
// good to Options.GaveUp.
func (d *Dispatcher) run(ctx context.Context, rec Record, replayed bool) error {
	unlock := d.lock(rec.Event.Key())
	defer unlock()
	var errs []error
	for _, name := range slices.Clone(rec.Pending) {
		if err := ctx.Err(); err != nil {
			// Still pending in the journal, if any: Run retries it.
			errs = append(errs, &HandlerError{Handler: name, Err: fmt.Errorf("not run: %w", err), Retrying: rec.ID != 0})
			continue
		}
		err := d.call(ctx, name, rec.Event)
		if err != nil && ctx.Err() != nil && !IsTransient(err) {
			err = &cutShortError{err} // stopped by the dispatch's end, not failed
		}
		retrying, jerr := d.record(ctx, rec, name, err)
		if err != nil {
			errs = append(errs, &HandlerError{Handler: name, Err: err, Retrying: retrying})
			if replayed && !retrying && d.opts.GaveUp != nil {
				d.opts.GaveUp(rec.Event, name, err)
			}
		}
		if jerr != nil {
			errs = append(errs, jerr)
		}
	}
	return errors.Join(errs...)
}

// cutShortError is the error of a handler whose dispatch context ended
// while it ran (dispatch_timeout, shutdown): transient, so that the journal
// runs it again.
type cutShortError struct{ err error }

func (e *cutShortError) Error() string   { return "cut short: " + e.err.Error() }
func (e *cutShortError) Unwrap() error   { return e.err }
func (e *cutShortError) Transient() bool { return true }

// call runs one handler on ev.
func (d *Dispatcher) call(ctx context.Context, name string, ev Event) (err error) {
	h, ok := d.reg.Lookup(name)
	if !ok {
		d.log.WithFields(logrus.Fields{"handler": name, "event": ev.Name()}).Warn("handler no longer active: event skipped")
		return nil
	}
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in %s: %v", ev.Name(), r)
		}
		if d.opts.Observe != nil {
			d.opts.Observe(name, ev, time.Since(start), err)
		}
	}()
	switch ev := ev.(type) {
	case UserEvent:
		uh, ok := h.(UserHandler)
		switch {
		case !ok:
			return nil
		case ev.Action == Created:
			return uh.UserCreated(ctx, ev)
		case ev.Action == Deleted:
			return uh.UserDeleted(ctx, ev)
		}
	case PermissionEvent:
		ph, ok := h.(PermissionHandler)
		switch {
		case !ok:
			return nil
		case ev.Action == Created:
			return ph.PermissionCreated(ctx, ev)
		case ev.Action == Deleted:
			return ph.PermissionDeleted(ctx, ev)
		}
	case FileEvent:
		if fh, ok := h.(FileHandler); ok && ev.Handler == name {
			return fh.HandleFile(ctx, ev)
		}
		if fo, ok := h.(FileObserver); ok && ev.Handler != name {
			return fo.ObserveFile(ctx, ev)
		}
		return nil
	}
	return fmt.Errorf("unsupported event %s (%T)", ev.Name(), ev)
}

// record writes the outcome of one handler call to the journal. A success
// also settles older unfinished events of the same key for that handler:
// their effect is superseded by this newer event.
// It reports whether a failure is kept pending for a retry.
func (d *Dispatcher) record(ctx context.Context, rec Record, name string, err error) (bool, error) {
	j := d.opts.Journal
	if j == nil {
		return false, nil
	}
	if rec.ID == 0 { // not journaled: newer than every journaled event of its key
		if err == nil {
			return false, d.supersede(ctx, rec, name)
		}
		return false, nil
	}
	// The outcome must be written even when the caller's ctx just ended.
	ctx = context.WithoutCancel(ctx)
	key := rec.Event.Key()
	if err == nil {
		if jerr := j.Done(ctx, rec.ID, name); jerr != nil {
			return false, fmt.Errorf("journal event %d done for %s: %w", rec.ID, name, jerr)
		}
		d.setWaiting(key, rec.ID, name, false)
		return false, d.supersede(ctx, rec, name)
	}
	var retryAt time.Time
	if IsTransient(err) && rec.Attempts+1 < d.opts.MaxAttempts {
		retryAt = time.Now().Add(d.opts.Backoff.Delay(rec.Attempts))
	}
	if jerr := j.Fail(ctx, rec.ID, name, err.Error(), retryAt); jerr != nil {
		return false, fmt.Errorf("journal event %d failure for %s: %w", rec.ID, name, jerr)
	}
	d.setWaiting(key, rec.ID, name, !retryAt.IsZero())
	if !retryAt.IsZero() {
		d.poke()
	}
	return !retryAt.IsZero(), nil
}

// setWaiting adds or removes one unfinished (key, event, handler) triple.
func (d *Dispatcher) setWaiting(key string, id uint64, name string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	byID := d.waiting[key]
	if on {
		if byID == nil {
			byID = map[uint64]map[string]bool{}
			d.waiting[key] = byID
		}
		if byID[id] == nil {
			byID[id] = map[string]bool{}
		}
		byID[id][name] = true
		return
	}
	if byID == nil || byID[id] == nil {
		return
	}
	delete(byID[id], name)
	if len(byID[id]) == 0 {
		delete(byID, id)
	}
	if len(byID) == 0 {
		delete(d.waiting, key)
	}
}

func (d *Dispatcher) supersede(ctx context.Context, rec Record, name string) error {
	key := rec.Event.Key()
	var older []uint64
	d.mu.Lock()
	for id, hs := range d.waiting[key] {
		if (rec.ID == 0 || id < rec.ID) && hs[name] {
			older = append(older, id)
		}
	}
	d.mu.Unlock()
	for _, id := range older {
		d.log.WithFields(logrus.Fields{"handler": name, "event_id": id}).Info("unfinished event superseded by a newer one")
		if err := d.opts.Journal.Done(ctx, id, name); err != nil {
			return fmt.Errorf("journal event %d superseded for %s: %w", id, name, err)
		}
		d.setWaiting(key, id, name, false)
	}
	return nil
}

func (d *Dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// lock serializes events with the same key.
func (d *Dispatcher) lock(key string) (unlock func()) {
	d.mu.Lock()
	k := d.keys[key]
	if k == nil {
		k = &keyLock{}
		d.keys[key] = k
	}
	k.refs++
	d.mu.Unlock()
	k.mu.Lock()
	return func() {
		k.mu.Unlock()
		d.mu.Lock()
		if k.refs--; k.refs == 0 {
			delete(d.keys, key)
		}
		d.mu.Unlock()
	}
}

// Run replays the journal's unfinished events (those a crash interrupted
// first, in ID order), then retries transient failures when they are due,
// until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.opts.Journal == nil {
		<-ctx.Done()
		return nil
	}
	if err := d.loadWaiting(ctx); err != nil {
		return err
	}
	for {
		next, err := d.replayDue(ctx)
		if err != nil {
			d.log.WithError(err).Error("journal replay")
			next = time.Now().Add(d.opts.Backoff.Base)
		}
		if !d.wait(ctx, next) {
			return nil
		}
	}
}

// wait blocks until a poke, until next (unless it is zero) or until ctx ends,
// and reports whether ctx is still live. Its timer is stopped on return.
func (d *Dispatcher) wait(ctx context.Context, next time.Time) bool {
	var due <-chan time.Time
	if !next.IsZero() {
		t := d.newTimer(time.Until(next))
		defer t.Stop()
		due = t.Chan()
	}
	select {
	case <-ctx.Done():
		return false
	case <-d.wake:
	case <-due:
	}
	return true
}

// loadWaiting indexes the unfinished events a previous run left behind.
func (d *Dispatcher) loadWaiting(ctx context.Context) error {
	pending, err := d.opts.Journal.Pending(ctx)
	if err != nil {
		return fmt.Errorf("journal pending: %w", err)
	}
	for _, rec := range pending {
		for _, name := range rec.Pending {
			d.setWaiting(rec.Event.Key(), rec.ID, name, true)
		}
	}
	return nil
}

// replayDue runs every due pending record and returns when the next one is due
// (zero when none is waiting).
func (d *Dispatcher) replayDue(ctx context.Context) (time.Time, error) {
	pending, err := d.opts.Journal.Pending(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("journal pending: %w", err)
	}
	var next time.Time
	for _, rec := range pending {
		if ctx.Err() != nil {
			return time.Time{}, nil
		}
		if rec.RetryAt.After(time.Now()) {
			if next.IsZero() || rec.RetryAt.Before(next) {
				next = rec.RetryAt
			}
			continue
		}
		d.mu.Lock()
		busy := d.inflight[rec.ID]
		d.inflight[rec.ID] = true
		d.mu.Unlock()
		if busy {
			continue
		}
		log := d.log.WithFields(logrus.Fields{"event_id": rec.ID, "event": rec.Event.Name()})
		log.WithField("handlers", rec.Pending).Info("replaying journaled event")
		if err := d.run(ctx, rec, true); err != nil {
			log.WithError(err).Warn("replayed event failed")
		}
		d.release(rec.ID)
	}
	return next, nil
}

// Resync runs the named active handler's Resync, or logs the original's
// warning when it has none.
func (d *Dispatcher) Resync(ctx context.Context, name string) error {
	h, ok := d.reg.Lookup(name)
	if !ok {
		return fmt.Errorf("resync %s: %w", name, ErrNoHandler)
	}
	r, ok := h.(Resyncer)
	if !ok {
		d.log.WithField("handler", name).
			Warnf("Event [resync] for handler [%s] is not implemented but should be in the future", name)
		return nil
	}
	if err := r.Resync(ctx); err != nil {
		return &HandlerError{Handler: name, Err: err}
	}
	return nil
}

// ErrNoHandler is returned for a handler name that is not active.
var ErrNoHandler = errors.New("no such active handler")

// Retry runs rec's event again for the named handlers (e.g. those whose
// failure was final), recording the outcomes in the journal.
func (d *Dispatcher) Retry(ctx context.Context, rec Record, names []string) error {
	return d.run(ctx, Record{ID: rec.ID, Event: rec.Event, Attempts: rec.Attempts, Pending: names}, false)
}
