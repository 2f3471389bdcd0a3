package magpie

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/sirupsen/logrus"
)

// Handler is the Magpie handler: the permissions synchronizer of cowbird.md
// §4. A permission webhook on a resource matching a sync point's source key
// creates or removes the mapped permissions on the corresponding target
// resources, one PATCH /permissions each. It only sends a PATCH that changes
// Magpie's state, so the webhooks its own writes cause end there.
type Handler struct {
	points []*syncPoint
	client *Client
	log    *logrus.Entry
	check  checkState // Run's check of Magpie, for Ready
}

// NewHandler compiles the sync points (already validated by config) for c.
// It sends nothing: call Validate to check the service types with Magpie.
func NewHandler(points []config.SyncPoint, c *Client, log *logrus.Entry) (*Handler, error) {
	h := &Handler{client: c, log: log}
	for _, p := range points {
		sp, err := compile(p)
		if err != nil {
			return nil, fmt.Errorf("magpie handler: %w", err)
		}
		h.points = append(h.points, sp)
	}
	return h, nil
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// Validate checks that every service type of the sync points is one of
// Magpie's (GET /services/types). An unknown type gives a config.Errors with
// the original's message; a Magpie failure is returned wrapped, and
// handlers.IsTransient tells whether retrying later may succeed.
func (h *Handler) Validate(ctx context.Context) error {
	types, err := h.client.ServiceTypes(ctx)
	if err != nil {
		return fmt.Errorf("validate sync_permissions service types: %w", err)
	}
	var errs config.Errors
	for _, sp := range h.points {
		for _, t := range sp.svcTypes {
			if !slices.Contains(types, t) {
				errs = append(errs, &config.FieldError{File: sp.file, Path: "sync_permissions." + sp.name + ".services." + t,
					Msg: fmt.Sprintf("Service `%s` used in sync config is not valid since it was not found in Magpie services (%s).", t, pyList(types))})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// PermissionCreated implements handlers.PermissionHandler: it creates the
// mapped permissions the principal lacks on the target resources.
func (h *Handler) PermissionCreated(ctx context.Context, ev handlers.PermissionEvent) error {
	return h.sync(ctx, ev, false)
}

// PermissionDeleted implements handlers.PermissionHandler: it removes the
// mapped permissions from the target resources, except those another mapped
// source still grants to the same principal.
func (h *Handler) PermissionDeleted(ctx context.Context, ev handlers.PermissionEvent) error {
	return h.sync(ctx, ev, true)
}

// op is one target permission to create or remove.
type op struct {
	key  string
	path []PathElem
	perm config.Permission
}

// event is one webhook being synchronized, with its per-event client.
type event struct {
	handlers.PermissionEvent
	explicit string
	remove   bool
	c        *Client
	log      *logrus.Entry
}

func (h *Handler) sync(ctx context.Context, pe handlers.PermissionEvent, remove bool) error {
	ev := &event{PermissionEvent: pe, explicit: strings.ToLower(pe.Value()), remove: remove, c: h.client.WithCache(),
		log: h.log.WithFields(logrus.Fields{"event": pe.Name(), "user": pe.User, "group": pe.Group,
			"resource_id": pe.ResourceID, "permission": pe.Value()})}
	if pe.User == "" && pe.Group == "" {
		return fmt.Errorf("sync %s on resource %d: the event has no user and no group", pe.Value(), pe.ResourceID)
	}
	var tree []*Resource
	var errs error
	for _, sp := range h.points {
		if len(sp.sources[pe.ServiceType]) == 0 {
			continue
		}
		if tree == nil {
			var err error
			if tree, err = ev.c.ResourcePath(ctx, pe.ResourceID); err != nil {
				return fmt.Errorf("sync %s on resource %d: %w", pe.Value(), pe.ResourceID, err)
			}
		}
		if err := h.syncPoint(ctx, sp, ev, tree); err != nil {
			errs = errors.Join(errs, fmt.Errorf("sync %s on resource %d: sync point %s: %w", pe.Value(), pe.ResourceID, sp.name, err))
		}
	}
	return errs
}

// syncPoint applies one sync point to the event.
func (h *Handler) syncPoint(ctx context.Context, sp *syncPoint, ev *event, tree []*Resource) error {
	m, err := sp.find(ev.ServiceType, tree)
	if err != nil || m == nil {
		return err
	}
	targets := sp.rules[m.key.key][ev.explicit]
	if len(targets) == 0 {
		ev.log.WithField("sync_point", sp.name).Infof("permission %s is not mapped from resource key %s: nothing to sync", ev.explicit, m.key.key)
		return nil
	}
	var ops []op
	for _, t := range targets {
		path, err := sp.keys[t.key].path(m)
		if err != nil {
			return err
		}
		var done []config.Permission
		for _, p := range t.perms {
			if !slices.Contains(done, p) {
				done = append(done, p)
				ops = append(ops, op{key: t.key, path: path, perm: p})
			}
		}
	}
	var user, group principal
	if ev.User != "" {
		if user.svcs, err = ev.c.UserResources(ctx, ev.User); err != nil {
			return err
		}
	}
	if ev.Group != "" {
		if group.svcs, err = ev.c.GroupResources(ctx, ev.Group); err != nil {
			return err
		}
	}
	src := pair{m.key.key, ev.explicit}
	for _, o := range ops {
		u := PermissionUpdate{Path: o.path, Remove: ev.remove,
			Permission: Permission{Name: o.perm.Name, Access: o.perm.Access, Scope: o.perm.Scope}}
		if ev.User != "" && user.needs(sp, src, o, ev.remove) {
			u.User = ev.User
		}
		if ev.Group != "" && group.needs(sp, src, o, ev.remove) {
			u.Group = ev.Group
		}
		log := ev.log.WithFields(logrus.Fields{"sync_point": sp.name, "target": o.key, "path": pathString(o.path), "target_permission": o.perm.String()})
		if u.User == "" && u.Group == "" {
			log.Debug("target permission already in place")
			continue
		}
		if err := ev.c.UpdatePermissions(ctx, u); err != nil {
			return fmt.Errorf("%s %s on %s: %w", action(ev.remove), o.perm, pathString(o.path), err)
		}
		log.Infof("%s target permission", action(ev.remove))
	}
	return nil
}

func action(remove bool) string {
	if remove {
		return "remove"
	}
	return "create"
}

func pathString(path []PathElem) string {
	names := make([]string, len(path))
	for i, e := range path {
		names[i] = e.Name
	}
	return strings.Join(names, "/")
}

// principal is a user's or group's direct permissions, as listed by
// UserResources or GroupResources, fetched before the event's writes.
type principal struct {
	svcs []*Service
}

// needs reports whether o changes Magpie's state for the principal: create
// when the exact permission is missing; remove when it is there and no other
// rule of sp (than the event's src) still grants it from a source resource
// where the principal holds that rule's permission (§4.6).
func (p principal) needs(sp *syncPoint, src pair, o op, remove bool) bool {
	present := hasPerm(p.rowsAt(o.path), o.perm.String())
	if !remove || !present {
		return !remove && !present
	}
	for _, other := range sp.pairs {
		if other != src && produces(sp.rules[other.key][other.perm], o) && p.grants(sp, other, o) {
			return false
		}
	}
	return true
}

// produces reports whether targets include o's permission on o's key.
func produces(targets []target, o op) bool {
	for _, t := range targets {
		if t.key == o.key && slices.Contains(t.perms, o.perm) {
			return true
		}
	}
	return false
}

// grants reports whether the principal holds other.perm on a resource that
// matches other.key and maps to o's target path.
func (p principal) grants(sp *syncPoint, other pair, o op) bool {
	k, tk := sp.keys[other.key], sp.keys[o.key]
	found := false
	var walk func(parents []*Resource, list []*Resource)
	walk = func(parents []*Resource, list []*Resource) {
		for _, r := range list {
			if found {
				return
			}
			tree := append(slices.Clip(parents), r)
			if hasPerm(r.Permissions, other.perm) {
				if m, err := k.match(tree); err == nil && m != nil {
					path, err := tk.path(m)
					found = err == nil && slices.Equal(path, o.path)
				}
			}
			walk(tree, r.Children)
		}
	}
	for _, s := range p.svcs {
		if s.Type == k.svcType {
			walk(nil, []*Resource{serviceNode(s)})
		}
	}
	return found
}

// rowsAt returns the principal's rows on the resource at path, if listed.
func (p principal) rowsAt(path []PathElem) []Permission {
	var cur *Resource
	for i, e := range path {
		if i == 0 {
			idx := slices.IndexFunc(p.svcs, func(s *Service) bool { return s.Name == e.Name })
			if idx < 0 {
				return nil
			}
			cur = serviceNode(p.svcs[idx])
			continue
		}
		if cur = cur.Child(e.Name); cur == nil {
			return nil
		}
	}
	if cur == nil {
		return nil
	}
	return cur.Permissions
}

// serviceNode presents a service as the root resource of its tree.
func serviceNode(s *Service) *Resource {
	return &Resource{ID: s.ResourceID, Name: s.Name, DisplayName: s.Name, Type: "service",
		PermissionNames: s.PermissionNames, Permissions: s.Permissions, Children: s.Resources}
}

// hasPerm reports whether rows hold the explicit permission, ignoring case.
func hasPerm(rows []Permission, explicit string) bool {
	return slices.ContainsFunc(rows, func(r Permission) bool { return strings.EqualFold(r.String(), explicit) })
}

var _ handlers.PermissionHandler = (*Handler)(nil)
