package geoserver

import (
	"errors"
	"fmt"
)

// ErrNotFound matches (with errors.Is) a GeoserverError for a workspace,
// data store or feature type that GeoServer does not have.
var ErrNotFound = errors.New("geoserver: not found")

// ErrExists matches (with errors.Is) a GeoserverError for a 500 answer whose
// text says the object already exists (duplicate data store or feature type).
var ErrExists = errors.New("geoserver: already exists")

// GeoserverError is an answer from GeoServer that retrying will not change
// (the original's GeoserverError, which breaks task chains). Its message is
// the original's, e.g. "Operation [_create_datastore_request] failed : …".
type GeoserverError struct {
	// Op is the operation that got the answer.
	Op Op
	// Status is the HTTP status GeoServer answered.
	Status int
	// Msg is the error text.
	Msg string
	// kind is ErrNotFound, ErrExists or nil.
	kind error
}

// Error implements error.
func (e *GeoserverError) Error() string { return e.Msg }

// Unwrap returns ErrNotFound or ErrExists when the answer says so.
func (e *GeoserverError) Unwrap() error { return e.kind }

// Transient reports false: the same request would get the same answer
// (see handlers.IsTransient).
func (e *GeoserverError) Transient() bool { return false }

// RequestError is a failure worth retrying later: GeoServer could not be
// reached (Status 0, Err says why) or answered a status the original retries
// (400, 409, 502, 503, …). It never holds credentials.
type RequestError struct {
	// Op is the operation that failed.
	Op Op
	// Status is the HTTP status, 0 when no answer came.
	Status int
	// URL is the request URL with any password redacted.
	URL string
	// Err is the transport error when Status is 0.
	Err error
}

// Error implements error.
func (e *RequestError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("Connection to Geoserver failed using [%s]: %v", e.URL, e.Err)
	}
	return fmt.Sprintf("Operation [%s] failed with HTTP error code [%d]", e.Op, e.Status)
}

// Unwrap returns the transport error, if any.
func (e *RequestError) Unwrap() error { return e.Err }

// Transient reports true: retry with backoff (see handlers.IsTransient).
func (e *RequestError) Transient() bool { return true }
