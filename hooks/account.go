package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/session"
)

// account is the user a session runs as.
type account struct {
	name     string
	uid, gid uint32
	groups   []uint32
	home     string
}

// lookup resolves the run_as name of hook: the configured accounts first,
// then the OS user database, then the "*" account. A templated run_as that
// resolves through the OS database or "*" must not land on a system account
// (see refuseSystem): only an accounts entry of that very name lets it. The
// daemon's own user needs allow_run_as_daemon_user in every case.
func (h *Handler) lookup(name string, hook *config.Hook) (account, error) {
	if name == "" {
		return account{}, errors.New("run_as is empty")
	}
	a, src, err := h.ids(name)
	if err != nil {
		return account{}, err
	}
	if hook.Group != "" {
		g, err := user.LookupGroup(hook.Group)
		if err != nil {
			return account{}, fmt.Errorf("group %q: %w", hook.Group, err)
		}
		gid, err := strconv.ParseUint(g.Gid, 10, 32)
		if err != nil {
			return account{}, fmt.Errorf("group %q: gid %q: %w", hook.Group, g.Gid, err)
		}
		a.gid = uint32(gid)
	}
	if len(hook.RunAs.Refs()) > 0 && src != fromEntry {
		if err := h.refuseSystem(a, src, hook.Group != ""); err != nil {
			return account{}, &RefusedError{RunAs: name, Reason: err.Error()}
		}
	}
	if int(a.uid) == os.Geteuid() && !h.cfg.AllowRunAsDaemonUser {
		return account{}, fmt.Errorf("run_as %q is the daemon's own user (uid %d): set hooks.allow_run_as_daemon_user to allow it", name, a.uid)
	}
	return a, nil
}

// source says where a run_as name's ids come from.
type source int

const (
	fromEntry source = iota // an accounts entry of that name
	fromOS                  // the OS user database
	fromStar                // the accounts "*" entry
)

// String names the source in refusals.
func (s source) String() string {
	return [...]string{"its accounts entry", "the OS user database", `accounts."*"`}[s]
}

// RefusedError is a templated run_as that resolved to a system account.
// It is never transient: the same event would be refused again.
type RefusedError struct {
	// RunAs is the resolved name, e.g. "daemon".
	RunAs string
	// Reason says what makes it a system account, e.g. "has uid 1, below
	// UID_MIN 1000 (from the OS user database)".
	Reason string
}

// Error implements error.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("run_as %q %s: a templated run_as never runs as a system account unless hooks.accounts has an entry of that exact name",
		e.RunAs, e.Reason)
}

// Transient implements the dispatcher's retry test: a refusal is final.
func (e *RefusedError) Transient() bool { return false }

// refuseSystem returns why a, resolved from a templated run_as through src,
// is a system account, or nil: root, the daemon's own user, a uid below
// UID_MIN; for an OS account also a locked password or a nologin/false
// shell; a primary group (unless the hook fixes group:) or supplementary
// group that is root's, the daemon's, or below GID_MIN other than "users".
func (h *Handler) refuseSystem(a account, src source, groupFixed bool) error {
	p := h.sys
	from := " (from " + src.String() + ")"
	switch {
	case a.uid == 0:
		return errors.New("is root" + from)
	case int(a.uid) == os.Geteuid():
		return fmt.Errorf("is the daemon's own user (uid %d)%s", a.uid, from)
	case a.uid < p.uidMin:
		return fmt.Errorf("has uid %d, below UID_MIN %d%s", a.uid, p.uidMin, from)
	}
	if src == fromOS {
		if shell, ok := p.shell(a.name); ok && noLogin(shell) {
			return fmt.Errorf("has the login shell %s%s", shell, from)
		}
		if p.locked(a.name) {
			return fmt.Errorf("has a locked password%s", from)
		}
	}
	gids := a.groups
	if !groupFixed {
		gids = append([]uint32{a.gid}, gids...)
	}
	for _, g := range gids {
		switch {
		case g == 0:
			return fmt.Errorf("has group 0 (root's)%s", from)
		case int(g) == os.Getegid():
			return fmt.Errorf("has the daemon's own group (gid %d)%s", g, from)
		case g < p.gidMin && g != p.usersGID:
			return fmt.Errorf("has group %d, below GID_MIN %d%s", g, p.gidMin, from)
		}
	}
	return nil
}

