package magpie

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

func esc(s string) string { return url.PathEscape(s) }

func flag(name string, v bool) url.Values {
	if v {
		return url.Values{name: {"True"}}
	}
	return url.Values{name: {"False"}}
}

// ServiceTypes lists the service types Magpie knows (GET /services/types).
func (c *Client) ServiceTypes(ctx context.Context) ([]string, error) {
	return cached(c, keyServiceTypes, func() ([]string, error) {
		var out struct {
			Types []string `json:"service_types"`
		}
		_, err := c.call(ctx, http.MethodGet, "/services/types", nil, nil, &out)
		return out.Types, err
	})
}

// sortServices flattens {type: {name: service}} into services sorted by
// name; a null service is left out.
func sortServices(m map[string]map[string]*Service) []*Service {
	var out []*Service
	for _, byName := range m {
		for _, s := range byName {
			if s != nil {
				out = append(out, s)
			}
		}
	}
	slices.SortFunc(out, func(a, b *Service) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Services lists every service, sorted by name (GET /services).
func (c *Client) Services(ctx context.Context) ([]*Service, error) {
	return cached(c, "services", func() ([]*Service, error) {
		var out struct {
			Services map[string]map[string]*Service `json:"services"`
		}
		_, err := c.call(ctx, http.MethodGet, "/services", nil, nil, &out)
		return sortServices(out.Services), err
	})
}

// ServicesByType lists the services of one type, sorted by name
// (GET /services/types/{type}).
func (c *Client) ServicesByType(ctx context.Context, typ string) ([]*Service, error) {
	return cached(c, "services-by-type:"+typ, func() ([]*Service, error) {
		var out struct {
			Services map[string]map[string]*Service `json:"services"`
		}
		_, err := c.call(ctx, http.MethodGet, "/services/types/"+esc(typ), nil, nil, &out)
		return sortServices(map[string]map[string]*Service{typ: out.Services[typ]}), err
	})
}

// Service returns one service by name (GET /services/{name}).
func (c *Client) Service(ctx context.Context, name string) (*Service, error) {
	return cached(c, "service:"+name, func() (*Service, error) {
		var out struct {
			Service *Service `json:"service"`
		}
		path := "/services/" + esc(name)
		status, err := c.call(ctx, http.MethodGet, path, nil, nil, &out)
		if err == nil && out.Service == nil {
			err = lacks(http.MethodGet+" "+path, status, "service")
		}
		return out.Service, err
	})
}

// lacks is the error of a 2xx answer without what the call returns.
func lacks(op string, status int, what string) error {
	return &Error{Op: op, Status: status, Detail: "answer lacks " + what}
}

// ServiceResources returns a service with its whole resource tree
// (GET /services/{name}/resources).
func (c *Client) ServiceResources(ctx context.Context, name string) (*Service, error) {
	return cached(c, "service-resources:"+name, func() (*Service, error) {
		// The service sits under its own name, beside the envelope's keys.
		var out map[string]json.RawMessage
		path := "/services/" + esc(name) + "/resources"
		if _, err := c.call(ctx, http.MethodGet, path, nil, nil, &out); err != nil {
			return nil, err
		}
		var svc Service
		if err := json.Unmarshal(out[name], &svc); err != nil || svc.Name != name {
			return nil, &Error{Op: "GET " + path, Status: http.StatusOK, Detail: "answer lacks service " + strconv.Quote(name)}
		}
		return &svc, nil
	})
}

// ServiceSpec describes a service to create.
type ServiceSpec struct {
	Name, Type, URL string
	// Configuration is the optional service configuration object.
	Configuration map[string]any
}

// CreateService registers a service and returns its resource id (POST /services).
func (c *Client) CreateService(ctx context.Context, spec ServiceSpec) (int, error) {
	defer c.invalidate()
	in := map[string]any{"service_name": spec.Name, "service_type": spec.Type, "service_url": spec.URL}
	if spec.Configuration != nil {
		in["configuration"] = spec.Configuration
	}
	var out struct {
		Service Service `json:"service"`
	}
	_, err := c.call(ctx, http.MethodPost, "/services", nil, in, &out)
	return out.Service.ResourceID, err
}

// DeleteService deletes a service with its tree and permissions; a service
// already gone is not an error (DELETE /services/{name}).
func (c *Client) DeleteService(ctx context.Context, name string) error {
	defer c.invalidate()
	return ignoreNotFound(c.call(ctx, http.MethodDelete, "/services/"+esc(name), nil, nil, nil))
}

func ignoreNotFound(_ int, err error) error {
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Resource returns a resource with all its descendants
// (GET /resources/{id}?parent=false).
func (c *Client) Resource(ctx context.Context, id int) (*Resource, error) {
	return cached(c, "resource:"+strconv.Itoa(id), func() (*Resource, error) {
		var out struct {
			Resource *Resource `json:"resource"`
		}
		path := "/resources/" + strconv.Itoa(id)
		status, err := c.call(ctx, http.MethodGet, path, flag("parent", false), nil, &out)
		if err == nil && out.Resource == nil {
			err = lacks(http.MethodGet+" "+path, status, "resource")
		}
		return out.Resource, err
	})
}

// ResourcePath returns the resources from the root service down to id,
// without children (GET /resources/{id}?parent=true&invert=true&flatten=true).
// Each keeps all its keys, for the sync's segment fields.
func (c *Client) ResourcePath(ctx context.Context, id int) ([]*Resource, error) {
	return cached(c, "resource-path:"+strconv.Itoa(id), func() ([]*Resource, error) {
		var out struct {
			Resources []*Resource `json:"resources"`
		}
		var raw struct {
			Resources []json.RawMessage `json:"resources"`
		}
		q := url.Values{"parent": {"True"}, "invert": {"True"}, "flatten": {"True"}}
		path := "/resources/" + strconv.Itoa(id)
		status, err := c.callTwice(ctx, path, q, &out, &raw)
		if err == nil && slices.Contains(out.Resources, nil) {
			err = lacks(http.MethodGet+" "+path, status, "a resource of the path (null)")
		}
		if err != nil {
			return nil, err
		}
		for i, r := range out.Resources {
			if i < len(raw.Resources) {
				r.fields, _ = nodeFields(raw.Resources[i])
			}
		}
		return out.Resources, nil
	})
}

// callTwice GETs path and decodes the answer into out, then, for the
// generic fields, into raw; only out must succeed.
func (c *Client) callTwice(ctx context.Context, path string, q url.Values, out, raw any) (int, error) {
	var body json.RawMessage
	status, err := c.call(ctx, http.MethodGet, path, q, nil, &body)
	if err != nil {
		return status, err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return status, &Error{Op: http.MethodGet + " " + path, Status: status, Detail: "undecodable answer: " + err.Error()}
	}
	_ = json.Unmarshal(body, raw)
	return status, nil
}

// CreateResource creates a child resource and returns its id (POST /resources).
func (c *Client) CreateResource(ctx context.Context, parentID int, name, typ string) (int, error) {
	defer c.invalidate()
	in := map[string]any{"resource_name": name, "resource_display_name": name, "resource_type": typ, "parent_id": parentID}
	var out struct {
		Resource Resource `json:"resource"`
	}
	_, err := c.call(ctx, http.MethodPost, "/resources", nil, in, &out)
	return out.Resource.ID, err
}

// DeleteResource deletes a resource with its subtree and permissions; a
// resource already gone is not an error (DELETE /resources/{id}).
func (c *Client) DeleteResource(ctx context.Context, id int) error {
	defer c.invalidate()
	return ignoreNotFound(c.call(ctx, http.MethodDelete, "/resources/"+strconv.Itoa(id), nil, nil, nil))
}

// UserNames lists every user name, sorted (GET /users?detail=False).
func (c *Client) UserNames(ctx context.Context) ([]string, error) {
	return cached(c, "user-names", func() ([]string, error) {
		var out struct {
			Names []string `json:"user_names"`
		}
		_, err := c.call(ctx, http.MethodGet, "/users", flag("detail", false), nil, &out)
		return out.Names, err
	})
}

// Users lists every user with its id, email and status (GET /users?detail=True).
func (c *Client) Users(ctx context.Context) ([]User, error) {
	return cached(c, "users", func() ([]User, error) {
		var out struct {
			Users []User `json:"users"`
		}
		_, err := c.call(ctx, http.MethodGet, "/users", flag("detail", true), nil, &out)
		return out.Users, err
	})
}

// User returns one user with its groups (GET /users/{name}).
func (c *Client) User(ctx context.Context, name string) (User, error) {
	return cached(c, "user:"+name, func() (User, error) {
		var out struct {
			User User `json:"user"`
		}
		_, err := c.call(ctx, http.MethodGet, "/users/"+esc(name), nil, nil, &out)
		return out.User, err
	})
}

// UserID returns a user's id (GET /users/{name}).
func (c *Client) UserID(ctx context.Context, name string) (int, error) {
	u, err := c.User(ctx, name)
	return u.ID, err
}

// UserName returns the name of the user with that id; no such user matches
// ErrNotFound (GET /users?detail=True).
func (c *Client) UserName(ctx context.Context, id int) (string, error) {
	users, err := c.Users(ctx)
	if err != nil {
		return "", err
	}
	for _, u := range users {
		if u.ID == id {
			return u.Name, nil
		}
	}
	return "", fmt.Errorf("user id %d: %w", id, ErrNotFound)
}

// CreateUser creates a user in group (and anonymous) and returns its id
// (POST /users). Magpie then fires its create_user webhook.
func (c *Client) CreateUser(ctx context.Context, name, email, password, group string) (int, error) {
	defer c.invalidate()
	in := map[string]string{"user_name": name, "email": email, "password": password, "group_name": group}
	var out struct {
		User User `json:"user"`
	}
	_, err := c.call(ctx, http.MethodPost, "/users", nil, in, &out)
	return out.User.ID, err
}

// DeleteUser deletes a user; a user already gone is not an error
// (DELETE /users/{name}).
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	defer c.invalidate()
	return ignoreNotFound(c.call(ctx, http.MethodDelete, "/users/"+esc(name), nil, nil, nil))
}

// CreateGroup creates a group (POST /groups).
func (c *Client) CreateGroup(ctx context.Context, name, description string, discoverable bool, terms string) (Group, error) {
	defer c.invalidate()
	in := map[string]any{"group_name": name, "description": description, "discoverable": discoverable, "terms": terms}
	var out struct {
		Group Group `json:"group"`
	}
	_, err := c.call(ctx, http.MethodPost, "/groups", nil, in, &out)
	return out.Group, err
}

// DeleteGroup deletes a group; a group already gone is not an error
// (DELETE /groups/{name}).
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	defer c.invalidate()
	return ignoreNotFound(c.call(ctx, http.MethodDelete, "/groups/"+esc(name), nil, nil, nil))
}

// GroupUsers lists the names of a group's members (GET /groups/{name}/users).
func (c *Client) GroupUsers(ctx context.Context, group string) ([]string, error) {
	return cached(c, "group-users:"+group, func() ([]string, error) {
		var out struct {
			Names []string `json:"user_names"`
		}
		_, err := c.call(ctx, http.MethodGet, "/groups/"+esc(group)+"/users", nil, nil, &out)
		return out.Names, err
	})
}

func userPath(user string, resID int) string {
	return "/users/" + esc(user) + "/resources/" + strconv.Itoa(resID) + "/permissions"
}

func groupPath(group string, resID int) string {
	return "/groups/" + esc(group) + "/resources/" + strconv.Itoa(resID) + "/permissions"
}

// permissions GETs a permission listing.
func (c *Client) permissions(ctx context.Context, path string, q url.Values) ([]Permission, error) {
	return cached(c, "perms:"+path+"?"+q.Encode(), func() ([]Permission, error) {
		var out struct {
			Permissions []Permission `json:"permissions"`
		}
		_, err := c.call(ctx, http.MethodGet, path, q, nil, &out)
		return out.Permissions, err
	})
}

// UserPermissions lists a user's permissions on a resource in the given view
// (GET /users/{u}/resources/{id}/permissions). Effective lists every name
// allowed on the resource, each allow or deny, with scope match.
func (c *Client) UserPermissions(ctx context.Context, user string, resID int, v View) ([]Permission, error) {
	k, val := v.query()
	return c.permissions(ctx, userPath(user, resID), url.Values{k: {val}})
}

// GroupPermissions lists a group's rows on a resource
// (GET /groups/{g}/resources/{id}/permissions).
func (c *Client) GroupPermissions(ctx context.Context, group string, resID int) ([]Permission, error) {
	return c.permissions(ctx, groupPath(group, resID), nil)
}

// resourcesOf GETs a /users/{u}/resources or /groups/{g}/resources listing;
// its resources keep all their keys, for the sync's segment fields.
func (c *Client) resourcesOf(ctx context.Context, path string) ([]*Service, error) {
	return cached(c, "resources:"+path, func() ([]*Service, error) {
		var out struct {
			Resources map[string]map[string]*Service `json:"resources"`
		}
		var raw struct {
			Resources map[string]map[string]*struct {
				Resources map[string]json.RawMessage `json:"resources"`
			} `json:"resources"`
		}
		if _, err := c.callTwice(ctx, path, nil, &out, &raw); err != nil {
			return nil, err
		}
		for typ, byName := range out.Resources {
			for name, svc := range byName {
				if rs := raw.Resources[typ][name]; svc != nil && rs != nil {
					attachFields(svc.Resources, rs.Resources)
				}
			}
		}
		return sortServices(out.Resources), nil
	})
}

// UserResources lists every service, sorted by name, with its tree cropped
// to the resources where the user has direct permissions; each node's
// PermissionNames/Permissions are the user's rows (GET /users/{u}/resources).
func (c *Client) UserResources(ctx context.Context, user string) ([]*Service, error) {
	return c.resourcesOf(ctx, "/users/"+esc(user)+"/resources")
}

// GroupResources is UserResources for a group (GET /groups/{g}/resources).
func (c *Client) GroupResources(ctx context.Context, group string) ([]*Service, error) {
	return c.resourcesOf(ctx, "/groups/"+esc(group)+"/resources")
}

// SetUserPermission makes p (name, access, scope) a direct permission of the
// user on a resource: nothing is sent if an identical row exists, a
// same-name row is replaced (PUT), otherwise one is created (POST). It
// reports whether anything changed.
func (c *Client) SetUserPermission(ctx context.Context, user string, resID int, p Permission) (bool, error) {
	return c.setPermission(ctx, userPath(user, resID), p)
}

// SetGroupPermission is SetUserPermission for a group.
func (c *Client) SetGroupPermission(ctx context.Context, group string, resID int, p Permission) (bool, error) {
	return c.setPermission(ctx, groupPath(group, resID), p)
}

func (c *Client) setPermission(ctx context.Context, path string, p Permission) (bool, error) {
	var current struct {
		Permissions []Permission `json:"permissions"`
	}
	if _, err := c.call(ctx, http.MethodGet, path, nil, nil, &current); err != nil {
		return false, err
	}
	method := http.MethodPost
	if old, ok := Find(current.Permissions, p.Name); ok {
		if old.Access == p.Access && old.Scope == p.Scope {
			return false, nil
		}
		method = http.MethodPut
	}
	defer c.invalidate()
	in := map[string]any{"permission": map[string]string{"name": p.Name, "access": p.Access, "scope": p.Scope}}
	if _, err := c.call(ctx, method, path, nil, in, nil); err != nil {
		return false, err
	}
	return true, nil
}

// DeleteUserPermission deletes the user's permission named name on a
// resource, whatever its access and scope; none is not an error.
func (c *Client) DeleteUserPermission(ctx context.Context, user string, resID int, name string) error {
	defer c.invalidate()
	return ignoreNotFound(c.call(ctx, http.MethodDelete, userPath(user, resID)+"/"+esc(name), nil, nil, nil))
}

// DeleteGroupPermission is DeleteUserPermission for a group.
func (c *Client) DeleteGroupPermission(ctx context.Context, group string, resID int, name string) error {
	defer c.invalidate()
	return ignoreNotFound(c.call(ctx, http.MethodDelete, groupPath(group, resID)+"/"+esc(name), nil, nil, nil))
}

// UpdatePermissions sends one PATCH /permissions: Magpie creates the missing
// resources along u.Path, then creates (overwriting) or removes the
// permission on its last element for u.User and/or u.Group.
func (c *Client) UpdatePermissions(ctx context.Context, u PermissionUpdate) error {
	switch {
	case len(u.Path) == 0:
		return errors.New("update permissions: empty path")
	case u.Path[0].Type != "service":
		return fmt.Errorf("update permissions: path[0].type %q is not service", u.Path[0].Type)
	case u.User == "" && u.Group == "":
		return errors.New("update permissions: neither user nor group")
	}
	entries := make([]map[string]any, len(u.Path))
	for i, e := range u.Path {
		if e.Name == "" || e.Type == "" {
			return fmt.Errorf("update permissions: path[%d] needs a name and a type", i)
		}
		entries[i] = map[string]any{"resource_name": e.Name, "resource_type": e.Type}
	}
	last := entries[len(entries)-1]
	last["permission"] = map[string]string{"name": u.Permission.Name, "access": u.Permission.Access, "scope": u.Permission.Scope}
	last["user"], last["group"], last["action"] = nullable(u.User), nullable(u.Group), "create"
	if u.Remove {
		last["action"] = "remove"
	}
	defer c.invalidate()
	_, err := c.call(ctx, http.MethodPatch, "/permissions", nil, map[string]any{"permissions": entries}, nil)
	return err
}

// nullable maps "" to JSON null, as cowbird sends absent principals.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
