package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/actions"
)

// ActionsBase is the path of the actions API (spec actions_sessions.md §D1).
const ActionsBase = "/actions/v1"

// Errors of the actions API that the service does not define.
var (
	// errBadJSON (400): the run request is not JSON.
	errBadJSON = errors.New("request body is not valid JSON")
	// errNotRunnable (403): the caller is not in the type's runnable_by.
	errNotRunnable = errors.New("not in runnable_by")
	// errAuthUnavailable (503): Magpie could not tell who the caller is.
	errAuthUnavailable = errors.New("authentication through Magpie is unavailable")
)

// providerDoc is the introspection document of GET /actions/v1/.
type providerDoc struct {
	APIVersion   string    `json:"api_version"`
	Title        string    `json:"title"`
	Synchronous  bool      `json:"synchronous"`
	LogSupported bool      `json:"log_supported"`
	ActionTypes  []typeDoc `json:"action_types"`
}

// typeDoc describes one action type and who may run it.
type typeDoc struct {
	actions.Description
	RunnableBy []string `json:"runnable_by"`
}

// actionErrorBody is the error envelope of the actions API.
type actionErrorBody struct {
	Code        string `json:"code"`
	Description string `json:"description"`
}

var runRequestSchema = map[string]any{
	"type":     "object",
	"required": []string{"request_id", "body"},
	"properties": map[string]any{
		"request_id":    map[string]any{"type": "string", "description": "Idempotency key chosen by the caller (a number is taken as a string)."},
		"label":         map[string]any{"type": "string", "maxLength": 64},
		"monitor_by":    map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
		"manage_by":     map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
		"release_after": map[string]any{"type": "string", "description": "ISO-8601 duration, default P7D."},
		"body":          map[string]any{"type": "object", "description": "Input of the action type (see its input_schema)."},
	},
}

// actionRoutes lists the /actions/v1 routes, or none without a service.
func (s *Server) actionRoutes() []route {
	if s.opts.Actions == nil {
		return nil
	}
	errs := func(codes ...int) map[int]string {
		m := map[int]string{http.StatusUnauthorized: "UnauthorizedRequest: missing or invalid credentials."}
		for _, c := range codes {
			m[c] = http.StatusText(c)
		}
		return m
	}
	introspect := with(errs(), http.StatusOK, "Introspection document: the action types with their input schemas.")
	run := with(errs(http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusConflict,
		http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity), http.StatusAccepted, "ActionStatus of the new action.")
	run[http.StatusOK] = "ActionStatus of the action the same request_id started."
	return []route{
		{method: http.MethodGet, path: ActionsBase, name: "actions_introspect", tag: tagActions,
			summary: "Describe the action types.", plain: true, responses: introspect, handle: s.getActionTypes},
		{method: http.MethodGet, path: ActionsBase + "/", name: "actions_introspect_slash", tag: tagActions,
			summary: "Describe the action types.", plain: true, responses: introspect, handle: s.getActionTypes},
		{method: http.MethodPost, path: ActionsBase + "/:type", name: "action_run", tag: tagActions,
			summary: "Run an action (202 new, 200 repeat of a request_id).", plain: true, body: runRequestSchema,
			responses: run, handle: s.postAction},
		{method: http.MethodGet, path: ActionsBase + "/:type", name: "action_enumerate", tag: tagActions,
			summary: "List actions by ?status= and ?roles=.", plain: true,
			responses: with(errs(http.StatusNotFound), http.StatusOK, "Array of ActionStatus."), handle: s.getActions},
		{method: http.MethodGet, path: ActionsBase + "/:type/:id", name: "action_status", tag: tagActions,
			summary: "Status of an action.", plain: true,
			responses: with(errs(http.StatusNotFound), http.StatusOK, "ActionStatus."), handle: s.getAction},
		{method: http.MethodPost, path: ActionsBase + "/:type/:id/cancel", name: "action_cancel", tag: tagActions,
			summary: "Ask an action to stop (advisory).", plain: true,
			responses: with(errs(http.StatusForbidden, http.StatusNotFound, http.StatusConflict), http.StatusOK, "ActionStatus, maybe still ACTIVE."),
			handle:    s.cancelAction},
		{method: http.MethodDelete, path: ActionsBase + "/:type/:id", name: "action_release", tag: tagActions,
			summary: "Release a terminal action.", plain: true,
			responses: with(errs(http.StatusForbidden, http.StatusNotFound, http.StatusConflict), http.StatusOK, "Last ActionStatus."),
			handle:    s.releaseAction},
		{method: http.MethodGet, path: ActionsBase + "/:type/:id/log", name: "action_log", tag: tagActions,
			summary: "A page of an action's log (?limit=&marker=).", plain: true,
			responses: with(errs(http.StatusNotFound, http.StatusUnprocessableEntity), http.StatusOK, "Log page."),
			handle:    s.getActionLog},
	}
}

