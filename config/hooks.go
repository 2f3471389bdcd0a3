package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"gopkg.in/yaml.v3"
)

// Hooks is the top-level hooks: section (spec actions_sessions.md §D3): its
// settings and one Hook per event name.
type Hooks struct {
	// DefaultTimeout (default_timeout, seconds, default 600) bounds a task or
	// onEnter that sets no timeout; onExit actions default to 300 s.
	DefaultTimeout time.Duration
	// MaxParallel (max_parallel, default 4) caps the hook sessions running at
	// once; sessions of one user always run one at a time, in arrival order.
	MaxParallel int
	// SessionRoot (session_root, optional) is the existing directory that
	// holds the session working directories; empty lets the daemon choose.
	SessionRoot string
	// Env (env) is the global hook environment, over the clean base.
	Env map[string]string
	// Accounts (accounts) map run_as names to ids, checked before the OS
	// user database; the key "*" applies to any name found in neither.
	Accounts map[string]Account
	// AllowRunAsDaemonUser (allow_run_as_daemon_user, default false) lets a
	// hook run as the daemon's own user.
	AllowRunAsDaemonUser bool
	// Events maps an event name (see HookEvents) to its hook.
	Events map[string]*Hook
}

// Account is a run_as user given by ids, for workspace users that have no
// OS account.
type Account struct {
	// UID (uid, required) and GID (gid, required) are the user and primary
	// group ids.
	UID, GID uint32
	// Groups (groups) are supplementary group ids.
	Groups []uint32
}

// Hook is what runs for one event: environments entered in order, tasks,
// then the environments exited in reverse order, in one session.
type Hook struct {
	// Event is the event name the hook is keyed by, e.g. "user_created".
	Event string
	// RunAs (run_as, required) is the user the actions run as: a fixed
	// name or a template such as "{{Event.UserName}}".
	RunAs Template
	// Group (group, optional) is the group name of the session: the primary
	// group of the actions and the group the working directory is shared
	// with; empty uses the user's primary group.
	Group string
	// Environments (environments) are entered in order.
	Environments []HookEnvironment
	// Tasks (tasks) run in order once every environment is entered.
	Tasks []HookAction
	// RetainOnFailure (retain_on_failure, default false) keeps the working
	// directory of a failed session for debugging.
	RetainOnFailure bool
}

// HookEnvironment is one environment of a hook.
type HookEnvironment struct {
	// Name (name, required) is unique within the hook.
	Name string
	// Variables (variables) are set while the environment is entered; the
	// values are templates.
	Variables map[string]Template
	// OnEnter (onEnter) and OnExit (onExit) are optional actions.
	OnEnter, OnExit *HookAction
}

// HookAction is one command, run without a shell.
type HookAction struct {
	// Command (command, required) is an absolute path or a name looked up
	// in the hook environment's PATH; a template.
	Command Template
	// Args (args) are templates.
	Args []Template
	// Timeout (timeout, positive seconds) cancels the action; zero uses the
	// default of its kind.
	Timeout time.Duration
	// CancelMode (cancelation.mode) is TERMINATE (default) or
	// NOTIFY_THEN_TERMINATE.
	CancelMode string
	// NotifyPeriod (cancelation.notifyPeriodInSeconds, 1-600) is the grace
	// between SIGTERM and SIGKILL of NOTIFY_THEN_TERMINATE; zero uses the
	// session default (30 s for environments, 120 s for tasks).
	NotifyPeriod time.Duration
}

// Defaults of the hooks section.
const (
	DefaultHookTimeout     = 600 * time.Second
	DefaultHookMaxParallel = 4
)

// HookVars are the variables every hook action gets besides the env
// setting and its environments' variables; {{Env.X}} may name them.
var HookVars = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG",
	"COWBIRD_EVENT", "COWBIRD_USER", "COWBIRD_PATH", "COWBIRD_SESSION_DIR"}

