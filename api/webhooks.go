package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/cowbird-go/cowbird/handlers"
)

// Detail strings of the webhook routes (spec §1.9, §1.10).
const (
	detailInvalidValue     = "Invalid value specified."
	detailUserBadRequest   = "Invalid value parameters for user webhook."
	detailPermBadRequest   = "Invalid value parameters for permission webhook."
	detailUserOK           = "User event successfully handled."
	detailPermOK           = "Permission event successfully handled."
	detailUserDispatchFail = "Failed to handle user webhook event."
	// Ours: the event is journaled and some handlers retry it later.
	detailUserRetrying = "User event accepted: some handlers failed transiently and will retry."
	detailPermRetrying = "Permission event accepted: some handlers failed transiently and will retry."
)

// maxUserName is the longest user name accepted: NAME_MAX, since the name
// becomes the user's workspace directory.
const maxUserName = 255

// pattern is a validation regex with the text the original reports.
type pattern struct {
	expr string
	re   *regexp.Regexp
}

func newPattern(expr string) *pattern { return &pattern{expr: expr, re: regexp.MustCompile(expr)} }

var (
	// paramRegex is the original's PARAM_REGEX. It rules out '/', NUL and
	// "..", so a name that passes cannot escape a directory.
	paramRegex = newPattern(`^[A-Za-z0-9]+(?:[\s_\-\.][A-Za-z0-9]+)*$`)
	// resourceNameRegex validates resource_full_name.
	resourceNameRegex = newPattern(`^/?[A-Za-z0-9]+(?:[\s_\-\./:][A-Za-z0-9]+)*$`)
)

// params are a request's body parameters: the top-level members of a JSON
// object (numbers as json.Number), or form fields as strings.
type params map[string]any

// errBadBody marks a body that cannot be read as parameters.
var errBadBody = errors.New("body is not a JSON object")

