package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// recorder is a handler that records what it receives and can fail.
type recorder struct {
	name string
	log  *callLog
	fail func(ev Event) error
}

type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) add(s string) {
	l.mu.Lock()
	l.calls = append(l.calls, s)
	l.mu.Unlock()
}

func (l *callLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func (r *recorder) Name() string { return r.name }

func (r *recorder) handle(ev Event) error {
	r.log.add(r.name + ":" + ev.Name() + ":" + ev.Key())
	if r.fail != nil {
		return r.fail(ev)
	}
	return nil
}

func (r *recorder) UserCreated(_ context.Context, ev UserEvent) error { return r.handle(ev) }
func (r *recorder) UserDeleted(_ context.Context, ev UserEvent) error { return r.handle(ev) }
func (r *recorder) PermissionCreated(_ context.Context, ev PermissionEvent) error {
	return r.handle(ev)
}
func (r *recorder) PermissionDeleted(_ context.Context, ev PermissionEvent) error {
	return r.handle(ev)
}
func (r *recorder) HandleFile(_ context.Context, ev FileEvent) error { return r.handle(ev) }

type plain struct{ name string }

func (p plain) Name() string { return p.name }

func prio(n int) *int { return &n }

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

func TestRegistryOrder(t *testing.T) {
	reg, err := NewRegistry(
		Registration{Handler: plain{"Magpie"}, Active: true},
		Registration{Handler: plain{"Geoserver"}, Active: true},
		Registration{Handler: plain{"Catalog"}, Active: false, Priority: prio(0)},
		Registration{Handler: plain{"Thredds"}, Active: true, Priority: prio(5)},
		Registration{Handler: plain{"Nginx"}, Active: true, Priority: prio(5)},
		Registration{Handler: plain{"FileSystem"}, Active: true, Priority: prio(1)},
	)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range reg.Active() {
		got = append(got, h.Name())
	}
	want := []string{"FileSystem", "Thredds", "Nginx", "Magpie", "Geoserver"}
	if !slices.Equal(got, want) {
		t.Fatalf("active order = %v, want %v", got, want)
	}
	if _, ok := reg.Lookup("Catalog"); ok {
		t.Error("inactive handler found by Lookup")
	}
	if _, ok := reg.Lookup("filesystem"); ok {
		t.Error("Lookup is not case-sensitive")
	}
	if _, err := NewRegistry(Registration{Handler: plain{"A"}}, Registration{Handler: plain{"A"}}); err == nil {
		t.Error("duplicate names accepted")
	}
}

func TestDispatchRunsEveryHandlerAndJoinsErrors(t *testing.T) {
	log := &callLog{}
	boom := errors.New("boom")
	reg, _ := NewRegistry(
		Registration{Handler: &recorder{name: "B", log: log, fail: func(Event) error { return boom }}, Active: true, Priority: prio(2)},
		Registration{Handler: &recorder{name: "A", log: log}, Active: true, Priority: prio(1)},
		Registration{Handler: plain{"Thredds"}, Active: true},
		Registration{Handler: &recorder{name: "C", log: log}, Active: true, Priority: prio(3)},
	)
	d := NewDispatcher(reg, quietLog(), Options{})
	err := d.Dispatch(context.Background(), UserEvent{Action: Created, UserName: "alice"})
	want := []string{"A:user_created:user:alice", "B:user_created:user:alice", "C:user_created:user:alice"}
	if got := log.list(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	var he *HandlerError
	if !errors.As(err, &he) || he.Handler != "B" || !errors.Is(err, boom) {
		t.Fatalf("err = %v, want HandlerError from B wrapping boom", err)
	}
	if err.Error() != "B: boom" {
		t.Errorf("err text = %q", err.Error())
	}
}

func TestDispatchPanicIsAnError(t *testing.T) {
	log := &callLog{}
	reg, _ := NewRegistry(
		Registration{Handler: &recorder{name: "P", log: log, fail: func(Event) error { panic("bad") }}, Active: true},
		Registration{Handler: &recorder{name: "Q", log: log}, Active: true},
	)
	d := NewDispatcher(reg, quietLog(), Options{})
	err := d.Dispatch(context.Background(), PermissionEvent{Action: Deleted, PermName: "read", User: "bob"})
	if err == nil || len(log.list()) != 2 {
		t.Fatalf("err = %v, calls = %v", err, log.list())
	}
}

func TestFileEventGoesToItsHandlerOnly(t *testing.T) {
	log := &callLog{}
	reg, _ := NewRegistry(
		Registration{Handler: &recorder{name: "FileSystem", log: log}, Active: true},
		Registration{Handler: &recorder{name: "Catalog", log: log}, Active: true},
	)
	d := NewDispatcher(reg, quietLog(), Options{})
	if err := d.Dispatch(context.Background(), FileEvent{Op: FileCreated, Path: "/x", Handler: "Catalog"}); err != nil {
		t.Fatal(err)
	}
	if got := log.list(); !slices.Equal(got, []string{"Catalog:on_created:file:/x"}) {
		t.Fatalf("calls = %v", got)
	}
}

// observer sees the file events of the handlers that share them.
type observer struct{ recorder }

func (o *observer) ObserveFile(_ context.Context, ev FileEvent) error { return o.handle(ev) }

func TestFileObserversGetSharedFileEvents(t *testing.T) {
	log := &callLog{}
	reg, _ := NewRegistry(
		Registration{Handler: &recorder{name: "FileSystem", log: log}, Active: true, ShareFiles: true},
		Registration{Handler: &recorder{name: "Catalog", log: log}, Active: true},
		Registration{Handler: &observer{recorder{name: "Hooks", log: log}}, Active: true},
		Registration{Handler: &observer{recorder{name: "Idle", log: log}}, Active: false},
	)
	d := NewDispatcher(reg, quietLog(), Options{})
	for _, owner := range []string{"FileSystem", "Catalog"} {
		if err := d.Dispatch(context.Background(), FileEvent{Op: FileCreated, Path: "/" + owner, Handler: owner}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"FileSystem:on_created:file:/FileSystem", "Hooks:on_created:file:/FileSystem", "Catalog:on_created:file:/Catalog"}
	if got := log.list(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v (an observer gets only shared events, an inactive one none)", log.list(), want)
	}
	kept, err := d.SubmitTo(context.Background(), FileEvent{Op: FileDeleted, Path: "/y", Handler: "FileSystem"},
		func(h Handler) bool { return h.Name() != "Hooks" })
	if err != nil || kept != 0 {
		t.Fatalf("SubmitTo = %d, %v", kept, err)
	}
	if got := log.list(); len(got) != 4 || got[3] != "FileSystem:on_deleted:file:/y" {
		t.Fatalf("calls after SubmitTo without Hooks = %v", got)
	}
}

type resyncer struct {
	plain
	n int
}

func (r *resyncer) Resync(context.Context) error { r.n++; return nil }

func TestResync(t *testing.T) {
	r := &resyncer{plain: plain{"FileSystem"}}
	reg, _ := NewRegistry(Registration{Handler: r, Active: true}, Registration{Handler: plain{"Nginx"}, Active: true})
	d := NewDispatcher(reg, quietLog(), Options{})
	ctx := context.Background()
	if err := d.Resync(ctx, "FileSystem"); err != nil || r.n != 1 {
		t.Fatalf("resync FileSystem: err=%v n=%d", err, r.n)
	}
	if err := d.Resync(ctx, "Nginx"); err != nil {
		t.Fatalf("resync Nginx (no capability) = %v, want nil", err)
	}
	if err := d.Resync(ctx, "Nope"); !errors.Is(err, ErrNoHandler) {
		t.Fatalf("resync unknown = %v", err)
	}
}

func TestEventCodecRoundTrip(t *testing.T) {
	for _, ev := range []Event{
		UserEvent{Action: Created, UserName: "alice", CallbackURL: "http://m/cb"},
		PermissionEvent{Action: Deleted, ServiceType: "api", ResourceID: 7, ResourceFullName: "a/b", PermName: "read", Access: "allow", Scope: "match", Group: "g"},
		FileEvent{Op: FileDeleted, Path: "/w/a.shp", Handler: "Geoserver"},
	} {
		data, err := EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeEvent(data)
		if err != nil || got != ev {
			t.Fatalf("round trip %#v = %#v, %v", ev, got, err)
		}
	}
	if _, err := DecodeEvent([]byte(`{"kind":"nope","event":{}}`)); err == nil {
		t.Error("unknown kind decoded")
	}
}

// memJournal is an in-memory Journal with the semantics store.DB implements.
type memJournal struct {
	mu   sync.Mutex
	next uint64
	recs map[uint64]*Record
	// appended keeps the handler list each record was appended with.
	appended map[uint64][]string
}

func newMemJournal() *memJournal {
	return &memJournal{recs: map[uint64]*Record{}, appended: map[uint64][]string{}}
}

func (j *memJournal) appendedWith(id uint64) []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.appended[id]
}

func (j *memJournal) Append(_ context.Context, ev Event, hs []string) (Record, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.next++
	r := &Record{ID: j.next, Received: time.Now(), Event: ev, Pending: slices.Clone(hs), Failed: map[string]string{}}
	j.recs[r.ID] = r
	j.appended[r.ID] = slices.Clone(hs)
	c := *r
	c.Pending = slices.Clone(hs)
	return c, nil
}

func (j *memJournal) Done(_ context.Context, id uint64, h string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	r, ok := j.recs[id]
	if !ok {
		return fmt.Errorf("no record %d", id)
	}
	r.Pending = slices.DeleteFunc(r.Pending, func(s string) bool { return s == h })
	return nil
}

func (j *memJournal) Fail(_ context.Context, id uint64, h, cause string, retryAt time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := j.recs[id]
	r.Failed[h] = cause
	r.Attempts++
	r.RetryAt = retryAt
	if retryAt.IsZero() {
		r.Pending = slices.DeleteFunc(r.Pending, func(s string) bool { return s == h })
	}
	return nil
}

func (j *memJournal) Pending(context.Context) ([]Record, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Record
	for _, r := range j.recs {
		if len(r.Pending) > 0 {
			c := *r
			c.Pending = slices.Clone(r.Pending)
			out = append(out, c)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

type transientErr struct{}

// outage makes handlers fail transiently while down is set.
type outage struct {
	mu   sync.Mutex
	down bool
}

func (o *outage) set(down bool) {
	o.mu.Lock()
	o.down = down
	o.mu.Unlock()
}

func (o *outage) fail(Event) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.down {
		return fmt.Errorf("call magpie: %w", transientErr{})
	}
	return nil
}

func (transientErr) Error() string   { return "magpie unavailable" }
func (transientErr) Transient() bool { return true }

func TestSubmitJournalsAndRetriesTransientFailures(t *testing.T) {
	log := &callLog{}
	magpie := &outage{down: true}
	flaky := &recorder{name: "Flaky", log: log, fail: magpie.fail}
	final := &recorder{name: "Final", log: log, fail: func(Event) error { return errors.New("bad config") }}
	reg, _ := NewRegistry(
		Registration{Handler: &recorder{name: "Ok", log: log}, Active: true, Priority: prio(1)},
		Registration{Handler: flaky, Active: true, Priority: prio(2)},
		Registration{Handler: final, Active: true, Priority: prio(3)},
	)
	j := newMemJournal()
	d := NewDispatcher(reg, quietLog(), Options{Journal: j, Backoff: Backoff{Base: time.Millisecond, Max: time.Millisecond}})
	ctx := context.Background()
	id, err := d.Submit(ctx, UserEvent{Action: Created, UserName: "alice"})
	if err == nil || !IsTransient(err) {
		t.Fatalf("submit err = %v, want a transient error; calls %v", err, log.list())
	}
	pend, _ := j.Pending(ctx)
	if len(pend) != 1 || pend[0].ID != id || !slices.Equal(pend[0].Pending, []string{"Flaky"}) {
		t.Fatalf("pending = %+v, want only Flaky on event %d", pend, id)
	}
	if j.recs[id].Failed["Final"] != "bad config" {
		t.Fatalf("final failure not recorded: %+v", j.recs[id].Failed)
	}

	magpie.set(false)
	if _, err := d.replayDue(ctx); err != nil {
		t.Fatal(err)
	}
	if pend, _ := j.Pending(ctx); len(pend) != 0 {
		t.Fatalf("still pending after retry: %+v", pend)
	}
	want := []string{"Ok:user_created:user:alice", "Flaky:user_created:user:alice", "Final:user_created:user:alice", "Flaky:user_created:user:alice"}
	if got := log.list(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
}

// TestRetryingAndGaveUp: Submit's error says whether every failure is kept
// for a retry; a retry that fails for good is reported to GaveUp, the first
// attempt is not (its caller has the error).
func TestRetryingAndGaveUp(t *testing.T) {
	log := &callLog{}
	var mu sync.Mutex
	failure := error(transientErr{})
	flaky := &recorder{name: "Flaky", log: log, fail: func(Event) error {
		mu.Lock()
		defer mu.Unlock()
		return failure
	}}
	reg, _ := NewRegistry(Registration{Handler: flaky, Active: true})
	var gaveUp []string
	j := newMemJournal()
	d := NewDispatcher(reg, quietLog(), Options{Journal: j, Backoff: Backoff{Base: time.Millisecond, Max: time.Millisecond},
		GaveUp: func(ev Event, h string, err error) { gaveUp = append(gaveUp, ev.Name()+" "+h+": "+err.Error()) }})
	ctx := context.Background()
	id, err := d.Submit(ctx, UserEvent{Action: Created, UserName: "alice"})
	if !Retrying(err) {
		t.Fatalf("transient failure: Retrying(%v) = false", err)
	}
	mu.Lock()
	failure = errors.New("disk full")
	mu.Unlock()
	j.mu.Lock()
	j.recs[id].RetryAt = time.Time{} // due now
	j.mu.Unlock()
	if _, err := d.replayDue(ctx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"user_created Flaky: disk full"}; !slices.Equal(gaveUp, want) {
		t.Fatalf("GaveUp calls = %v, want %v", gaveUp, want)
	}
	if _, err := d.Submit(ctx, UserEvent{Action: Created, UserName: "bob"}); err == nil || Retrying(err) {
		t.Fatalf("definite failure: err %v, Retrying true", err)
	}
	if len(gaveUp) != 1 {
		t.Fatalf("GaveUp called for a first attempt: %v", gaveUp)
	}
	if Retrying(nil) || Retrying(errors.Join(&HandlerError{Handler: "a", Retrying: true, Err: failure}, errors.New("journal"))) {
		t.Fatal("Retrying must be false for nil and for an error outside the handlers")
	}
}

func TestReplayRunsOnlyUnfinishedHandlersOnce(t *testing.T) {
	log := &callLog{}
	reg, _ := NewRegistry(
		Registration{Handler: &recorder{name: "A", log: log}, Active: true, Priority: prio(1)},
		Registration{Handler: &recorder{name: "B", log: log}, Active: true, Priority: prio(2)},
	)
	j := newMemJournal()
	ctx := context.Background()
	// A crash after A finished: the record still lists B.
	rec, _ := j.Append(ctx, UserEvent{Action: Deleted, UserName: "bob"}, []string{"A", "B"})
	_ = j.Done(ctx, rec.ID, "A")

	d := NewDispatcher(reg, quietLog(), Options{Journal: j})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- d.Run(runCtx) }()
	deadline := time.After(10 * time.Second)
	for len(log.list()) == 0 {
		select {
		case <-deadline:
			t.Fatal("replay did not happen")
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	<-done
	if got := log.list(); !slices.Equal(got, []string{"B:user_deleted:user:bob"}) {
		t.Fatalf("replayed calls = %v", got)
	}
	if pend, _ := j.Pending(ctx); len(pend) != 0 {
		t.Fatalf("pending after replay: %+v", pend)
	}
}

func TestNewerEventSupersedesPendingOlderOne(t *testing.T) {
	log := &callLog{}
	reg, _ := NewRegistry(Registration{Handler: &recorder{name: "A", log: log}, Active: true})
	j := newMemJournal()
	ctx := context.Background()
	old, _ := j.Append(ctx, UserEvent{Action: Created, UserName: "carol"}, []string{"A"})
	_ = j.Fail(ctx, old.ID, "A", "down", time.Now().Add(time.Hour))
	other, _ := j.Append(ctx, UserEvent{Action: Created, UserName: "dave"}, []string{"A"})
	_ = j.Fail(ctx, other.ID, "A", "down", time.Now().Add(time.Hour))

	d := NewDispatcher(reg, quietLog(), Options{Journal: j})
	if err := d.loadWaiting(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Submit(ctx, UserEvent{Action: Deleted, UserName: "carol"}); err != nil {
		t.Fatal(err)
	}
	pend, _ := j.Pending(ctx)
	if len(pend) != 1 || pend[0].ID != other.ID {
		t.Fatalf("pending = %+v, want only dave's event %d", pend, other.ID)
	}
}

func TestSameKeyEventsAreSerialized(t *testing.T) {
	var mu sync.Mutex
	active, maxActive := 0, 0
	block := make(chan struct{})
	h := &recorder{name: "A", log: &callLog{}, fail: func(Event) error {
		mu.Lock()
		active++
		maxActive = max(maxActive, active)
		mu.Unlock()
		<-block
		mu.Lock()
		active--
		mu.Unlock()
		return nil
	}}
	reg, _ := NewRegistry(Registration{Handler: h, Active: true})
	d := NewDispatcher(reg, quietLog(), Options{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = d.Dispatch(context.Background(), UserEvent{Action: Created, UserName: "same"})
		}()
	}
	for range 4 {
		block <- struct{}{}
	}
	wg.Wait()
	if maxActive != 1 {
		t.Fatalf("events with one key ran %d at a time", maxActive)
	}
}

// timerCount is a timer factory for Run that counts the timers made and not
// yet stopped. Its timers never fire.
type timerCount struct {
	mu            sync.Mutex
	live, maxLive int
	made          chan struct{}
}

type countedTimer struct {
	c       *timerCount
	stopped bool
}

func (t *countedTimer) Chan() <-chan time.Time { return nil }

func (t *countedTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.stopped {
		return false
	}
	t.stopped = true
	t.c.live--
	return true
}

func (c *timerCount) newTimer(time.Duration) timer {
	c.mu.Lock()
	c.live++
	c.maxLive = max(c.maxLive, c.live)
	c.mu.Unlock()
	c.made <- struct{}{}
	return &countedTimer{c: c}
}

func (c *timerCount) counts() (live, maxLive int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live, c.maxLive
}

// TestRunKeepsOneTimer wakes Run many times while an event waits for a retry
// an hour away: each wake-up makes a new timer, and the previous one must be
// stopped by then, not when Run returns.
func TestRunKeepsOneTimer(t *testing.T) {
	reg, _ := NewRegistry(Registration{Handler: &recorder{name: "A", log: &callLog{}}, Active: true})
	j := newMemJournal()
	ctx := context.Background()
	rec, _ := j.Append(ctx, UserEvent{Action: Created, UserName: "alice"}, []string{"A"})
	_ = j.Fail(ctx, rec.ID, "A", "down", time.Now().Add(time.Hour))

	d := NewDispatcher(reg, quietLog(), Options{Journal: j})
	tc := &timerCount{made: make(chan struct{})}
	d.newTimer = tc.newTimer
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()

	const wakeups = 50
	deadline := time.After(10 * time.Second)
	for i := range wakeups {
		select {
		case <-tc.made:
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-deadline:
			t.Fatalf("Run made %d timers, want %d", i, wakeups)
		}
		d.poke()
	}
	if live, maxLive := tc.counts(); maxLive > 1 {
		t.Fatalf("after %d wake-ups: %d timers live, at most %d at once; want at most 1", wakeups, live, maxLive)
	}
	cancel()
	for {
		select {
		case <-tc.made: // a last wake-up may make one more
			continue
		case err := <-done:
			if err != nil {
				t.Fatalf("Run = %v", err)
			}
		case <-deadline:
			t.Fatal("Run did not return after cancel")
		}
		break
	}
	if live, _ := tc.counts(); live != 0 {
		t.Fatalf("%d timers left running after Run returned", live)
	}
}

func notHooks(h Handler) bool { return h.Name() != "Hooks" }

func TestSubmitToJournalsAndRunsOnlyKeptHandlers(t *testing.T) {
	log := &callLog{}
	var kept []string
	keep := func(h Handler) bool {
		kept = append(kept, h.Name())
		return notHooks(h)
	}
	// Config order differs from dispatch order: Thredds, A, Hooks, B.
	reg, _ := NewRegistry(
		Registration{Handler: &recorder{name: "Hooks", log: log}, Active: true, Priority: prio(2)},
		Registration{Handler: &recorder{name: "B", log: log}, Active: true, Priority: prio(3)},
		Registration{Handler: &recorder{name: "Off", log: log}, Active: false, Priority: prio(0)},
		Registration{Handler: &recorder{name: "A", log: log}, Active: true, Priority: prio(1)},
		Registration{Handler: plain{"Thredds"}, Active: true, Priority: prio(0)},
	)
	j := newMemJournal()
	d := NewDispatcher(reg, quietLog(), Options{Journal: j})
	ctx := context.Background()
	id, err := d.SubmitTo(ctx, UserEvent{Action: Created, UserName: "alice"}, keep)
	if err != nil || id == 0 {
		t.Fatalf("SubmitTo = %d, %v", id, err)
	}
	if got, want := j.appendedWith(id), []string{"A", "B"}; !slices.Equal(got, want) {
		t.Errorf("journaled handlers = %v, want %v", got, want)
	}
	if got, want := kept, []string{"A", "Hooks", "B"}; !slices.Equal(got, want) {
		t.Errorf("keep asked about %v, want the capable active handlers %v", got, want)
	}
	if got, want := log.list(), []string{"A:user_created:user:alice", "B:user_created:user:alice"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if pend, _ := j.Pending(ctx); len(pend) != 0 {
		t.Errorf("pending = %+v, want none", pend)
	}

	// Submit is SubmitTo keeping all: the same list, Hooks included.
	id, err = d.Submit(ctx, UserEvent{Action: Deleted, UserName: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := j.appendedWith(id), []string{"A", "Hooks", "B"}; !slices.Equal(got, want) {
		t.Errorf("Submit journaled handlers = %v, want %v", got, want)
	}

	// A file event goes to its handler only if kept.
	n := len(log.list())
	id, err = d.SubmitTo(ctx, FileEvent{Op: FileCreated, Path: "/x", Handler: "Hooks"}, notHooks)
	if err != nil {
		t.Fatal(err)
	}
	if got := j.appendedWith(id); len(got) != 0 || len(log.list()) != n {
		t.Errorf("file event for a dropped handler: journaled %v, calls %v", got, log.list()[n:])
	}
}

// keyRefs counts the holders and waiters of key's lock.
func (d *Dispatcher) keyRefs(key string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if k := d.keys[key]; k != nil {
		return k.refs
	}
	return 0
}

func TestSubmitToWaitsForTheKeyLock(t *testing.T) {
	log := &callLog{}
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	// A blocks in its first call, Submit's, until released.
	a := &recorder{name: "A", log: log, fail: func(Event) error {
		if calls.Add(1) == 1 {
			close(started)
			<-release
		}
		return nil
	}}
	reg, _ := NewRegistry(
		Registration{Handler: a, Active: true, Priority: prio(1)},
		Registration{Handler: &recorder{name: "Hooks", log: log}, Active: true, Priority: prio(2)},
	)
	d := NewDispatcher(reg, quietLog(), Options{Journal: newMemJournal()})
	ctx := context.Background()
	ev := UserEvent{Action: Created, UserName: "alice"}
	deadline := time.After(10 * time.Second)
	wait := func(ch <-chan error, what string) {
		t.Helper()
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		case <-deadline:
			t.Fatalf("%s did not return", what)
		}
	}

	submitted := make(chan error, 1)
	go func() { _, err := d.Submit(ctx, ev); submitted <- err }()
	select {
	case <-started:
	case <-deadline:
		t.Fatal("Submit did not reach handler A")
	}
	resynced := make(chan error, 1)
	go func() { _, err := d.SubmitTo(ctx, ev, notHooks); resynced <- err }()
	// Wait (for a state, with a deadline) until SubmitTo asked for alice's
	// lock: then it must not get further while Submit holds it.
	for d.keyRefs(ev.Key()) < 2 {
		select {
		case err := <-resynced:
			t.Fatalf("SubmitTo for alice returned (%v) while a Submit for alice was running", err)
		case <-deadline:
			t.Fatal("SubmitTo did not ask for alice's lock")
		case <-time.After(time.Millisecond):
		}
	}
	select {
	case <-resynced:
		t.Fatal("SubmitTo for alice returned while a Submit for alice was running")
	default:
	}
	if got := log.list(); len(got) != 1 {
		t.Fatalf("calls while Submit holds alice's lock = %v, want only Submit's A", got)
	}
	close(release)
	wait(submitted, "Submit")
	wait(resynced, "SubmitTo")
	want := []string{"A:user_created:user:alice", "Hooks:user_created:user:alice", "A:user_created:user:alice"}
	if got := log.list(); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v (Submit's, then SubmitTo's without Hooks)", got, want)
	}
}

// A handler cut short because the dispatch's context ended (the webhook's
// dispatch_timeout, a shutdown) is retried from the journal, whatever
// error it returns: it did not fail, it was stopped.
func TestHandlerCutShortIsRetried(t *testing.T) {
	log := &callLog{}
	ctx, cancel := context.WithCancel(context.Background())
	slow := &recorder{name: "Slow", log: log, fail: func(Event) error {
		cancel() // the deadline passes while the handler works
		<-ctx.Done()
		return fmt.Errorf("reconcile: %w", ctx.Err())
	}}
	reg, _ := NewRegistry(Registration{Handler: slow, Active: true})
	j := newMemJournal()
	d := NewDispatcher(reg, quietLog(), Options{Journal: j, Backoff: Backoff{Base: time.Millisecond, Max: time.Millisecond}})
	id, err := d.Submit(ctx, UserEvent{Action: Created, UserName: "alice"})
	if err == nil || !Retrying(err) {
		t.Fatalf("submit err = %v, want one that is retried", err)
	}
	pend, _ := j.Pending(context.Background())
	if len(pend) != 1 || pend[0].ID != id || !slices.Equal(pend[0].Pending, []string{"Slow"}) {
		t.Fatalf("pending = %+v, want Slow still pending on event %d", pend, id)
	}
}

// A file event whose handler fails transiently (Magpie down) is journaled
// then and retried like a webhook; a newer file event of the same path that
// succeeds settles it.
func TestFileEventRetriedAfterTransientFailure(t *testing.T) {
	log := &callLog{}
	magpie := &outage{down: true}
	fs := &recorder{name: "FileSystem", log: log, fail: magpie.fail}
	reg, _ := NewRegistry(Registration{Handler: fs, Active: true})
	j := newMemJournal()
	d := NewDispatcher(reg, quietLog(), Options{Journal: j, Backoff: Backoff{Base: time.Millisecond, Max: time.Millisecond}})
	ctx := context.Background()
	ev := FileEvent{Op: FileCreated, Path: "/wps/a.nc", Handler: "FileSystem"}
	if err := d.Dispatch(ctx, ev); err == nil || !Retrying(err) {
		t.Fatalf("dispatch err = %v, want one that is retried", err)
	}
	pend, _ := j.Pending(ctx)
	if len(pend) != 1 || pend[0].Event != Event(ev) || !slices.Equal(pend[0].Pending, []string{"FileSystem"}) {
		t.Fatalf("pending = %+v, want the file event for FileSystem", pend)
	}
	magpie.set(false)
	time.Sleep(time.Until(pend[0].RetryAt)) // its retry is due (<= 1 ms)
	if _, err := d.replayDue(ctx); err != nil {
		t.Fatal(err)
	}
	if pend, _ := j.Pending(ctx); len(pend) != 0 {
		t.Fatalf("still pending after the retry: %+v", pend)
	}

	// Failed again, then a newer event of the path succeeds: nothing left.
	magpie.set(true)
	_ = d.Dispatch(ctx, ev)
	magpie.set(false)
	if err := d.Dispatch(ctx, FileEvent{Op: FileModified, Path: "/wps/a.nc", Handler: "FileSystem"}); err != nil {
		t.Fatal(err)
	}
	if pend, _ := j.Pending(ctx); len(pend) != 0 {
		t.Fatalf("pending after a newer event of the path succeeded: %+v", pend)
	}
}
