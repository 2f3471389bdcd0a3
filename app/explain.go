package app

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/geoserver"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
	"github.com/cowbird-go/cowbird/monitor"
	"github.com/cowbird-go/cowbird/safefs"
)

// GET /explain is composed here, in the composition root, from the parts
// that know: the FileSystem handler (files, links, Magpie's read
// permission), the Geoserver handler (datastore, GeoServer, modes against
// permissions), and the daemon's journal, actions and monitor. Each part's
// facts are checked at the time of the call; the answer is one
// filesystem.Explanation. Without an active FileSystem handler the others
// still explain what they know: the route always answers.

// fileExplainer is the FileSystem handler's part.
type fileExplainer interface {
	ExplainPath(ctx context.Context, p string) (filesystem.Explanation, error)
	ExplainUser(ctx context.Context, name string) (filesystem.Explanation, error)
}

// shapefileExplainer is the Geoserver handler's part.
type shapefileExplainer interface {
	ExplainUser(ctx context.Context, user string) ([]geoserver.Fact, error)
	// DatastoreDir is the directory it watches for user.
	DatastoreDir(user string) string
}

// Limits of the event facts of one explanation.
const maxEventFacts = 5

// explainer implements api.Explainer for the daemon.
type explainer struct{ d *daemon }

// explainerOf is the daemon's explainer: it always explains, with
// whatever handlers are active.
func explainerOf(d *daemon) api.Explainer { return explainer{d} }

// Explain implements api.Explainer.
func (x explainer) Explain(ctx context.Context, path, user string) (any, error) {
	switch {
	case (path == "") == (user == ""):
		return nil, fmt.Errorf("explain: give one of a WPS output path and a user name (%w)", fs.ErrInvalid)
	case path != "":
		return x.explainPath(ctx, path)
	}
	return x.explainUser(ctx, user)
}

// files is the active FileSystem handler, if any.
func (x explainer) files() (fileExplainer, bool) {
	h, ok := x.d.disp.Registry().Lookup(filesystem.Name)
	if !ok {
		return nil, false
	}
	f, ok := h.(fileExplainer)
	return f, ok
}

// shapefiles is the active Geoserver handler, if any.
func (x explainer) shapefiles() (shapefileExplainer, bool) {
	h, ok := x.d.disp.Registry().Lookup(geoserver.HandlerName)
	if !ok {
		return nil, false
	}
	g, ok := h.(shapefileExplainer)
	return g, ok
}

// filesConfig is the FileSystem handler's configuration entry.
func (x explainer) filesConfig() filesystem.Config {
	for _, hc := range x.d.cfg.Handlers {
		if hc.Name == filesystem.Name {
			return config.SettingsOf[filesystem.Config](hc)
		}
	}
	return filesystem.Config{}
}

// subject is what an explanation is about, as the journal, the actions
// and the monitor are searched for it.
type subject struct {
	path string // the WPS output (absolute), or ""
	// user is the user explained, or the owner of a user output; "" when
	// unknown (why says why) or for a public output.
	user, why string
	public    bool
	// groups are the user's Magpie groups, when known.
	groups      []string
	groupsKnown bool
	// route is the output's Magpie resource path, "/<service>/<route>/<rel>".
	route string
}

// explainPath explains the WPS output p.
func (x explainer) explainPath(ctx context.Context, p string) (filesystem.Explanation, error) {
	fe, ok := x.files()
	if !ok {
		if strings.IndexByte(p, 0) >= 0 || !filepath.IsAbs(p) {
			return filesystem.Explanation{}, fmt.Errorf("explain path %q: not an absolute path (%w)", p, fs.ErrInvalid)
		}
		ex := filesystem.Explanation{Path: filepath.Clean(p), CheckedAt: time.Now().UTC()}
		ex.Facts = append(ex.Facts, failFact("handlers", "set active: true under handlers.FileSystem in the configuration, then restart cowbird",
			"the FileSystem handler is not active: this daemon links no WPS output into a workspace"))
		x.addWatchFacts(&ex, subject{path: ex.Path})
		return settleExplanation(ex), nil
	}
	ex, err := fe.ExplainPath(ctx, p)
	if err != nil {
		return ex, err
	}
	s := x.outputSubject(ctx, ex.Path)
	x.addWatchFacts(&ex, s)
	if err := x.addJournalFacts(ctx, &ex, s); err != nil {
		return ex, err
	}
	return settleExplanation(ex), nil
}