// readParams reads r's parameters as §1.4 says: a JSON body when the
// content type is application/json (empty: every key missing), else the
// form fields and query string. firstKey names the key the 400 detail
// mentions.
func readParams(r *http.Request, firstKey string) (params, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	badBody := func(err error) error {
		return &apiError{code: http.StatusBadRequest, err: err, detail: fmt.Sprintf(
			"Key ''%s'' could not be extracted from '%s' of type '%s'", firstKey, r.Method, mt)}
	}
	if !strings.EqualFold(mt, typeJSON) {
		if err := parseForm(r); err != nil {
			var me *http.MaxBytesError
			if errors.As(err, &me) {
				return nil, fmt.Errorf("read form: %w", err)
			}
			return nil, badBody(err)
		}
		p := params{}
		for k, v := range r.Form {
			p[k] = v[0]
		}
		return p, nil
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(data) == 0 {
		return params{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var p params
	if err := dec.Decode(&p); err != nil {
		return nil, badBody(err)
	}
	if _, err := dec.Token(); p == nil || err != io.EOF {
		return nil, badBody(errBadBody)
	}
	return p, nil
}

// invalid is the 422 of a failed type or format check.
func invalid(key string, value any, compare string, conds map[string]bool) error {
	return paramError(http.StatusUnprocessableEntity, detailInvalidValue,
		param{Name: key, Value: paramValue(value), Compare: compare, Conditions: conds})
}

// paramValue keeps scalars as they are and stringifies the rest.
func paramValue(v any) any {
	switch v.(type) {
	case nil, string, bool, json.Number:
		return v
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// str returns the required string key, checked against re when re is set.
func (p params) str(key string, re *pattern) (string, error) {
	v := p[key]
	s, ok := v.(string)
	if !ok {
		return "", invalid(key, v, "Type[str]", map[string]bool{"not_none": v != nil, "is_type": false})
	}
	if re != nil && !re.re.MatchString(s) {
		return "", invalid(key, s, re.expr, map[string]bool{"not_empty": s != "", "matches": false})
	}
	return s, nil
}

// optStr returns the string-or-null key; null and missing give "".
func (p params) optStr(key string) (string, error) {
	v := p[key]
	if v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", invalid(key, v, "Type[str]", map[string]bool{"is_type": false})
	}
	return s, nil
}

// integer returns the required JSON-integer key.
func (p params) integer(key string) (int, error) {
	v := p[key]
	if n, ok := v.(json.Number); ok && !strings.ContainsAny(string(n), ".eE") {
		if i, err := strconv.Atoi(string(n)); err == nil {
			return i, nil
		}
	}
	return 0, invalid(key, v, "Type[int]", map[string]bool{"not_none": v != nil, "is_type": false})
}

// action returns the event key: PARAM_REGEX (422), then created or deleted
// (400 with detail).
func (p params) action(detail string) (handlers.Action, error) {
	ev, err := p.str("event", paramRegex)
	if err != nil {
		return "", err
	}
	if a := handlers.Action(ev); a == handlers.Created || a == handlers.Deleted {
		return a, nil
	}
	return "", paramError(http.StatusBadRequest, detail, param{
		Name: "event", Value: ev, Compare: pyList([]string{string(handlers.Created), string(handlers.Deleted)}),
		Conditions: map[string]bool{"is_in": false},
	})
}

// parseUserWebhook validates a user webhook in the original's order: event,
// user_name, then callback_url for created events (§1.9).
func parseUserWebhook(p params) (handlers.UserEvent, error) {
	var ev handlers.UserEvent
	var err error
	if ev.Action, err = p.action(detailUserBadRequest); err != nil {
		return ev, err
	}
	if ev.UserName, err = p.str("user_name", paramRegex); err != nil {
		return ev, err
	}
	if len(ev.UserName) > maxUserName { // it names the workspace directory
		return ev, invalid("user_name", ev.UserName, fmt.Sprintf("at most %d bytes", maxUserName),
			map[string]bool{"max_length": false})
	}
	if ev.Action == handlers.Created {
		ev.CallbackURL, err = p.str("callback_url", nil)
	}
	return ev, err
}

// parsePermissionWebhook validates a permission webhook in the original's
// field order (§1.10).
func parsePermissionWebhook(p params) (handlers.PermissionEvent, error) {
	var ev handlers.PermissionEvent
	var err error
	steps := []func() error{
		func() (err error) { ev.Action, err = p.action(detailPermBadRequest); return },
		func() (err error) { ev.ServiceName, err = p.optStr("service_name"); return },
		func() (err error) { ev.ServiceType, err = p.str("service_type", paramRegex); return },
		func() (err error) { ev.ResourceID, err = p.integer("resource_id"); return },
		func() (err error) { ev.ResourceFullName, err = p.str("resource_full_name", resourceNameRegex); return },
		func() (err error) { ev.ResourceDisplayName, err = p.optStr("resource_display_name"); return },
		func() (err error) { ev.PermName, err = p.str("name", paramRegex); return },
		func() (err error) { ev.Access, err = p.str("access", paramRegex); return },
		func() (err error) { ev.Scope, err = p.str("scope", paramRegex); return },
		func() (err error) { ev.User, err = p.optStr("user"); return },
		func() (err error) { ev.Group, err = p.optStr("group"); return },
	}
	for _, step := range steps {
		if err = step(); err != nil {
			return ev, err
		}
	}
	if ev.User == "" && ev.Group == "" {
		return ev, paramError(http.StatusBadRequest, detailPermBadRequest, param{
			Name: "user/group", Value: false, Conditions: map[string]bool{"is_true": false},
		})
	}
	return ev, nil
}

// postUserWebhook is POST /webhooks/users.
func (s *Server) postUserWebhook(c echo.Context) error {
	p, err := readParams(c.Request(), "event")
	var ev handlers.UserEvent
	if err == nil {
		ev, err = parseUserWebhook(p)
	}
	if err != nil {
		return s.reject(c, err)
	}
	err = s.dispatch(c, ev)
	switch {
	case handlers.Retrying(err):
		// Safely journaled: Magpie must not mark the user as failed; the
		// callback waits until a retry fails for good.
		return s.send(c, http.StatusAccepted, detailUserRetrying, map[string]any{"exception": err.Error()})
	case err != nil:
		if ev.CallbackURL != "" { // only created events carry one
			s.callback(context.WithoutCancel(c.Request().Context()), ev.CallbackURL)
		}
		return &apiError{code: http.StatusInternalServerError, detail: detailUserDispatchFail, err: err,
			fields: map[string]any{"webhook": p, "exception": err.Error()}}
	}
	return s.send(c, http.StatusOK, detailUserOK, nil)
}

// postPermissionWebhook is POST /webhooks/permissions.
func (s *Server) postPermissionWebhook(c echo.Context) error {
	p, err := readParams(c.Request(), "event")
	var ev handlers.PermissionEvent
	if err == nil {
		ev, err = parsePermissionWebhook(p)
	}
	if err != nil {
		return s.reject(c, err)
	}
	err = s.dispatch(c, ev)
	switch {
	case handlers.Retrying(err):
		return s.send(c, http.StatusAccepted, detailPermRetrying, map[string]any{"exception": err.Error()})
	case err != nil:
		return serverError("WebhookDispatchException", err)
	}
	return s.send(c, http.StatusOK, detailPermOK, nil)
}

// reject counts a webhook refused before dispatch and returns err.
func (s *Server) reject(c echo.Context, err error) error {
	s.metrics.rejected.WithLabelValues(c.Path(), strconv.Itoa(statusOf(err))).Inc()
	return err
}

// dispatch submits ev on a context detached from the request, bounded by
// DispatchTimeout, so that a client disconnect cannot cut it short.
func (s *Server) dispatch(c echo.Context, ev handlers.Event) error {
	s.metrics.received.WithLabelValues(ev.Name()).Inc()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), s.opts.DispatchTimeout)
	defer cancel()
	_, err := s.opts.Dispatcher.Submit(ctx, ev)
	return err
}

// callback calls Options.Callback, which tells Magpie that the user's
// creation failed; an error is logged and swallowed. The URL holds a token,
// so it is never logged, even should the error quote it.
func (s *Server) callback(ctx context.Context, target string) {
	if s.opts.Callback == nil {
		return
	}
	if err := s.opts.Callback(ctx, target); err != nil {
		if msg := err.Error(); target != "" && strings.Contains(msg, target) {
			err = errors.New(strings.ReplaceAll(msg, target, "<callback_url>"))
		}
		s.opts.Log.WithError(err).Warn("magpie callback for failed user creation")
	}
}