// permissionRefs are the Event.* references of permission events.
var permissionRefs = []string{"Event.UserName", "Event.GroupName", "Event.ServiceName", "Event.ServiceType",
	"Event.ResourceID", "Event.ResourceFullName", "Event.PermissionName", "Event.Access", "Event.Scope",
	"Event.Permission"}

// hookEventRefs lists the Event.* references of each event name.
var hookEventRefs = map[string][]string{
	"user_created":        {"Event.UserName"},
	"user_deleted":        {"Event.UserName"},
	"permission_created":  permissionRefs,
	"permission_deleted":  permissionRefs,
	"wps_output_created":  {"Event.Path"},
	"wps_output_deleted":  {"Event.Path"},
	"shapefile_published": {"Event.UserName", "Event.Path"},
	"shapefile_deleted":   {"Event.UserName", "Event.Path"},
}

// HookEvents lists the event names a hook can be keyed by, sorted.
func HookEvents() []string { return slices.Sorted(maps.Keys(hookEventRefs)) }

// HookRefs lists the Event.* and Handler.* references of event, the ones
// known before a session starts (run_as may use only these).
func HookRefs(event string) []string {
	return append(slices.Clone(hookEventRefs[event]), "Handler.WorkspaceDir", "Handler.WpsOutputsDir")
}

// sessionDirRef is the reference to the session's working directory.
const sessionDirRef = "Session.WorkingDirectory"

// Template is a format string: literal text with {{ Name.Path }}
// references (spec B10). There is no escape for a literal "{{".
type Template struct {
	raw   string
	parts []tmplPart
}

type tmplPart struct {
	lit string
	ref string // set for a reference
}

