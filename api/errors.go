package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/sirupsen/logrus"
)

// Detail strings of the generic responses (spec §1.3).
const (
	detailNotFound    = "The route resource could not be found."
	detailServerError = "Internal Server Error. Unhandled exception occurred."
	detailTooLarge    = "The body of your request was too large for this server."
)

// apiError is an error answered with the Cowbird envelope.
type apiError struct {
	code   int
	detail string
	// fields are extra top-level body fields (param, exception, webhook).
	fields map[string]any
	// location is the Location of a redirect.
	location string
	// err is the cause, logged for 5xx answers.
	err error
}

// Error implements error.
func (e *apiError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%d %s: %v", e.code, e.detail, e.err)
	}
	return fmt.Sprintf("%d %s", e.code, e.detail)
}

// Unwrap returns the cause.
func (e *apiError) Unwrap() error { return e.err }

// param describes the request parameter a validation error is about (§1.3).
type param struct {
	Name       string          `json:"name,omitempty"`
	Value      any             `json:"value"`
	Compare    string          `json:"compare,omitempty"`
	Conditions map[string]bool `json:"conditions"`
}

// paramError is a validation failure with its param object.
func paramError(code int, detail string, p param) *apiError {
	return &apiError{code: code, detail: detail, fields: map[string]any{"param": p}}
}

// serverError is the generic 500 carrying only an exception class name.
func serverError(exception string, err error) *apiError {
	return &apiError{code: http.StatusInternalServerError, detail: detailServerError,
		fields: map[string]any{"exception": exception}, err: err}
}

// exceptionName gives err the class-like name the original's generic 500
// reports.
func exceptionName(err error) string {
	var pe *panicError
	switch {
	case errors.As(err, &pe):
		return "RuntimeError"
	case errors.Is(err, fs.ErrNotExist):
		return "FileNotFoundError"
	case errors.Is(err, fs.ErrPermission):
		return "PermissionError"
	case errors.Is(err, context.DeadlineExceeded):
		return "TimeoutError"
	}
	return "Exception"
}

// statusOf is the HTTP status err is answered with.
func statusOf(err error) int {
	var ae *apiError
	var he *echo.HTTPError
	var me *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae.code
	case errors.As(err, &me):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &he):
		return he.Code
	}
	return http.StatusInternalServerError
}

// handleError is the echo HTTPErrorHandler: the one place errors become
// status codes and envelopes.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	ae := s.toAPIError(c, err)
	if ae.code >= 500 {
		s.opts.Log.WithError(err).WithFields(logrus.Fields{
			"request_id": c.Response().Header().Get(echo.HeaderXRequestID),
			"path":       c.Request().URL.Path,
		}).Error("request failed")
	}
	var werr error
	if ae.location != "" {
		werr = c.Redirect(ae.code, ae.location)
	} else {
		werr = s.send(c, ae.code, ae.detail, ae.fields)
	}
	if werr != nil {
		s.opts.Log.WithError(werr).Warn("write error response")
	}
}

func (s *Server) toAPIError(c echo.Context, err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	switch code := statusOf(err); code {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return s.routeMiss(c.Request())
	case http.StatusInternalServerError:
		return serverError(exceptionName(err), err)
	case http.StatusRequestEntityTooLarge:
		return &apiError{code: code, detail: detailTooLarge, err: err}
	default:
		return &apiError{code: code, detail: http.StatusText(code), err: err}
	}
}

// routeMiss answers a request no route took (§1.3): 301 to the path without
// its trailing slash when that matches a route, 405 when the path matches
// but the method does not and is neither GET nor HEAD, else 404.
func (s *Server) routeMiss(r *http.Request) *apiError {
	notFound := &apiError{code: http.StatusNotFound, detail: detailNotFound}
	matched := s.match(r.URL.Path)
	if len(matched) == 0 {
		trimmed := strings.TrimRight(r.URL.Path, "/")
		if trimmed == r.URL.Path || trimmed == "" || len(s.match(trimmed)) == 0 {
			return notFound
		}
		loc := strings.TrimRight(r.URL.EscapedPath(), "/")
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		return &apiError{code: http.StatusMovedPermanently, location: loc}
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return notFound
	}
	methods := make([]string, len(matched))
	for i, rt := range matched {
		methods[i] = rt.method
	}
	return &apiError{code: http.StatusMethodNotAllowed, detail: fmt.Sprintf(
		"predicate mismatch for view %s (request_method = %s)", matched[0].name, strings.Join(methods, ","))}
}

// match lists the routes whose pattern matches path; a :param segment
// matches one non-empty segment.
func (s *Server) match(path string) []route {
	segs := strings.Split(path, "/")
	var out []route
	for _, rt := range s.routes {
		pat := strings.Split(rt.path, "/")
		if len(pat) != len(segs) {
			continue
		}
		ok := true
		for i, p := range pat {
			if strings.HasPrefix(p, ":") && segs[i] != "" || p == segs[i] {
				continue
			}
			ok = false
			break
		}
		if ok {
			out = append(out, rt)
		}
	}
	return out
}