// outputSubject finds whose output the WPS output p (under
// wps_outputs_dir) is: <bird>/users/<id>/… is the Magpie user id's, the
// rest is public.
func (x explainer) outputSubject(ctx context.Context, p string) subject {
	cfg := x.filesConfig()
	s := subject{path: p, public: true}
	rel, err := filepath.Rel(cfg.WPSOutputsDir, p)
	if err != nil {
		return s
	}
	rel = filepath.ToSlash(rel)
	s.route = "/" + cfg.SecureDataProxyName + "/" + cfg.WPSOutputsResName + "/" + rel
	comps := strings.Split(rel, "/")
	if len(comps) < 3 || comps[1] != "users" {
		return s
	}
	id, err := strconv.Atoi(comps[2])
	if err != nil {
		return s
	}
	s.public = false
	if x.d.magpie == nil {
		s.why = "no Magpie is configured"
		return s
	}
	mp := x.d.magpie.WithCache()
	name, err := mp.UserName(ctx, id)
	if err != nil {
		s.why = fmt.Sprintf("Magpie did not tell whose id %d is: %v", id, err)
		return s
	}
	s.user = name
	x.userGroups(ctx, mp, &s)
	return s
}

// userGroups fills in the Magpie groups of s.user.
func (x explainer) userGroups(ctx context.Context, mp *magpie.Client, s *subject) {
	if mp == nil {
		return
	}
	if u, err := mp.User(ctx, s.user); err == nil {
		s.groups, s.groupsKnown = u.Groups, true
	}
}

// explainUser explains the user name.
func (x explainer) explainUser(ctx context.Context, name string) (filesystem.Explanation, error) {
	if err := safefs.ValidName(name); err != nil {
		return filesystem.Explanation{}, fmt.Errorf("explain user: %w (%w)", err, fs.ErrInvalid)
	}
	var ex filesystem.Explanation
	if fe, ok := x.files(); ok {
		var err error
		if ex, err = fe.ExplainUser(ctx, name); err != nil {
			return ex, err
		}
	} else {
		ex = filesystem.Explanation{User: name, CheckedAt: time.Now().UTC()}
		ex.Facts = append(ex.Facts, okFact("handlers", "the FileSystem handler is not active: no workspace, notebooks link or WPS output is kept, nor checked here"))
	}
	datastoreOK := false
	if ge, ok := x.shapefiles(); ok {
		facts, err := ge.ExplainUser(ctx, name)
		if err != nil {
			return ex, err
		}
		for _, f := range facts {
			ex.Facts = append(ex.Facts, filesystem.Fact{Check: f.Check, OK: f.OK, Detail: f.Detail, Fix: f.Fix})
			datastoreOK = datastoreOK || f.Check == "datastore dir" && f.OK
		}
	}
	s := subject{user: name}
	x.addUserWatchFacts(&ex, name, datastoreOK)
	if err := x.addJournalFacts(ctx, &ex, s); err != nil {
		return ex, err
	}
	return settleExplanation(ex), nil
}