// authenticate returns the caller of c's request.
func (s *Server) authenticate(c echo.Context) (actions.Caller, error) {
	caller, err := s.auth.caller(c.Request())
	if err != nil && !errors.Is(err, ErrUnauthenticated) {
		return caller, fmt.Errorf("%w: %w", errAuthUnavailable, err)
	}
	return caller, err
}

// actionType authenticates the request and checks that its :type exists.
func (s *Server) actionType(c echo.Context) (actions.Caller, string, error) {
	caller, err := s.authenticate(c)
	if err != nil {
		return caller, "", err
	}
	typ := c.Param("type")
	if _, err := s.opts.Actions.Introspect(typ); err != nil {
		return caller, "", err
	}
	return caller, typ, nil
}

// action authenticates the request and returns the status of its :id,
// which must be of type :type and visible to the caller.
func (s *Server) action(c echo.Context) (actions.Caller, actions.Status, error) {
	caller, typ, err := s.actionType(c)
	if err != nil {
		return caller, actions.Status{}, err
	}
	id := c.Param("id")
	st, err := s.opts.Actions.Status(c.Request().Context(), caller, id)
	if err == nil && st.Type != typ {
		err = fmt.Errorf("action %s is not of type %s: %w", id, typ, actions.ErrNotFound)
	}
	return caller, st, err
}

// getActionTypes is GET /actions/v1/: the introspection document.
func (s *Server) getActionTypes(c echo.Context) error {
	if _, err := s.authenticate(c); err != nil {
		return s.actionFail(c, err)
	}
	doc := providerDoc{APIVersion: "1.0", Title: "cowbird actions", LogSupported: true, ActionTypes: []typeDoc{}}
	for _, d := range s.opts.Actions.Types() {
		doc.ActionTypes = append(doc.ActionTypes, typeDoc{Description: d, RunnableBy: s.auth.allowed(d.Title)})
	}
	return c.JSON(http.StatusOK, doc)
}

// postAction is POST /actions/v1/{type}: run, answering 202 for a new
// action and 200 for a repeated request_id.
func (s *Server) postAction(c echo.Context) error {
	caller, typ, err := s.actionType(c)
	if err == nil && !s.auth.mayRun(caller, typ) {
		err = fmt.Errorf("%s may not run %s: %w", caller.ID, typ, errNotRunnable)
	}
	var req actions.RunRequest
	if err == nil {
		req, err = readRunRequest(c.Request())
	}
	var st actions.Status
	created := false
	if err == nil {
		st, created, err = s.opts.Actions.Run(c.Request().Context(), caller, typ, req)
	}
	if err != nil {
		return s.actionFail(c, err)
	}
	if created {
		return c.JSON(http.StatusAccepted, st)
	}
	return c.JSON(http.StatusOK, st)
}

// getActions is GET /actions/v1/{type}?status=&roles=: enumerate.
func (s *Server) getActions(c echo.Context) error {
	caller, typ, err := s.actionType(c)
	var list []actions.Status
	if err == nil {
		q := c.QueryParams()
		list, err = s.opts.Actions.Enumerate(c.Request().Context(), caller,
			actions.Filter{Type: typ, Statuses: q["status"], Roles: q["roles"]})
	}
	if err != nil {
		return s.actionFail(c, err)
	}
	return c.JSON(http.StatusOK, list)
}

// getAction is GET /actions/v1/{type}/{id}: status.
func (s *Server) getAction(c echo.Context) error {
	_, st, err := s.action(c)
	if err != nil {
		return s.actionFail(c, err)
	}
	return c.JSON(http.StatusOK, st)
}

// cancelAction is POST /actions/v1/{type}/{id}/cancel.
func (s *Server) cancelAction(c echo.Context) error {
	caller, st, err := s.action(c)
	if err == nil {
		st, err = s.opts.Actions.Cancel(c.Request().Context(), caller, st.ActionID)
	}
	if err != nil {
		return s.actionFail(c, err)
	}
	return c.JSON(http.StatusOK, st)
}

// releaseAction is DELETE /actions/v1/{type}/{id}.
func (s *Server) releaseAction(c echo.Context) error {
	caller, st, err := s.action(c)
	if err == nil {
		st, err = s.opts.Actions.Release(c.Request().Context(), caller, st.ActionID)
	}
	if err != nil {
		return s.actionFail(c, err)
	}
	return c.JSON(http.StatusOK, st)
}

