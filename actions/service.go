// Package actions runs long-running admin actions, such as a handler resync,
// with the semantics of the Globus Action Provider interface: durable
// ActionStatus records, request_id de-duplication, advisory cancel, release
// of terminal actions (by hand or after release_after), per-action logs, and
// one action at a time per lock.
package actions

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/sirupsen/logrus"
)

const (
	defaultReleaseAfter    = 7 * day
	defaultMaxReleaseAfter = 30 * day
	defaultJanitorInterval = time.Minute
	defaultLogLimit        = 10
	maxLogLimit            = 100
	maxLabel               = 64 // characters, also the limit of display_status
)

// Store persists actions and their logs. store.DB implements it.
type Store interface {
	// CreateAction stores r, unless r's creator already used r's request
	// ID: then it returns that action and false.
	CreateAction(ctx context.Context, r Record) (Record, bool, error)
	// Action returns action id, or an error wrapping ErrNotFound.
	Action(ctx context.Context, id string) (Record, error)
	// Actions lists every stored action.
	Actions(ctx context.Context) ([]Record, error)
	// UpdateAction applies change to action id and stores the result, in
	// one transaction; an error from change aborts it and is returned.
	UpdateAction(ctx context.Context, id string, change func(*Record) error) (Record, error)
	// DeleteAction deletes action id, its request ID and its log if check
	// returns nil, and returns the deleted action.
	DeleteAction(ctx context.Context, id string, check func(Record) error) (Record, error)
	// AppendActionLog appends e to the log of action id.
	AppendActionLog(ctx context.Context, id string, e LogEntry) error
	// ActionLog returns up to limit log entries of action id from the
	// offset-th, and whether more follow.
	ActionLog(ctx context.Context, id string, offset, limit int) ([]LogEntry, bool, error)
}

// Type is a kind of action the service runs.
type Type struct {
	// Name identifies the type in routes, e.g. "handler.resync".
	Name        string
	Description string
	// InputSchema is the JSON Schema of a run request's body.
	InputSchema json.RawMessage
	// Lock, if set, names the lock an action runs under, e.g.
	// "handler:FileSystem" ("" for none). Actions with the same lock run one
	// at a time, in arrival order; the others wait INACTIVE.
	Lock func(input json.RawMessage) string
	// Run does the work. ctx is cancelled by Cancel (the action then ends
	// FAILED with details.code CANCELED whatever Run returns), by Timeout
	// and by Shutdown. The details returned become the SUCCEEDED action's.
	Run func(ctx context.Context, input json.RawMessage, p Progress) (map[string]any, error)
	// Resumable types are run again from the start when the daemon
	// restarts during an action; the others end FAILED DAEMON_RESTARTED.
	Resumable bool
	// Timeout bounds a run (0: none); a run past it ends FAILED TIMEOUT.
	Timeout time.Duration
}

// Progress lets a running action report on itself.
type Progress interface {
	// Progress sets details.progress to percent (0-100), display_status
	// to status (unless empty; cut to 64 characters) and merges details
	// into the action's details.
	Progress(ctx context.Context, percent float64, status string, details map[string]any)
	// Log appends a line to the action's log.
	Log(ctx context.Context, code, description string)
}

// Options configures a Service.
type Options struct {
	Store Store
	Log   *logrus.Entry
	// Types are the action types the service runs.
	Types []Type
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxReleaseAfter caps the release_after of actions (default 30 days).
	MaxReleaseAfter time.Duration
	// JanitorInterval is the period of the release of expired actions
	// (default one minute).
	JanitorInterval time.Duration
}

// Caller is who makes a request: a principal ("token:<name>",
// "magpie:user:<name>") and the group principals it belongs to
// ("magpie:group:<name>").
type Caller struct {
	ID     string
	Groups []string
}

// may reports whether c is the creator or one of allowed.
func (c Caller) may(creator string, allowed []string) bool {
	if c.ID == creator || slices.Contains(allowed, c.ID) {
		return true
	}
	return slices.ContainsFunc(c.Groups, func(g string) bool { return slices.Contains(allowed, g) })
}

// RunRequest is the Globus ActionRequest.
type RunRequest struct {
	RequestID string   `json:"request_id"`
	Label     string   `json:"label"`
	MonitorBy []string `json:"monitor_by"`
	ManageBy  []string `json:"manage_by"`
	// ReleaseAfter is an ISO-8601 duration (default P7D).
	ReleaseAfter string          `json:"release_after"`
	Body         json.RawMessage `json:"body"`
}