// settleExplanation sets OK and Fix from the facts, as the FileSystem handler does:
// Fix is the fix of the first fact that is not OK, a denied read
// permission's last (it is Magpie's decision, where the others are
// defects).
func settleExplanation(ex filesystem.Explanation) filesystem.Explanation {
	ex.OK, ex.Fix = true, ""
	decision := ""
	for _, f := range ex.Facts {
		switch {
		case f.OK:
		case f.Check == "read permission":
			ex.OK = false
			decision = cmp.Or(decision, f.Fix)
		default:
			ex.OK = false
			ex.Fix = cmp.Or(ex.Fix, f.Fix)
		}
	}
	ex.Fix = cmp.Or(ex.Fix, decision)
	if ex.Facts == nil {
		ex.Facts = []filesystem.Fact{}
	}
	return ex
}

func okFact(check, format string, args ...any) filesystem.Fact {
	return filesystem.Fact{Check: check, OK: true, Detail: fmt.Sprintf(format, args...)}
}

func failFact(check, fix, format string, args ...any) filesystem.Fact {
	return filesystem.Fact{Check: check, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

// The watches.

// covers reports whether registration r's events include those of p.
func covers(r monitor.Registration, p string) bool {
	if r.Recursive {
		return strings.HasPrefix(p, strings.TrimSuffix(r.Path, "/")+"/")
	}
	return filepath.Dir(p) == r.Path
}

// degradedByKey indexes the monitor's degraded registrations.
func (x explainer) degraded() map[monitor.Registration]monitor.Degradation {
	out := map[monitor.Registration]monitor.Degradation{}
	for _, dg := range x.d.mon.Degraded() {
		out[dg.Registration] = dg
	}
	return out
}

// watchFact is the fact of registration r, degraded or not; user, when
// set, is whose directory it is.
func watchFact(r monitor.Registration, dg *monitor.Degradation, user string) filesystem.Fact {
	tree := "its directory"
	if r.Recursive {
		tree = "its tree"
	}
	if dg == nil {
		return okFact("watch", "%s watches %s (%s): file events reach it", r.Handler, r.Path, tree)
	}
	detail := fmt.Sprintf("%s's watch of %s is degraded since %s (%s): its file events are lost until a retry succeeds: %v",
		r.Handler, r.Path, dg.Since.UTC().Format(time.RFC3339), plural(dg.Failures, "failure"), dg.Err)
	var fix string
	switch {
	case errors.Is(dg.Err, syscall.ENOSPC):
		fix = "raise fs.inotify.max_user_watches as the error says (docs/operations.md, inotify limits); the monitor retries every 30 s and then reconciles the tree"
	case errors.Is(dg.Err, syscall.EMFILE):
		fix = "raise fs.inotify.max_user_instances (docs/operations.md, inotify limits), then restart cowbird"
	case errors.Is(dg.Err, fs.ErrNotExist) && user != "":
		fix = `the directory is gone: run the user.resync action for ` + user + `: POST /actions/v1/user.resync with body {"user_name": ` +
			strconv.Quote(user) + `} (it makes the workspace and datastore again; the monitor watches them within 30 s)`
	case errors.Is(dg.Err, fs.ErrNotExist):
		fix = "mkdir -p " + shellQuote(r.Path) + "  # the monitor watches it within 30 s and reconciles it"
	default:
		fix = "make " + r.Path + " a directory the daemon can watch; the monitor retries every 30 s"
	}
	return failFact("watch", fix, "%s", detail)
}

// addWatchFacts adds the registrations whose events include the WPS
// output s.path.
func (x explainer) addWatchFacts(ex *filesystem.Explanation, s subject) {
	dgs := x.degraded()
	found := false
	for _, r := range x.d.mon.Registrations() {
		if !covers(r, s.path) {
			continue
		}
		found = true
		var dg *monitor.Degradation
		if d, isDeg := dgs[r]; isDeg {
			dg = &d
		}
		ex.Facts = append(ex.Facts, watchFact(r, dg, ""))
	}
	if found {
		return
	}
	if _, active := x.files(); active {
		ex.Facts = append(ex.Facts, failFact("watch", "restart cowbird: the FileSystem handler watches wps_outputs_dir at start-up",
			"no watch covers %s: a new output there is linked only by a reconcile", s.path))
	} else {
		ex.Facts = append(ex.Facts, okFact("watch", "no watch covers %s", s.path))
	}
}

// addUserWatchFacts adds the registrations of the user's workspace (in
// every active handler's workspace_dir) and below it, and checks that the
// Geoserver handler watches the user's datastore directory when it is
// there (datastoreOK).
func (x explainer) addUserWatchFacts(ex *filesystem.Explanation, user string, datastoreOK bool) {
	var roots []string
	for _, hc := range x.d.cfg.Handlers {
		if _, active := x.d.disp.Registry().Lookup(hc.Name); !active || hc.WorkspaceDir == "" {
			continue
		}
		if abs, err := filepath.Abs(hc.WorkspaceDir); err == nil && !slices.Contains(roots, filepath.Join(abs, user)) {
			roots = append(roots, filepath.Join(abs, user))
		}
	}
	dgs := x.degraded()
	var seen []monitor.Registration
	for _, r := range x.d.mon.Registrations() {
		for _, root := range roots {
			if r.Path == root || strings.HasPrefix(r.Path, root+"/") || covers(r, root) {
				seen = append(seen, r)
				var dg *monitor.Degradation
				if d, isDeg := dgs[r]; isDeg {
					dg = &d
				}
				ex.Facts = append(ex.Facts, watchFact(r, dg, user))
				break
			}
		}
	}
	if g, active := x.shapefiles(); active && datastoreOK {
		dir := g.DatastoreDir(user)
		if !slices.ContainsFunc(seen, func(r monitor.Registration) bool { return r.Handler == geoserver.HandlerName && r.Path == dir }) {
			ex.Facts = append(ex.Facts, failFact("watch", "restart cowbird: at start-up the Geoserver handler watches every datastore directory "+
				"(the user.resync action does too, but sets the directory to others rwx)",
				"the Geoserver handler does not watch %s: its new shapefiles are not published, nor its mode changes applied", dir))
			return
		}
	}
	if len(seen) == 0 {
		ex.Facts = append(ex.Facts, okFact("watch", "none registered for %s", strings.Join(roots, ", ")))
	}
}

// The journal and the reconciles.

// journalContext is what the event and reconcile facts read: the actions
// and the FileSystem reconciles counted since start.
type journalContext struct {
	recs           []actions.Record
	runsOK, failed int
	files          bool // the FileSystem handler is active
}

// addJournalFacts adds the pending and failed events that concern s, and,
// with a FileSystem handler, the last reconcile action that covered s.
func (x explainer) addJournalFacts(ctx context.Context, ex *filesystem.Explanation, s subject) error {
	recs, err := x.d.db.Actions(ctx)
	if err != nil {
		return fmt.Errorf("explain: actions: %w", err)
	}
	jc := journalContext{recs: recs}
	if _, jc.files = x.files(); jc.files {
		rs := x.d.reconcileState(recs)
		jc.runsOK, jc.failed = rs.RunsOK, rs.RunsFailed
	}
	last := jc.lastReconcile(s)
	events, kept, err := x.events(ctx, s)
	if err != nil {
		return err
	}
	var failed, pending []filesystem.Fact
	for _, v := range events {
		if v.Status == actions.EventFailed {
			failed = append(failed, failedEventFact(v, s, last))
		} else {
			pending = append(pending, pendingEventFact(v))
		}
	}
	// The defects first, the events that wait on their retry last.
	switch all := append(failed, pending...); {
	case len(all) == 0:
		ex.Facts = append(ex.Facts, okFact("events", "no pending or failed event %s", s.concerning(kept)))
	case len(all) > maxEventFacts:
		ex.Facts = append(ex.Facts, all[:maxEventFacts]...)
		more := fmt.Sprintf("%d more pending or failed events, as above", len(all)-maxEventFacts)
		if s.user != "" && s.path == "" {
			ex.Facts = append(ex.Facts, failFact("events", "cowbird events list --failed --user "+shellQuote(s.user)+
				"; cowbird events list --pending --user "+shellQuote(s.user), "%s", more))
		} else {
			ex.Facts = append(ex.Facts, failFact("events", "cowbird events list --failed; cowbird events list --pending", "%s", more))
		}
	default:
		ex.Facts = append(ex.Facts, all...)
	}
	if jc.files {
		ex.Facts = append(ex.Facts, jc.reconcileFact(s, last))
	}
	return nil
}

// concerning describes which events concern s, to follow "no pending or
// failed event".
func (s subject) concerning(kept int) string {
	among := fmt.Sprintf("among the %d kept in the journal", kept)
	switch {
	case s.path == "":
		return "of " + s.user + " " + among
	case s.public:
		return "can change it (a public output: no Magpie user or permission applies to it)"
	case s.user == "":
		return fmt.Sprintf("on its route %s or above %s (its owner is unknown: %s)", s.route, among, s.why)
	}
	groups := "a group"
	if s.groupsKnown {
		groups = "their groups (" + strings.Join(s.groups, ", ") + ")"
	}
	return fmt.Sprintf("touches it %s (user events of %s; permission events of %s or %s on %s or above)",
		among, s.user, s.user, groups, s.route)
}

// touches reports whether ev concerns s.
func (s subject) touches(ev handlers.Event) bool {
	if s.path == "" {
		switch ev := ev.(type) {
		case handlers.UserEvent:
			return ev.UserName == s.user
		case handlers.PermissionEvent:
			return ev.User == s.user
		}
		return false
	}
	if fe, ok := ev.(handlers.FileEvent); ok { // journaled when a handler failed it transiently
		return s.path == fe.Path || strings.HasPrefix(s.path, strings.TrimSuffix(fe.Path, "/")+"/")
	}
	if s.public {
		return false
	}
	switch ev := ev.(type) {
	case handlers.UserEvent:
		return s.user != "" && ev.UserName == s.user
	case handlers.PermissionEvent:
		full := ev.ResourceFullName
		if full == "" || !(s.route == full || strings.HasPrefix(s.route, strings.TrimSuffix(full, "/")+"/")) {
			return false
		}
		switch {
		case s.user == "": // the owner is unknown: any principal may be theirs
			return true
		case ev.User != "":
			return ev.User == s.user
		}
		return !s.groupsKnown || slices.Contains(s.groups, ev.Group)
	}
	return false
}

// events lists the pending and failed events that touch s, by ID, from
// the journal's pending and failed indexes (not the whole journal), and
// how many events the journal keeps.
func (x explainer) events(ctx context.Context, s subject) ([]actions.JournalEvent, int, error) {
	counts, err := x.d.db.Counts(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("explain: journal: %w", err)
	}
	recs, err := x.d.db.Pending(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("explain: journal: %w", err)
	}
	for before := uint64(0); ; {
		failed, err := x.d.db.FailedBefore(ctx, before, 500)
		if err != nil {
			return nil, 0, fmt.Errorf("explain: journal: %w", err)
		}
		recs = append(recs, failed...)
		if len(failed) < 500 {
			break
		}
		before = failed[len(failed)-1].ID
	}
	slices.SortFunc(recs, func(a, b handlers.Record) int { return cmp.Compare(a.ID, b.ID) })
	recs = slices.CompactFunc(recs, func(a, b handlers.Record) bool { return a.ID == b.ID }) // failed and pending
	var out []actions.JournalEvent
	for _, rec := range recs {
		if s.touches(rec.Event) {
			out = append(out, api.EventView(rec))
		}
	}
	return out, counts.Events, nil
}

// describe is an event in a few words: id, time, name, key, resource.
func describe(v actions.JournalEvent) string {
	s := fmt.Sprintf("event %d (%s, %s): %s %s", v.ID, v.Received.Format(time.RFC3339), v.Source, v.Event, v.Key)
	if full, _ := v.Payload["resource_full_name"].(string); full != "" {
		s += " on " + full
	}
	return s
}

// failedEventFact is the fact of a failed event. Its fix: for the
// FileSystem, a reconcile of the event's scope (it applies Magpie's state
// now, which covers what the event wanted); for the other handlers, a
// replay. The FileSystem's failure is superseded once a reconcile covering
// s started after the event and succeeded.
func failedEventFact(v actions.JournalEvent, s subject, last *reconcileAction) filesystem.Fact {
	var parts, replay []string
	files := false
	for _, h := range v.Handlers {
		switch {
		case h.Outcome != actions.EventFailed:
			parts = append(parts, h.Handler+" pending")
			continue
		case h.Handler == filesystem.Name:
			files = true
		default:
			replay = append(replay, h.Handler)
		}
		parts = append(parts, h.Handler+" failed: "+h.Error)
	}
	detail := describe(v) + ": " + strings.Join(parts, "; ")
	var fixes []string
	if files {
		if last != nil && last.status == actions.Succeeded && last.started.After(v.Received) {
			detail += fmt.Sprintf("; its FileSystem part is superseded: the FileSystem reconcile %s, which covers it, started after it (%s) and succeeded",
				last.id, last.started.Format(time.RFC3339))
		} else {
			fix := "cowbird resync FileSystem"
			if u := cmp.Or(v.User, s.user); v.User != "" || (s.path == "" && u != "") {
				fix += " --user " + shellQuote(u)
			}
			fixes = append(fixes, fix)
		}
	}
	if len(replay) > 0 {
		fix := fmt.Sprintf("cowbird events replay %d", v.ID)
		for _, h := range replay {
			fix += " --handler " + h
		}
		fixes = append(fixes, fix+"  # after reading its error: cowbird events show "+strconv.FormatUint(v.ID, 10))
	}
	if len(fixes) == 0 {
		return okFact("failed event", "%s", detail)
	}
	return failFact("failed event", strings.Join(fixes, " && "), "%s", detail)
}

// pendingEventFact is the fact of an event a handler still has to run:
// in flight when no attempt failed yet, else waiting for its retry.
func pendingEventFact(v actions.JournalEvent) filesystem.Fact {
	var parts []string
	for _, h := range v.Handlers {
		p := h.Handler + " pending"
		if h.Error != "" {
			p += " (last error: " + h.Error + ")"
		}
		parts = append(parts, p)
	}
	if v.Attempts == 0 {
		return okFact("pending event", "%s: %s: in flight, not failed so far", describe(v), strings.Join(parts, "; "))
	}
	when := "now"
	if v.RetryAt != nil {
		when = "at " + v.RetryAt.Format(time.RFC3339)
	}
	return failFact("pending event",
		fmt.Sprintf("none to run: cowbird retries it %s by itself (up to 15 attempts); cowbird events show %d says why it waits", when, v.ID),
		"%s: %s, after %s, next attempt %s", describe(v), strings.Join(parts, "; "), plural(v.Attempts, "failed attempt"), when)
}

// reconcileAction is a FileSystem reconcile action.
type reconcileAction struct {
	id, typ, label   string
	status           actions.State
	errText          string
	started, done    time.Time
	users            []string // its scope: every user when empty
	running          bool
	linksCreated     int
	linksRemoved     int
	modesFixed, errs int
}

// reconcileOfRecord reads the FileSystem reconcile action r; ok is false
// for another action, another handler's resync and a dry run.
func reconcileOfRecord(r actions.Record) (ra reconcileAction, ok bool) {
	if !slices.Contains(reconcileTypes, r.Type) {
		return ra, false
	}
	var in struct {
		Handler string   `json:"handler"`
		Users   []string `json:"users"`
		DryRun  bool     `json:"dry_run"`
	}
	_ = json.Unmarshal(r.Input, &in) // validated against the type's schema when it ran
	if in.DryRun || cmp.Or(in.Handler, filesystem.Name) != filesystem.Name {
		return ra, false
	}
	st := r.Status
	ra = reconcileAction{id: st.ActionID, typ: r.Type, label: st.Label, status: st.Status, started: st.StartTime.UTC(),
		users: in.Users, running: !st.Status.Terminal()}
	if st.CompletionTime == nil {
		return ra, true // running, or ended without a time: no figures yet
	}
	lr := reconcileOf(r, filesystem.Name)
	ra.done, ra.errText = lr.Completed, lr.Error
	if f := lr.Figures; f != nil {
		ra.linksCreated, ra.linksRemoved, ra.modesFixed, ra.errs = f.LinksCreated, f.LinksRemoved, f.ModesFixed, f.Failed
	}
	return ra, true
}

// coversSubject reports whether the reconcile's scope includes s: a
// reconcile of every user covers everything, one of some users their
// outputs (a public output is in no user's scope).
func (ra reconcileAction) coversSubject(s subject) bool {
	if len(ra.users) == 0 {
		return true
	}
	return s.user != "" && !s.public && slices.Contains(ra.users, s.user)
}

// lastReconcile is the FileSystem reconcile action covering s that ended
// last, or nil.
func (jc journalContext) lastReconcile(s subject) *reconcileAction {
	var last *reconcileAction
	for _, r := range jc.recs {
		ra, isRec := reconcileOfRecord(r)
		if !isRec || ra.running || ra.done.IsZero() || !ra.coversSubject(s) {
			continue
		}
		if last == nil || ra.done.After(last.done) {
			last = &ra
		}
	}
	return last
}

// reconcileFact reports the last reconcile action that covered s, one
// running now, and the reconciles counted since start.
func (jc journalContext) reconcileFact(s subject, last *reconcileAction) filesystem.Fact {
	what := "it"
	if s.path == "" {
		what = s.user
	}
	counted := fmt.Sprintf("since start %s ok, %d failed (start-up, overflow, resync, periodic; "+
		"cowbird_reconcile_runs_total keeps no time nor scope)", plural(jc.runsOK, "FileSystem reconcile"), jc.failed)
	var running []string
	for _, r := range jc.recs {
		if ra, isRec := reconcileOfRecord(r); isRec && ra.running && ra.coversSubject(s) {
			running = append(running, ra.typ+" "+ra.id)
		}
	}
	if len(running) > 0 {
		counted += "; running now, covering " + what + ": " + strings.Join(running, ", ")
	}
	if last == nil {
		return okFact("last reconcile", "no reconcile action covering %s is kept; %s", what, counted)
	}
	scope := "every user"
	if len(last.users) > 0 {
		scope = "users " + strings.Join(last.users, ", ")
	}
	label := ""
	if last.label != "" {
		label = fmt.Sprintf(" %q", last.label)
	}
	head := fmt.Sprintf("%s FileSystem%s (%s) %s %s, in %s, id %s", last.typ, label, scope, last.status,
		last.done.Format(time.RFC3339), last.done.Sub(last.started).Round(time.Millisecond), last.id)
	if last.status != actions.Succeeded {
		fix := "cowbird resync FileSystem"
		if s.user != "" && !s.public {
			fix += " --user " + shellQuote(s.user)
		}
		return failFact("last reconcile", fix+"  # after reading why it failed: cowbird actions log "+last.id,
			"%s: %s; %s", head, last.errText, counted)
	}
	return okFact("last reconcile", "%s: it covered %s (%s created, %d removed, %s fixed, %d failed); %s",
		head, what, plural(last.linksCreated, "link"), last.linksRemoved, plural(last.modesFixed, "mode"), last.errs, counted)
}

// plural is "<n> <word>", with an s unless n is 1.
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@%+=:,./_-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
