package handlers

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Action says whether a Magpie object was created or deleted.
type Action string

// The two actions Magpie webhooks report.
const (
	Created Action = "created"
	Deleted Action = "deleted"
)

// Kind names the type of an Event.
type Kind string

// The event kinds.
const (
	KindUser       Kind = "user"
	KindPermission Kind = "permission"
	KindFile       Kind = "file"
)

// Event is one of UserEvent, PermissionEvent or FileEvent.
type Event interface {
	// Kind names the event type.
	Kind() Kind
	// Key groups events that must apply in order (one user, one permission
	// target, one path); events with different keys may run in parallel.
	Key() string
	// Name is the original's event name, e.g. "user_created".
	Name() string
}

// UserEvent is a Magpie user webhook: a user was created or deleted.
type UserEvent struct {
	Action   Action `json:"action"`
	UserName string `json:"user_name"`
	// CallbackURL is Magpie's temporary URL to call (HEAD) when a created
	// event fails; empty disables the callback.
	CallbackURL string `json:"callback_url,omitempty"`
}

// Kind implements Event.
func (UserEvent) Kind() Kind { return KindUser }

// Key implements Event.
func (e UserEvent) Key() string { return "user:" + e.UserName }

// Name implements Event.
func (e UserEvent) Name() string { return "user_" + string(e.Action) }

// PermissionEvent is a Magpie permission webhook: a user or group permission
// was created or deleted on a resource.
type PermissionEvent struct {
	Action              Action `json:"action"`
	ServiceName         string `json:"service_name,omitempty"`
	ServiceType         string `json:"service_type"`
	ResourceID          int    `json:"resource_id"`
	ResourceFullName    string `json:"resource_full_name"`
	ResourceDisplayName string `json:"resource_display_name,omitempty"`
	// PermName is the permission name, e.g. "read".
	PermName string `json:"name"`
	Access   string `json:"access"`
	Scope    string `json:"scope"`
	// User or Group (at least one) is the principal the permission is for.
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
}

// Kind implements Event.
func (PermissionEvent) Kind() Kind { return KindPermission }

// Key implements Event: one principal's permission on one resource.
func (e PermissionEvent) Key() string {
	return "perm:" + e.User + "/" + e.Group + "/" + strconv.Itoa(e.ResourceID) + "/" + e.PermName
}

// Name implements Event.
func (e PermissionEvent) Name() string { return "permission_" + string(e.Action) }

// Value is the explicit permission string "<name>-<access>-<scope>".
func (e PermissionEvent) Value() string { return e.PermName + "-" + e.Access + "-" + e.Scope }

// FileOp is what happened to a watched path.
type FileOp string

// The file operations a monitor reports (a rename is a delete then a create).
const (
	FileCreated  FileOp = "created"
	FileModified FileOp = "modified"
	FileDeleted  FileOp = "deleted"
)

// FileEvent reports a change under a path watched for one handler.
type FileEvent struct {
	Op    FileOp `json:"op"`
	Path  string `json:"path"`
	IsDir bool   `json:"is_dir,omitempty"`
	// Handler is the name of the handler that registered the watch.
	Handler string `json:"handler"`
}

// Kind implements Event.
func (FileEvent) Kind() Kind { return KindFile }

// Key implements Event.
func (e FileEvent) Key() string { return "file:" + e.Path }

// Name implements Event.
func (e FileEvent) Name() string { return "on_" + string(e.Op) }

type envelope struct {
	Kind  Kind            `json:"kind"`
	Event json.RawMessage `json:"event"`
}

// EncodeEvent serializes an event with its kind, for the journal.
func EncodeEvent(ev Event) ([]byte, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode %s event: %w", ev.Kind(), err)
	}
	return json.Marshal(envelope{Kind: ev.Kind(), Event: body})
}

// DecodeEvent is the inverse of EncodeEvent.
func DecodeEvent(data []byte) (Event, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	var ev Event
	var err error
	switch env.Kind {
	case KindUser:
		var u UserEvent
		err = json.Unmarshal(env.Event, &u)
		ev = u
	case KindPermission:
		var p PermissionEvent
		err = json.Unmarshal(env.Event, &p)
		ev = p
	case KindFile:
		var f FileEvent
		err = json.Unmarshal(env.Event, &f)
		ev = f
	default:
		return nil, fmt.Errorf("decode event: unknown kind %q", env.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s event: %w", env.Kind, err)
	}
	return ev, nil
}
