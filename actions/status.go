package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Errors the HTTP layer maps to status codes; they are returned wrapped.
var (
	// ErrNotFound (404): unknown or released action or type, or an action
	// the caller may not see.
	ErrNotFound = errors.New("not found")
	// ErrConflict (409): request_id reused with other content, cancel of a
	// terminal action, release of a non-terminal one.
	ErrConflict = errors.New("conflict")
	// ErrForbidden (403): the caller may see the action but not manage it.
	ErrForbidden = errors.New("forbidden")
	// ErrStopped (503): the service is not started or is shutting down.
	ErrStopped = errors.New("action service is not running")
)

// ValidationError (422) names the request field that is invalid.
type ValidationError struct {
	// Field is a JSONPath into the run request, e.g. "$.body.handler".
	Field string
	// Category is the failed rule, e.g. "type", "required", "value".
	Category string
	// Description says what is wrong without echoing the input.
	Description string
}

// Error implements error in the Globus toolkit's scrubbed format.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("Field '%s' (category: '%s'): %s", e.Field, e.Category, e.Description)
}

// Failure is an error a Type's Run returns to choose details.code of the
// FAILED action; any other error gives "HANDLER_ERROR".
type Failure struct {
	Code string
	Err  error
}

// Error implements error.
func (f *Failure) Error() string {
	if f.Err == nil {
		return f.Code
	}
	return f.Code + ": " + f.Err.Error()
}

// Unwrap returns the underlying error.
func (f *Failure) Unwrap() error { return f.Err }

// State is an action's status.
type State string

// The action states (spec Part A2).
const (
	Active    State = "ACTIVE"
	Inactive  State = "INACTIVE"
	Succeeded State = "SUCCEEDED"
	Failed    State = "FAILED"
)

// Terminal reports whether s is SUCCEEDED or FAILED, after which an action
// never changes again.
func (s State) Terminal() bool { return s == Succeeded || s == Failed }

// details.code values set by the service.
const (
	CodeCanceled        = "CANCELED"
	CodeTimeout         = "TIMEOUT"
	CodeHandlerError    = "HANDLER_ERROR"
	CodeWaitingForLock  = "WAITING_FOR_LOCK"
	CodeDaemonRestarted = "DAEMON_RESTARTED"
)

// Status is the Globus ActionStatus document.
type Status struct {
	ActionID       string         `json:"action_id"`
	Status         State          `json:"status"`
	CreatorID      string         `json:"creator_id"`
	Label          string         `json:"label,omitempty"`
	MonitorBy      []string       `json:"monitor_by"`
	ManageBy       []string       `json:"manage_by"`
	StartTime      time.Time      `json:"start_time"`
	CompletionTime *time.Time     `json:"completion_time"`
	ReleaseAfter   string         `json:"release_after"`
	DisplayStatus  string         `json:"display_status"`
	Details        map[string]any `json:"details"`
	// Type is the action's type; it is not part of the document.
	Type string `json:"-"`
}

// Record is an action as stored: its status and what the service needs to
// de-duplicate, run, recover and release it.
type Record struct {
	Status Status `json:"status"`
	Type   string `json:"type"`
	// RequestID is the creator's idempotency key; RequestHash identifies
	// the request's content.
	RequestID   string          `json:"request_id"`
	RequestHash string          `json:"request_hash"`
	Input       json.RawMessage `json:"input"`
	// Lock is the lock the action runs under ("" for none).
	Lock string `json:"lock,omitempty"`
	// Retention is release_after as a duration.
	Retention time.Duration `json:"retention"`
	// CanceledBy is the principal that asked to cancel the action.
	CanceledBy string `json:"canceled_by,omitempty"`
}

// status returns the record's ActionStatus, with its type.
func (r Record) status() Status {
	st := r.Status
	st.Type = r.Type
	return st
}

// LogEntry is one line of an action's log.
type LogEntry struct {
	Time        time.Time      `json:"time"`
	Code        string         `json:"code"`
	Description string         `json:"description"`
	Details     map[string]any `json:"details,omitempty"`
}

// LogPage is one page of an action's log. Marker, when set, fetches the
// next page.
type LogPage struct {
	Limit       int        `json:"limit"`
	HasNextPage bool       `json:"has_next_page"`
	Marker      string     `json:"marker,omitempty"`
	Entries     []LogEntry `json:"entries"`
}

// Description is the introspection document of one action type.
type Description struct {
	Types        []string        `json:"types"`
	APIVersion   string          `json:"api_version"`
	Title        string          `json:"title"`
	Description  string          `json:"description,omitempty"`
	Synchronous  bool            `json:"synchronous"`
	LogSupported bool            `json:"log_supported"`
	InputSchema  json.RawMessage `json:"input_schema"`
}
