package magpie

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// ErrNotFound matches (errors.Is) a Magpie 404 answer.
var ErrNotFound = errors.New("magpie: not found")

// ErrAuth matches (errors.Is) a refused sign-in or a 401/403 answer that
// persisted after signing in again.
var ErrAuth = errors.New("magpie: authentication refused")

// Error is a failed Magpie call: an HTTP answer outside 2xx (Status set) or a
// transport failure (Err set). It never holds credentials or URLs.
type Error struct {
	// Op is the request, e.g. "GET /users/alice".
	Op string
	// Status is the HTTP status, 0 on a transport failure.
	Status int
	// Detail is Magpie's "detail" message, or the start of the body.
	Detail string
	// Err is the transport failure, if any.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("magpie %s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("magpie %s: %d %s: %s", e.Op, e.Status, http.StatusText(e.Status), e.Detail)
}

// Unwrap returns the transport failure.
func (e *Error) Unwrap() error { return e.Err }

// Is matches ErrNotFound for 404 and ErrAuth for 401 and 403.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrAuth:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	}
	return false
}

// Transient reports whether retrying later may succeed: a 5xx or 429 answer,
// a timeout or a connection failure (not a cancelled context), and a refused
// sign-in, since Magpie's admin account may not exist yet (Magpie creates it
// at its first start) or be fixed by the operator without restarting us.
func (e *Error) Transient() bool {
	if e.Err != nil {
		return !errors.Is(e.Err, context.Canceled)
	}
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Op == opSignIn
}

// opSignIn is the Op of a sign-in (session.signIn).
const opSignIn = "POST /signin"