// noLogin reports whether shell refuses logins (nologin, false).
func noLogin(shell string) bool {
	base := filepath.Base(shell)
	return base == "nologin" || base == "false"
}

// ids finds the ids of name and where they come from.
func (h *Handler) ids(name string) (account, source, error) {
	if c, ok := h.cfg.Accounts[name]; ok {
		return account{name: name, uid: c.UID, gid: c.GID, groups: c.Groups, home: "/"}, fromEntry, nil
	}
	a, err := osAccount(name)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		if c, ok := h.cfg.Accounts["*"]; ok {
			return account{name: name, uid: c.UID, gid: c.GID, groups: c.Groups, home: "/"}, fromStar, nil
		}
		return account{}, fromOS, fmt.Errorf("run_as %q: no such user and no accounts entry", name)
	}
	return a, fromOS, err
}

// osAccount looks name up in the OS user database.
func osAccount(name string) (account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return account{}, fmt.Errorf("run_as %q: %w", name, err)
	}
	a := account{name: name, home: u.HomeDir}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return account{}, fmt.Errorf("run_as %q: %w", name, err)
	}
	a.uid, a.gid = uint32(uid), uint32(gid)
	gids, err := u.GroupIds()
	if err != nil {
		return account{}, fmt.Errorf("run_as %q: groups: %w", name, err)
	}
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil && uint32(n) != a.gid {
			a.groups = append(a.groups, uint32(n))
		}
	}
	return a, nil
}

// viaSudo reports whether actions for a must go through sudo: the daemon
// is not root and a is another user.
func viaSudo(a account) bool {
	return os.Geteuid() != 0 && int(a.uid) != os.Geteuid()
}

// sudoAction wraps act so that sudo runs it as a, keeping the explicit
// environment (-E, which needs the SETENV tag) and never asking for a
// password (-n).
func sudoAction(sudo string, a account, act session.Action) session.Action {
	args := []string{"-n", "-E", "-u", "#" + strconv.FormatUint(uint64(a.uid), 10),
		"-g", "#" + strconv.FormatUint(uint64(a.gid), 10), "--", act.Command}
	act.Args = append(args, act.Args...)
	act.Command = sudo
	return act
}

// Start implements handlers.Starter: it verifies, once at start-up, what hooks need to run: when the daemon
// is not root and some hook may run as another user, sudo must exist and
// allow, without a password, each command of the hooks with a fixed run_as
// (sudo -n -l -u USER COMMAND) and some command for the others (sudo -n -l).
func (h *Handler) Start(ctx context.Context) error {
	if os.Geteuid() == 0 || len(h.cfg.Events) == 0 {
		return nil
	}
	var errs []error
	for _, event := range sortedEvents(h.cfg) {
		hook := h.cfg.Events[event]
		if len(hook.RunAs.Refs()) > 0 {
			errs = append(errs, h.sudoList(ctx, event))
			continue
		}
		a, err := h.lookup(hook.RunAs.String(), hook)
		if err != nil {
			errs = append(errs, fmt.Errorf("check hook %s: %w", event, err))
			continue
		}
		if !viaSudo(a) {
			continue
		}
		for _, cmd := range commands(hook) {
			errs = append(errs, h.sudoList(ctx, event, "-u", "#"+strconv.FormatUint(uint64(a.uid), 10), cmd))
		}
	}
	return errors.Join(errs...)
}

// sudoList runs sudo -n -l with args.
func (h *Handler) sudoList(ctx context.Context, event string, args ...string) error {
	if h.sudo == "" {
		return fmt.Errorf("check hook %s: sudo not found: it is needed to run hooks as other users when the daemon is not root", event)
	}
	out, err := exec.CommandContext(ctx, h.sudo, append([]string{"-n", "-l"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("check hook %s: sudo -n -l %v: %w: %s (see docs/hooks.md for the sudoers rule)", event, args, err, out)
	}
	return nil
}

// commands lists the fixed commands of hook, the ones a sudoers rule can name.
func commands(hook *config.Hook) []string {
	var out []string
	add := func(a *config.HookAction) {
		if a != nil && len(a.Command.Refs()) == 0 {
			out = append(out, a.Command.String())
		}
	}
	for _, e := range hook.Environments {
		add(e.OnEnter)
		add(e.OnExit)
	}
	for i := range hook.Tasks {
		add(&hook.Tasks[i])
	}
	return out
}