// getActionLog is GET /actions/v1/{type}/{id}/log?limit=&marker=.
func (s *Server) getActionLog(c echo.Context) error {
	caller, st, err := s.action(c)
	limit := 0
	if v := c.QueryParam("limit"); err == nil && v != "" {
		if limit, err = strconv.Atoi(v); err != nil {
			err = &actions.ValidationError{Field: "limit", Category: "type", Description: "Input should be a valid integer"}
		}
	}
	var page actions.LogPage
	if err == nil {
		page, err = s.opts.Actions.Log(c.Request().Context(), caller, st.ActionID, limit, c.QueryParam("marker"))
	}
	if err != nil {
		return s.actionFail(c, err)
	}
	return c.JSON(http.StatusOK, page)
}

// readRunRequest decodes a run request. Unknown top-level keys are ignored
// and a numeric request_id is taken as a string, as the Globus toolkit does;
// the body is checked by the service.
func readRunRequest(r *http.Request) (actions.RunRequest, error) {
	var req actions.RunRequest
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return req, fmt.Errorf("read run request: %w", err)
	}
	if !json.Valid(data) {
		return req, errBadJSON
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return req, &actions.ValidationError{Field: "$", Category: "type", Description: "Input should be an object"}
	}
	var num json.Number
	if raw, ok := fields["request_id"]; ok && json.Unmarshal(raw, &num) == nil {
		fields["request_id"], _ = json.Marshal(num.String())
	}
	for _, f := range []struct {
		key, want string
		into      any
	}{
		{"request_id", "a valid string", &req.RequestID},
		{"label", "a valid string", &req.Label},
		{"monitor_by", "a list of strings", &req.MonitorBy},
		{"manage_by", "a list of strings", &req.ManageBy},
		{"release_after", "a valid string", &req.ReleaseAfter},
	} {
		if raw, ok := fields[f.key]; ok && json.Unmarshal(raw, f.into) != nil {
			return req, &actions.ValidationError{Field: "$." + f.key, Category: "type", Description: "Input should be " + f.want}
		}
	}
	if body, ok := fields["body"]; ok && !bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		req.Body = body
	}
	return req, nil
}

// actionFail answers err with the actions envelope {"code","description"}.
func (s *Server) actionFail(c echo.Context, err error) error {
	status, body := actionError(err, c.Request().URL.Path)
	if status >= http.StatusInternalServerError {
		s.opts.Log.WithError(err).WithFields(logrus.Fields{
			"request_id": c.Response().Header().Get(echo.HeaderXRequestID),
			"path":       c.Request().URL.Path,
		}).Error("action request failed")
	}
	if status == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="cowbird"`)
	}
	return c.JSON(status, body)
}

// actionError maps an error of the actions API to its status and envelope.
// A 404 names only the path asked for, so it reveals nothing more.
func actionError(err error, path string) (int, actionErrorBody) {
	var ve *actions.ValidationError
	var me *http.MaxBytesError
	switch {
	case errors.As(err, &ve):
		return http.StatusUnprocessableEntity, actionErrorBody{"RequestValidationError", ve.Error()}
	case errors.As(err, &me):
		return http.StatusRequestEntityTooLarge, actionErrorBody{"RequestTooLarge", detailTooLarge}
	case errors.Is(err, errBadJSON):
		return http.StatusBadRequest, actionErrorBody{"BadActionRequest", "Invalid JSON"}
	case errors.Is(err, errAuthUnavailable):
		return http.StatusServiceUnavailable, actionErrorBody{"ServiceUnavailable", errAuthUnavailable.Error()}
	case errors.Is(err, ErrUnauthenticated):
		return http.StatusUnauthorized, actionErrorBody{"UnauthorizedRequest", err.Error()}
	case errors.Is(err, errNotRunnable), errors.Is(err, actions.ErrForbidden):
		return http.StatusForbidden, actionErrorBody{"ForbiddenRequest", err.Error()}
	case errors.Is(err, actions.ErrNotFound):
		return http.StatusNotFound, actionErrorBody{"ActionNotFound", "Not found: " + path}
	case errors.Is(err, actions.ErrConflict):
		return http.StatusConflict, actionErrorBody{"ActionConflict", err.Error()}
	case errors.Is(err, actions.ErrStopped):
		return http.StatusServiceUnavailable, actionErrorBody{"ServiceUnavailable", actions.ErrStopped.Error()}
	}
	return http.StatusInternalServerError, actionErrorBody{"ActionProviderError", "Internal Server Error"}
}