// Filter selects actions to enumerate: those of Type ("" for all) whose
// status is one of Statuses (default active) and where the caller holds one
// of Roles (creator_id, monitor_by, manage_by, or creator, monitor, manage;
// default creator_id). Values are case-insensitive and may be
// comma-separated; unknown ones are ignored.
type Filter struct {
	Type     string
	Statuses []string
	Roles    []string
}

// Service runs actions and answers the Action Provider operations. It is
// safe for concurrent use.
type Service struct {
	store      Store
	log        *logrus.Entry
	now        func() time.Time
	maxRelease time.Duration
	interval   time.Duration
	types      map[string]*actionType

	mu      sync.Mutex
	state   serviceState
	runs    map[string]*run   // action ID -> each non-terminal action
	holders map[string]string // lock -> action ID holding it
	queues  map[string][]string
	quit    chan struct{}
	wg      sync.WaitGroup
}

type serviceState int

const (
	notStarted serviceState = iota
	started
	stopping
)

type actionType struct {
	Type
	schema *jsonschema.Schema
}

var typeNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// New checks opts and compiles the types' input schemas.
func New(opts Options) (*Service, error) {
	var errs []error
	if opts.Store == nil {
		errs = append(errs, errors.New("store is nil"))
	}
	if opts.Log == nil {
		errs = append(errs, errors.New("log is nil"))
	}
	if opts.MaxReleaseAfter < 0 {
		errs = append(errs, fmt.Errorf("max release after %s is negative", opts.MaxReleaseAfter))
	}
	if opts.JanitorInterval < 0 {
		errs = append(errs, fmt.Errorf("janitor interval %s is negative", opts.JanitorInterval))
	}
	s := &Service{
		store: opts.Store, log: opts.Log, now: opts.Now,
		maxRelease: cmp.Or(opts.MaxReleaseAfter, defaultMaxReleaseAfter),
		interval:   cmp.Or(opts.JanitorInterval, defaultJanitorInterval),
		types:      map[string]*actionType{},
		runs:       map[string]*run{}, holders: map[string]string{}, queues: map[string][]string{},
		quit: make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, t := range opts.Types {
		if err := s.addType(t); err != nil {
			errs = append(errs, fmt.Errorf("action type %q: %w", t.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new action service: %w", err)
	}
	return s, nil
}

func (s *Service) addType(t Type) error {
	switch {
	case !typeNameRE.MatchString(t.Name):
		return errors.New("name must be letters, digits, '.', '_' or '-'")
	case s.types[t.Name] != nil:
		return errors.New("defined twice")
	case t.Run == nil:
		return errors.New("run is nil")
	case t.Timeout < 0:
		return errors.New("timeout is negative")
	}
	sch, err := compileSchema(t.Name, t.InputSchema)
	if err != nil {
		return fmt.Errorf("input schema: %w", err)
	}
	s.types[t.Name] = &actionType{Type: t, schema: sch}
	return nil
}

// Start must be called once, before Run. It ends the actions a previous
// process left ACTIVE or INACTIVE: FAILED with details.code
// DAEMON_RESTARTED, or queued again if their type is Resumable. Then it
// releases expired actions, and keeps doing so in the background until
// Shutdown.
func (s *Service) Start(ctx context.Context) error {
	if err := s.resumeOrFail(ctx); err != nil {
		return fmt.Errorf("start actions: %w", err)
	}
	if _, err := s.ReleaseExpired(ctx); err != nil {
		return fmt.Errorf("start actions: %w", err)
	}
	s.wg.Go(s.janitor)
	return nil
}

// resumeOrFail takes charge of the actions a previous process left
// unfinished.
func (s *Service) resumeOrFail(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != notStarted {
		return errors.New("already started")
	}
	recs, err := s.store.Actions(ctx)
	if err != nil {
		return err
	}
	slices.SortFunc(recs, func(a, b Record) int {
		return cmp.Or(a.Status.StartTime.Compare(b.Status.StartTime), cmp.Compare(a.Status.ActionID, b.Status.ActionID))
	})
	var errs []error
	for _, r := range recs {
		if r.Status.Status.Terminal() {
			continue
		}
		id := r.Status.ActionID
		t := s.types[r.Type]
		if t == nil || !t.Resumable || r.CanceledBy != "" {
			o := failure("Failed", CodeDaemonRestarted, "the daemon stopped while the action was "+string(r.Status.Status))
			if r.CanceledBy != "" {
				o = canceled(r.CanceledBy)
			}
			_, err := s.endLocked(ctx, id, nil, o)
			errs = append(errs, err)
			continue
		}
		rec, err := s.store.UpdateAction(ctx, id, func(r *Record) error {
			s.admitLocked(r)
			return nil
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.appendLog(ctx, id, "RESUMED", "resumed after a daemon restart")
		s.enqueueLocked(ctx, rec, t)
	}
	s.state = started
	return errors.Join(errs...)
}

// Shutdown stops the janitor and cancels the running actions, which stay
// ACTIVE or INACTIVE for the next Start, unless they finish first. It waits
// for them until ctx is done.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.state != stopping {
		s.state = stopping
		close(s.quit)
		for id, rn := range s.runs {
			if rn.cancel != nil {
				rn.cancel()
			} else {
				s.forgetLocked(id, rn)
			}
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shut down actions: %w", ctx.Err())
	}
}

// Run starts an action of type typ for caller c. It returns the new action
// (created) or, when c already sent req.RequestID with the same content, the
// existing one. Other content for a known request ID is an ErrConflict; an
// invalid request a *ValidationError; an unknown type an ErrNotFound.
func (s *Service) Run(ctx context.Context, c Caller, typ string, req RunRequest) (Status, bool, error) {
	t := s.types[typ]
	if t == nil {
		return Status{}, false, fmt.Errorf("run %s: action type: %w", typ, ErrNotFound)
	}
	rec, err := s.newRecord(c, t, req)
	if err != nil {
		return Status{}, false, fmt.Errorf("run %s: %w", typ, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != started {
		return Status{}, false, fmt.Errorf("run %s: %w", typ, ErrStopped)
	}
	s.admitLocked(&rec)
	got, created, err := s.store.CreateAction(ctx, rec)
	switch {
	case err != nil:
		return Status{}, false, fmt.Errorf("run %s: %w", typ, err)
	case !created && got.RequestHash != rec.RequestHash:
		return Status{}, false, fmt.Errorf("run %s: request %q already present with different parameters: %w", typ, req.RequestID, ErrConflict)
	case !created:
		return got.status(), false, nil
	}
	s.enqueueLocked(ctx, got, t)
	return got.status(), true, nil
}

// newRecord validates req and builds the ACTIVE record of a new action.
func (s *Service) newRecord(c Caller, t *actionType, req RunRequest) (Record, error) {
	if c.ID == "" {
		return Record{}, errors.New("caller has no ID")
	}
	if req.RequestID == "" {
		return Record{}, &ValidationError{Field: "$.request_id", Category: "missing", Description: "Field required"}
	}
	if utf8.RuneCountInString(req.Label) > maxLabel {
		return Record{}, &ValidationError{Field: "$.label", Category: "string_too_long", Description: "String should have at most 64 characters"}
	}
	monitorBy, err := principals("$.monitor_by", c.ID, req.MonitorBy)
	if err != nil {
		return Record{}, err
	}
	manageBy, err := principals("$.manage_by", c.ID, req.ManageBy)
	if err != nil {
		return Record{}, err
	}
	retention, releaseAfter, err := s.releaseAfter(req.ReleaseAfter)
	if err != nil {
		return Record{}, err
	}
	body, err := validateBody(t.schema, req.Body)
	if err != nil {
		return Record{}, err
	}
	// Marshalling sorts object keys: equal bodies give equal inputs.
	input, err := json.Marshal(body)
	if err != nil {
		return Record{}, fmt.Errorf("encode body: %w", err)
	}
	content, err := json.Marshal([]any{t.Name, req.Label, sortedSet(req.MonitorBy), sortedSet(req.ManageBy), req.ReleaseAfter, json.RawMessage(input)})
	if err != nil {
		return Record{}, fmt.Errorf("encode request: %w", err)
	}
	hash := sha256.Sum256(content)
	lock := ""
	if t.Lock != nil {
		lock = t.Lock(input)
	}
	return Record{
		Status: Status{
			ActionID: newID(), Status: Active, CreatorID: c.ID, Label: req.Label,
			MonitorBy: monitorBy, ManageBy: manageBy, StartTime: s.now().UTC(),
			ReleaseAfter: releaseAfter, DisplayStatus: "Running", Details: map[string]any{},
		},
		Type: t.Name, RequestID: req.RequestID, RequestHash: hex.EncodeToString(hash[:]),
		Input: input, Lock: lock, Retention: retention,
	}, nil
}

// principals validates the principals of field and returns them with the
// creator first, without duplicates.
func principals(field, creator string, ps []string) ([]string, error) {
	out := []string{creator}
	for i, p := range ps {
		name, ok := "", false
		for _, prefix := range []string{"token:", "magpie:user:", "magpie:group:"} {
			if rest, found := strings.CutPrefix(p, prefix); found {
				name, ok = rest, true
			}
		}
		if !ok || name == "" {
			return nil, &ValidationError{Field: fmt.Sprintf("%s[%d]", field, i), Category: "value",
				Description: "Input should be a principal: token:<name>, magpie:user:<name> or magpie:group:<name>"}
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func sortedSet(ss []string) []string {
	return slices.Compact(slices.Sorted(slices.Values(ss)))
}

// releaseAfter parses a request's release_after (default P7D) and caps it.
func (s *Service) releaseAfter(text string) (time.Duration, string, error) {
	d := defaultReleaseAfter
	if text != "" {
		var err error
		if d, err = ParseDuration(text); err != nil {
			return 0, "", &ValidationError{Field: "$.release_after", Category: "value",
				Description: "Input should be an ISO-8601 duration (PnYnMnWnDTnHnMnS)"}
		}
	}
	if text == "" || d > s.maxRelease {
		d = min(d, s.maxRelease)
		text = formatDuration(d)
	}
	return d, text, nil
}

// newID returns a random (version 4) UUID.
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// visible returns action id if c may monitor it, else an ErrNotFound.
func (s *Service) visible(ctx context.Context, c Caller, id string) (Record, error) {
	r, err := s.store.Action(ctx, id)
	if err != nil {
		return Record{}, err
	}
	if !c.may(r.Status.CreatorID, r.Status.MonitorBy) {
		return Record{}, fmt.Errorf("action %s: %w", id, ErrNotFound)
	}
	return r, nil
}

// manageable returns action id if c may manage it. A caller that may not
// gets ErrForbidden if it may see the action, else ErrNotFound.
func (s *Service) manageable(ctx context.Context, c Caller, id string) (Record, error) {
	r, err := s.store.Action(ctx, id)
	switch {
	case err != nil:
		return Record{}, err
	case c.may(r.Status.CreatorID, r.Status.ManageBy):
		return r, nil
	case c.may(r.Status.CreatorID, r.Status.MonitorBy):
		return Record{}, fmt.Errorf("action %s: %s may not manage it: %w", id, c.ID, ErrForbidden)
	}
	return Record{}, fmt.Errorf("action %s: %w", id, ErrNotFound)
}

// Status returns action id as c may see it.
func (s *Service) Status(ctx context.Context, c Caller, id string) (Status, error) {
	r, err := s.visible(ctx, c, id)
	if err != nil {
		return Status{}, fmt.Errorf("status: %w", err)
	}
	return r.status(), nil
}

// Cancel asks action id to stop, and returns its status, which may still be
// ACTIVE: it ends FAILED with details.code CANCELED. Cancelling a terminal
// action is an ErrConflict.
func (s *Service) Cancel(ctx context.Context, c Caller, id string) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.manageable(ctx, c, id)
	if err != nil {
		return Status{}, fmt.Errorf("cancel: %w", err)
	}
	if r.Status.Status.Terminal() {
		return Status{}, fmt.Errorf("cancel action %s: it is already %s: %w", id, r.Status.Status, ErrConflict)
	}
	rn := s.runs[id]
	switch {
	case s.state != started || rn == nil:
		return Status{}, fmt.Errorf("cancel action %s: %w", id, ErrStopped)
	case rn.cancel == nil: // waiting for its lock: nothing to stop
		// Once decided, the end is recorded even if the caller goes away.
		r, err = s.endLocked(context.WithoutCancel(ctx), id, rn, canceled(c.ID))
	case r.CanceledBy == "":
		r, err = s.store.UpdateAction(ctx, id, func(r *Record) error {
			r.CanceledBy = c.ID
			r.Status.DisplayStatus = "Canceling"
			return nil
		})
		if err == nil {
			s.appendLog(ctx, id, "CANCEL_REQUESTED", "cancel requested by "+c.ID)
			rn.canceledBy = c.ID
			rn.cancel()
		}
	}
	if err != nil {
		return Status{}, fmt.Errorf("cancel action %s: %w", id, err)
	}
	return r.status(), nil
}

// Release deletes terminal action id with its log and request ID, and
// returns its last status. Releasing a non-terminal action is an
// ErrConflict.
func (s *Service) Release(ctx context.Context, c Caller, id string) (Status, error) {
	if _, err := s.manageable(ctx, c, id); err != nil {
		return Status{}, fmt.Errorf("release: %w", err)
	}
	r, err := s.store.DeleteAction(ctx, id, func(r Record) error {
		if !r.Status.Status.Terminal() {
			return fmt.Errorf("it is still %s: %w", r.Status.Status, ErrConflict)
		}
		return nil
	})
	if err != nil {
		return Status{}, fmt.Errorf("release: %w", err)
	}
	return r.status(), nil
}

// Enumerate lists the actions f selects for c, oldest first.
func (s *Service) Enumerate(ctx context.Context, c Caller, f Filter) ([]Status, error) {
	statuses := parseFilter(f.Statuses, map[string]State{
		"active": Active, "inactive": Inactive, "succeeded": Succeeded, "failed": Failed,
	}, Active)
	roles := parseFilter(f.Roles, map[string]string{
		"creator_id": "creator_id", "monitor_by": "monitor_by", "manage_by": "manage_by",
		"creator": "creator_id", "monitor": "monitor_by", "manage": "manage_by",
	}, "creator_id")
	recs, err := s.store.Actions(ctx)
	if err != nil {
		return nil, fmt.Errorf("enumerate actions: %w", err)
	}
	out := []Status{}
	for _, r := range recs {
		st := r.Status
		if (f.Type != "" && r.Type != f.Type) || !statuses[st.Status] {
			continue
		}
		if (roles["creator_id"] && c.ID == st.CreatorID) ||
			(roles["monitor_by"] && c.may(st.CreatorID, st.MonitorBy)) ||
			(roles["manage_by"] && c.may(st.CreatorID, st.ManageBy)) {
			out = append(out, r.status())
		}
	}
	slices.SortFunc(out, func(a, b Status) int {
		return cmp.Or(a.StartTime.Compare(b.StartTime), cmp.Compare(a.ActionID, b.ActionID))
	})
	return out, nil
}

// parseFilter turns comma-separated, case-insensitive values into a set,
// ignoring unknown ones; an empty set becomes {def}.
func parseFilter[T comparable](values []string, known map[string]T, def T) map[T]bool {
	set := map[T]bool{}
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			if t, ok := known[strings.ToLower(strings.TrimSpace(item))]; ok {
				set[t] = true
			}
		}
	}
	if len(set) == 0 {
		set[def] = true
	}
	return set
}

// Log returns a page of up to limit (default 10, at most 100) entries of
// action id's log, from marker (empty for the first page).
func (s *Service) Log(ctx context.Context, c Caller, id string, limit int, marker string) (LogPage, error) {
	if limit < 0 {
		return LogPage{}, fmt.Errorf("log of action %s: %w", id, &ValidationError{Field: "limit", Category: "value", Description: "Input should be a positive integer"})
	}
	limit = min(cmp.Or(limit, defaultLogLimit), maxLogLimit)
	offset := 0
	if marker != "" {
		var err error
		if offset, err = strconv.Atoi(marker); err != nil || offset < 0 {
			return LogPage{}, fmt.Errorf("log of action %s: %w", id, &ValidationError{Field: "marker", Category: "value", Description: "Input should be a marker from a previous page"})
		}
	}
	if _, err := s.visible(ctx, c, id); err != nil {
		return LogPage{}, fmt.Errorf("log: %w", err)
	}
	entries, more, err := s.store.ActionLog(ctx, id, offset, limit)
	if err != nil {
		return LogPage{}, fmt.Errorf("log: %w", err)
	}
	page := LogPage{Limit: limit, HasNextPage: more, Entries: append([]LogEntry{}, entries...)}
	if more {
		page.Marker = strconv.Itoa(offset + len(entries))
	}
	return page, nil
}

// Wait blocks until action id is terminal, or the service shuts down, and
// returns its status. It checks no permission: it is for in-process callers,
// such as the synchronous resync route.
func (s *Service) Wait(ctx context.Context, id string) (Status, error) {
	s.mu.Lock()
	rn := s.runs[id]
	s.mu.Unlock()
	if rn != nil {
		select {
		case <-rn.done:
		case <-ctx.Done():
			return Status{}, fmt.Errorf("wait for action %s: %w", id, ctx.Err())
		}
	}
	r, err := s.store.Action(ctx, id)
	if err != nil {
		return Status{}, fmt.Errorf("wait: %w", err)
	}
	return r.status(), nil
}

// Introspect describes action type typ.
func (s *Service) Introspect(typ string) (Description, error) {
	t := s.types[typ]
	if t == nil {
		return Description{}, fmt.Errorf("introspect %s: action type: %w", typ, ErrNotFound)
	}
	return t.describe(), nil
}

// Types describes every action type, by name.
func (s *Service) Types() []Description {
	var out []Description
	for _, name := range slices.Sorted(maps.Keys(s.types)) {
		out = append(out, s.types[name].describe())
	}
	return out
}

func (t *actionType) describe() Description {
	return Description{
		Types: []string{"Action"}, APIVersion: "1.0", Title: t.Name, Description: t.Description,
		Synchronous: false, LogSupported: true, InputSchema: t.InputSchema,
	}
}