var refName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$`)

// ParseTemplate parses s. Unbalanced braces and references that are not
// dotted identifiers are errors.
func ParseTemplate(s string) (Template, error) {
	t := Template{raw: s}
	rest := s
	for rest != "" {
		open := strings.Index(rest, "{{")
		if cl := strings.Index(rest, "}}"); cl >= 0 && (open < 0 || cl < open) {
			return Template{}, fmt.Errorf("%q: \"}}\" without \"{{\"", s)
		}
		if open < 0 {
			t.parts = append(t.parts, tmplPart{lit: rest})
			break
		}
		if open > 0 {
			t.parts = append(t.parts, tmplPart{lit: rest[:open]})
		}
		body, after, ok := strings.Cut(rest[open+2:], "}}")
		if !ok {
			return Template{}, fmt.Errorf("%q: \"{{\" without \"}}\"", s)
		}
		name := strings.TrimSpace(body)
		if !refName.MatchString(name) {
			return Template{}, fmt.Errorf("%q: {{%s}} is not a reference such as {{Event.UserName}}", s, body)
		}
		t.parts = append(t.parts, tmplPart{ref: name})
		rest = after
	}
	return t, nil
}

// String returns the template as written.
func (t Template) String() string { return t.raw }

// Refs lists the references of t in order, with repeats.
func (t Template) Refs() []string {
	var out []string
	for _, p := range t.parts {
		if p.ref != "" {
			out = append(out, p.ref)
		}
	}
	return out
}

// Resolve substitutes every reference with its value in values; a
// reference without a value is an error.
func (t Template) Resolve(values map[string]string) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.ref == "" {
			b.WriteString(p.lit)
			continue
		}
		v, ok := values[p.ref]
		if !ok {
			return "", fmt.Errorf("resolve %q: no value for {{%s}}", t.raw, p.ref)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// hooksKeys are the settings keys of the hooks section; any other key must
// be an event name.
var hooksKeys = []string{"default_timeout", "max_parallel", "session_root", "env", "accounts",
	"allow_run_as_daemon_user"}

// hooksNodes collects the keys of the hooks: sections of every file; the
// first file that sets a key wins.
type hooksNodes struct {
	keys  []string // in order of first appearance
	nodes map[string]hooksValue
}

// hooksValue is one key's value and the file it came from.
type hooksValue struct {
	node *yaml.Node
	file string
}

// hooksSection records the keys of one file's hooks: section.
func (d *decoder) hooksSection(n *yaml.Node, into *hooksNodes, log *logrus.Entry) {
	pairs, _ := d.mapping(n, "hooks")
	for _, p := range pairs {
		_, event := hookEventRefs[p.key]
		switch _, dup := into.nodes[p.key]; {
		case !event && !slices.Contains(hooksKeys, p.key):
			d.fail("hooks."+p.key, "unknown key (events: %s)", strings.Join(HookEvents(), ", "))
		case dup:
			log.WithFields(logrus.Fields{"key": p.key, "file": d.file}).Warn("duplicate hooks key ignored")
		default:
			into.keys = append(into.keys, p.key)
			into.nodes[p.key] = hooksValue{p.val, d.file}
		}
	}
}

// resolveHooks decodes the collected hooks keys; nil when there are none.
func resolveHooks(in hooksNodes) (*Hooks, Errors) {
	if len(in.keys) == 0 {
		return nil, nil
	}
	h := &Hooks{DefaultTimeout: DefaultHookTimeout, MaxParallel: DefaultHookMaxParallel,
		Env: map[string]string{}, Accounts: map[string]Account{}, Events: map[string]*Hook{}}
	var errs Errors
	var events []string
	for _, key := range in.keys {
		v := in.nodes[key]
		d := &decoder{file: v.file}
		path := "hooks." + key
		switch key {
		case "default_timeout":
			h.DefaultTimeout = d.seconds(v.node, path, 0)
		case "max_parallel":
			if n, ok := d.integer(v.node, path); ok && n < 1 {
				d.fail(path, "must be at least 1, got %d", n)
			} else if ok {
				h.MaxParallel = n
			}
		case "session_root":
			h.SessionRoot, _ = d.nonEmpty(v.node, path)
		case "env":
			pairs, _ := d.mapping(v.node, path)
			for _, p := range pairs {
				kp := join(path, p.key)
				if !envVarName.MatchString(p.key) {
					d.fail(kp, "%q is not a valid variable name", p.key)
				}
				h.Env[p.key], _ = d.text(p.val, kp)
			}
		case "accounts":
			pairs, _ := d.mapping(v.node, path)
			for _, p := range pairs {
				h.Accounts[p.key] = d.account(p.val, join(path, p.key))
			}
		case "allow_run_as_daemon_user":
			h.AllowRunAsDaemonUser, _ = d.boolean(v.node, path)
		default:
			h.Events[key] = d.hook(key, v.node)
			events = append(events, key)
		}
		errs = append(errs, d.errs...)
	}
	for _, ev := range events { // references need the whole env setting
		errs = append(errs, h.Events[ev].checkRefs(in.nodes[ev].file, h.Env)...)
	}
	return h, errs
}

var envVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// seconds reads a positive whole number of seconds, at most max when max
// is not zero.
func (d *decoder) seconds(n *yaml.Node, path string, max int) time.Duration {
	s, ok := d.integer(n, path)
	switch {
	case !ok:
		return 0
	case max != 0 && (s < 1 || s > max):
		d.fail(path, "must be between 1 and %d seconds, got %d", max, s)
		return 0
	case s < 1 || s > maxSeconds:
		d.fail(path, "must be a positive number of seconds, got %d", s)
		return 0
	}
	return time.Duration(s) * time.Second
}

// maxSeconds is the longest timeout accepted (about 68 years).
const maxSeconds = 1<<31 - 1

func (d *decoder) id(n *yaml.Node, path string) uint32 {
	i, ok := d.integer(n, path)
	if ok && (i < 0 || i > 1<<32-2) {
		d.fail(path, "must be a user or group id, got %d", i)
		return 0
	}
	return uint32(i)
}

func (d *decoder) account(n *yaml.Node, path string) Account {
	var a Account
	pairs, isMap := d.mapping(n, path)
	for _, p := range pairs {
		kp := join(path, p.key)
		switch p.key {
		case "uid":
			a.UID = d.id(p.val, kp)
		case "gid":
			a.GID = d.id(p.val, kp)
		case "groups":
			items, _ := d.list(p.val, kp)
			for i, it := range items {
				a.Groups = append(a.Groups, d.id(it, kp+"["+strconv.Itoa(i)+"]"))
			}
		default:
			d.fail(kp, "unknown key")
		}
	}
	d.require(path, isMap, pairs, "uid", "gid")
	return a
}

// require reports each of keys that pairs, the mapping at path, lacks. It
// reports nothing when the node is no mapping (isMap false): that was
// reported already.
func (d *decoder) require(path string, isMap bool, pairs []pair, keys ...string) {
	for _, k := range keys {
		if isMap && !slices.ContainsFunc(pairs, func(p pair) bool { return p.key == k }) {
			d.fail(join(path, k), "is required")
		}
	}
}

func (d *decoder) template(n *yaml.Node, path string) Template {
	s, ok := d.nonEmpty(n, path)
	if !ok {
		return Template{}
	}
	return d.parseTemplate(s, path)
}

// parseTemplate parses s, read at path, reporting a syntax error at path.
func (d *decoder) parseTemplate(s, path string) Template {
	t, err := ParseTemplate(s)
	if err != nil {
		d.fail(path, "%v", err)
	}
	return t
}

func (d *decoder) hook(event string, n *yaml.Node) *Hook {
	path := "hooks." + event
	h := &Hook{Event: event}
	pairs, isMap := d.mapping(n, path)
	for _, p := range pairs {
		kp := join(path, p.key)
		switch p.key {
		case "run_as":
			h.RunAs = d.template(p.val, kp)
		case "group":
			h.Group, _ = d.nonEmpty(p.val, kp)
		case "retain_on_failure":
			h.RetainOnFailure, _ = d.boolean(p.val, kp)
		case "environments":
			items, _ := d.list(p.val, kp)
			names := map[string]bool{}
			for i, it := range items {
				e := d.environment(it, kp+"["+strconv.Itoa(i)+"]")
				if e.Name != "" && names[e.Name] {
					d.fail(kp+"["+strconv.Itoa(i)+"].name", "duplicate environment name %q", e.Name)
				}
				names[e.Name] = true
				h.Environments = append(h.Environments, e)
			}
		case "tasks":
			items, _ := d.list(p.val, kp)
			for i, it := range items {
				h.Tasks = append(h.Tasks, d.action(it, kp+"["+strconv.Itoa(i)+"]"))
			}
		default:
			d.fail(kp, "unknown key")
		}
	}
	d.require(path, isMap, pairs, "run_as")
	if isMap && len(h.Tasks) == 0 && !slices.ContainsFunc(h.Environments, func(e HookEnvironment) bool {
		return e.OnEnter != nil || e.OnExit != nil
	}) {
		d.fail(path, "has nothing to run: add tasks or an environment with onEnter or onExit")
	}
	return h
}

func (d *decoder) environment(n *yaml.Node, path string) HookEnvironment {
	var e HookEnvironment
	pairs, _ := d.mapping(n, path)
	for _, p := range pairs {
		kp := join(path, p.key)
		switch p.key {
		case "name":
			e.Name, _ = d.nonEmpty(p.val, kp)
		case "variables":
			vars, _ := d.mapping(p.val, kp)
			e.Variables = map[string]Template{}
			for _, v := range vars {
				vp := join(kp, v.key)
				if !envVarName.MatchString(v.key) {
					d.fail(vp, "%q is not a valid variable name", v.key)
				}
				if s, ok := d.text(v.val, vp); ok {
					e.Variables[v.key] = d.parseTemplate(s, vp)
				}
			}
		case "onEnter", "onExit":
			a := d.action(p.val, kp)
			if p.key == "onEnter" {
				e.OnEnter = &a
			} else {
				e.OnExit = &a
			}
		default:
			d.fail(kp, "unknown key")
		}
	}
	if pairs != nil && e.Name == "" {
		d.fail(path+".name", "is required")
	}
	if pairs != nil && len(e.Variables) == 0 && e.OnEnter == nil && e.OnExit == nil {
		d.fail(path, "must have variables, onEnter or onExit")
	}
	return e
}

func (d *decoder) action(n *yaml.Node, path string) HookAction {
	var a HookAction
	pairs, isMap := d.mapping(n, path)
	for _, p := range pairs {
		kp := join(path, p.key)
		switch p.key {
		case "command":
			a.Command = d.template(p.val, kp)
		case "args":
			items, _ := d.list(p.val, kp)
			for i, it := range items {
				ip := kp + "[" + strconv.Itoa(i) + "]"
				// An empty argument is valid; numbers are taken as written.
				if s, ok := d.text(it, ip); ok {
					a.Args = append(a.Args, d.parseTemplate(s, ip))
				}
			}
		case "timeout":
			a.Timeout = d.seconds(p.val, kp, 0)
		case "cancelation":
			d.cancelation(p.val, kp, &a)
		default:
			d.fail(kp, "unknown key")
		}
	}
	d.require(path, isMap, pairs, "command")
	return a
}

func (d *decoder) cancelation(n *yaml.Node, path string, a *HookAction) {
	pairs, _ := d.mapping(n, path)
	for _, p := range pairs {
		kp := join(path, p.key)
		switch p.key {
		case "mode":
			if s, ok := d.str(p.val, kp); ok && s != "TERMINATE" && s != "NOTIFY_THEN_TERMINATE" {
				d.fail(kp, "must be TERMINATE or NOTIFY_THEN_TERMINATE, got %q", s)
			} else {
				a.CancelMode = s
			}
		case "notifyPeriodInSeconds":
			a.NotifyPeriod = d.seconds(p.val, kp, 600)
		default:
			d.fail(kp, "unknown key")
		}
	}
	if a.NotifyPeriod != 0 && a.CancelMode != "NOTIFY_THEN_TERMINATE" {
		d.fail(path+".notifyPeriodInSeconds", "needs mode NOTIFY_THEN_TERMINATE")
	}
}

// checkRefs checks every reference of h against its scope: run_as sees the
// event and handler references; environment variables also see the
// session directory and the variables set before them; actions see the
// variables of their own environment too.
func (h *Hook) checkRefs(file string, globalEnv map[string]string) Errors {
	var errs Errors
	path := "hooks." + h.Event
	check := func(t Template, p string, scope map[string]bool) {
		for _, ref := range t.Refs() {
			if !scope[ref] {
				errs = append(errs, &FieldError{File: file, Path: p, Msg: "unknown reference {{" + ref + "}}"})
			}
		}
	}
	scope := map[string]bool{}
	for _, r := range HookRefs(h.Event) {
		scope[r] = true
	}
	check(h.RunAs, path+".run_as", scope)
	scope[sessionDirRef] = true
	for _, name := range HookVars {
		scope["Env."+name] = true
	}
	for name := range globalEnv {
		scope["Env."+name] = true
	}
	checkAction := func(a *HookAction, p string) {
		if a == nil {
			return
		}
		check(a.Command, p+".command", scope)
		for i, arg := range a.Args {
			check(arg, p+".args["+strconv.Itoa(i)+"]", scope)
		}
	}
	for i, e := range h.Environments {
		ep := path + ".environments[" + strconv.Itoa(i) + "]"
		for _, name := range slices.Sorted(maps.Keys(e.Variables)) {
			check(e.Variables[name], ep+".variables."+name, scope)
		}
		for name := range e.Variables {
			scope["Env."+name] = true
		}
		checkAction(e.OnEnter, ep+".onEnter")
		checkAction(e.OnExit, ep+".onExit")
	}
	for i := range h.Tasks {
		checkAction(&h.Tasks[i], path+".tasks["+strconv.Itoa(i)+"]")
	}
	return errs
}
