package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
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
// then the OS user database, then the "*" account. A templated run_as
// resolves to root only through an accounts entry of that very name, and
// the daemon's own user needs allow_run_as_daemon_user.
func (h *Handler) lookup(name string, hook *config.Hook) (account, error) {
	if name == "" {
		return account{}, errors.New("run_as is empty")
	}
	a, named, err := h.ids(name)
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
	switch {
	case a.uid == 0 && len(hook.RunAs.Refs()) > 0 && !named:
		return account{}, fmt.Errorf("run_as %q is root: a templated run_as never runs as root", name)
	case int(a.uid) == os.Geteuid() && !h.cfg.AllowRunAsDaemonUser:
		return account{}, fmt.Errorf("run_as %q is the daemon's own user (uid %d): set hooks.allow_run_as_daemon_user to allow it", name, a.uid)
	}
	return a, nil
}

// ids finds the ids of name; named reports an accounts entry of that name.
func (h *Handler) ids(name string) (a account, named bool, err error) {
	if c, ok := h.cfg.Accounts[name]; ok {
		return account{name: name, uid: c.UID, gid: c.GID, groups: c.Groups, home: "/"}, true, nil
	}
	a, err = osAccount(name)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		if c, ok := h.cfg.Accounts["*"]; ok {
			return account{name: name, uid: c.UID, gid: c.GID, groups: c.Groups, home: "/"}, false, nil
		}
		return account{}, false, fmt.Errorf("run_as %q: no such user and no accounts entry", name)
	}
	return a, false, err
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
