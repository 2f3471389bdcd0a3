package api

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Texts of the original's homepage and Swagger info (spec §1.5).
const (
	apiTitle       = "Cowbird REST API"
	apiDescription = "Cowbird is a middleware that manages interactions between various birds of the bird-house stack."
	contactName    = "Ouranos inc., CRIM"
	contactURL     = "https://github.com/Ouranosinc/cowbird"
)

// Detail strings of the API and handler routes (spec §1.5-§1.7).
const (
	detailHome          = "Get homepage successful."
	detailVersion       = "Get version successful."
	detailHandlers      = "Get handlers successful."
	detailResync        = "Handler resync successful."
	detailBadHandler    = "Invalid handler name."
	detailNoSuchHandler = "Could not find specified handler."
)

// route is one entry of the table that both registers the echo routes and
// generates the Swagger document.
type route struct {
	method string
	// path is the echo pattern, e.g. /handlers/:handler_name.
	path string
	// name is the original's route name, e.g. handler_detail.
	name    string
	tag     string
	summary string
	// body is the schema of a webhook request body, nil for none.
	body map[string]any
	// fields documents the 200 answer's route-specific fields.
	fields map[string]any
	// responses maps a status code to its detail text.
	responses map[int]string
	// plain routes answer their own format and skip content negotiation.
	plain  bool
	handle echo.HandlerFunc
}

//go:embed api.html
var apiPage []byte

// routeTable lists every route the server answers.
func (s *Server) routeTable() []route {
	str := map[string]any{"type": "string"}
	handlerErrors := map[int]string{
		http.StatusBadRequest: detailBadHandler, http.StatusNotFound: detailNoSuchHandler,
		http.StatusInternalServerError: detailServerError,
	}
	return append([]route{
		{method: http.MethodGet, path: "/", name: "homepage", tag: tagAPI, summary: "Homepage / API information.",
			fields: map[string]any{"title": str, "description": str, "name": str, "documentation": str,
				"contact": map[string]any{"type": "object"}},
			responses: map[int]string{http.StatusOK: detailHome}, handle: s.getHome},
		{method: http.MethodGet, path: "/version", name: "Version", tag: tagAPI, summary: "Web service and worker versions.",
			fields:    map[string]any{"version": str, "worker_version": str, "version_detail": str, "daemon_version": str},
			responses: map[int]string{http.StatusOK: detailVersion}, handle: s.getVersion},
		{method: http.MethodGet, path: "/api", name: "swagger_schema_ui", tag: tagAPI, summary: "API documentation page (HTML).",
			plain: true, responses: map[int]string{http.StatusOK: "HTML page."}, handle: s.getAPIPage},
		{method: http.MethodGet, path: "/json", name: "swagger_schema_json", tag: tagAPI, summary: "Swagger 2.0 document of the API.",
			plain: true, responses: map[int]string{http.StatusOK: "Swagger 2.0 JSON document."}, handle: s.getSwagger},
		{method: http.MethodGet, path: "/handlers", name: "handler_list", tag: tagHandlers, summary: "List the active handlers in dispatch order.",
			fields:    map[string]any{"handlers": map[string]any{"type": "array", "items": str}},
			responses: map[int]string{http.StatusOK: detailHandlers}, handle: s.getHandlers},
		{method: http.MethodGet, path: "/handlers/:handler_name", name: "handler_detail", tag: tagHandlers, summary: "Details of an active handler.",
			fields: map[string]any{"handler": map[string]any{"type": "object", "properties": map[string]any{
				"name": str, "status": map[string]any{"type": "object", "description": "Geoserver only: queued and failed GeoServer jobs."}}}},
			responses: with(handlerErrors, http.StatusOK, detailHandlers), handle: s.getHandler},
		{method: http.MethodPut, path: "/handlers/:handler_name/resync", name: "handler_resync", tag: tagHandlers, summary: "Run a handler's resync and wait for it.",
			responses: with(handlerErrors, http.StatusOK, detailResync), handle: s.putResync},
		{method: http.MethodPost, path: "/webhooks/users", name: "user_webhook", tag: tagWebhooks, summary: "Magpie user webhook: a user was created or deleted.",
			body: userWebhookSchema, responses: map[int]string{
				http.StatusOK: detailUserOK, http.StatusAccepted: detailUserRetrying,
				http.StatusBadRequest:            detailUserBadRequest + " / body not a JSON object",
				http.StatusRequestEntityTooLarge: detailTooLarge, http.StatusUnprocessableEntity: detailInvalidValue,
				http.StatusInternalServerError: detailUserDispatchFail, http.StatusUnauthorized: detailBadWebhookSecret,
			}, handle: s.requireWebhookSecret(s.postUserWebhook)},
		{method: http.MethodPost, path: "/webhooks/permissions", name: "permission_webhook", tag: tagWebhooks, summary: "Magpie permission webhook: a permission was created or deleted.",
			body: permissionWebhookSchema, responses: map[int]string{
				http.StatusOK: detailPermOK, http.StatusAccepted: detailPermRetrying,
				http.StatusBadRequest:            detailPermBadRequest + " / body not a JSON object",
				http.StatusRequestEntityTooLarge: detailTooLarge, http.StatusUnprocessableEntity: detailInvalidValue,
				http.StatusInternalServerError: detailServerError, http.StatusUnauthorized: detailBadWebhookSecret,
			}, handle: s.requireWebhookSecret(s.postPermissionWebhook)},
		{method: http.MethodGet, path: "/livez", name: "livez", tag: tagAPI, summary: "Liveness probe.",
			plain: true, responses: map[int]string{http.StatusOK: `{"status": "ok"}`}, handle: s.getLive},
		{method: http.MethodGet, path: "/healthz", name: "healthz", tag: tagAPI, summary: "Liveness probe (same as /livez).",
			plain: true, responses: map[int]string{http.StatusOK: `{"status": "ok"}`}, handle: s.getLive},
		{method: http.MethodGet, path: "/readyz", name: "readyz", tag: tagAPI, summary: "Readiness probe.",
			plain: true, responses: map[int]string{http.StatusOK: `{"status": "ok"}`, http.StatusServiceUnavailable: `{"status": "unavailable", "error": "..."}`},
			handle: s.getReady},
		{method: http.MethodGet, path: "/metrics", name: "metrics", tag: tagAPI, summary: "Prometheus metrics.",
			plain: true, responses: map[int]string{http.StatusOK: "Prometheus text exposition."},
			handle: echo.WrapHandler(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))},
	}, slices.Concat(s.actionRoutes(), s.stateRoutes(), s.eventRoutes(), s.explainRoutes(), s.statusRoutes())...)
}

// with returns a copy of m with code set to detail.
func with(m map[int]string, code int, detail string) map[int]string {
	out := map[int]string{code: detail}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *Server) getHome(c echo.Context) error {
	return s.send(c, http.StatusOK, detailHome, map[string]any{
		"title": apiTitle, "description": apiDescription, "name": "cowbird",
		"contact":       map[string]any{"name": contactName, "email": "", "url": contactURL},
		"documentation": s.opts.URL + "/api",
	})
}

// getVersion answers 200: the daemon is its own worker, so the worker
// version is the web service's (deployment.md §5.3 rule 13).
func (s *Server) getVersion(c echo.Context) error {
	v := s.opts.Version
	return s.send(c, http.StatusOK, detailVersion, map[string]any{
		"version": v, "worker_version": v, "daemon_version": s.opts.DaemonVersion,
		"version_detail": fmt.Sprintf("Web service version : [%s], worker version : [%s]. Any mismatch can cause misbehavior.", v, v),
	})
}

func (s *Server) getHandlers(c echo.Context) error {
	names := []string{}
	for _, h := range s.opts.Registry.Active() {
		names = append(names, h.Name())
	}
	return s.send(c, http.StatusOK, detailHandlers, map[string]any{"handlers": names})
}

// handlerName validates the handler_name path parameter (§1.7): 400 when it
// does not match PARAM_REGEX, 404 when no active handler has that name.
func (s *Server) handlerName(c echo.Context) (string, error) {
	name := c.Param("handler_name")
	if name == "" {
		return "", echo.ErrNotFound // the original's {handler_name} needs one character
	}
	if !paramRegex.re.MatchString(name) {
		return "", paramError(http.StatusBadRequest, detailBadHandler, param{
			Name: "handler_name", Value: name, Compare: paramRegex.expr,
			Conditions: map[string]bool{"not_empty": true, "matches": false},
		})
	}
	if _, ok := s.opts.Registry.Lookup(name); !ok {
		return "", paramError(http.StatusNotFound, detailNoSuchHandler, param{
			Name: "handler_name", Value: 0, Compare: "1", Conditions: map[string]bool{"is_equal": false},
		})
	}
	return name, nil
}

// statusReporter is a handler that reports its own state (e.g. the
// Geoserver handler's queued and failed jobs).
type statusReporter interface {
	HandlerStatus() any
}

func (s *Server) getHandler(c echo.Context) error {
	name, err := s.handlerName(c)
	if err != nil {
		return err
	}
	handler := map[string]any{"name": name}
	if h, _ := s.opts.Registry.Lookup(name); h != nil {
		if sr, ok := h.(statusReporter); ok {
			handler["status"] = sr.HandlerStatus()
		}
	}
	return s.send(c, http.StatusOK, detailHandlers, map[string]any{"handler": handler})
}

// putResync runs the resync synchronously, detached from the request so that
// a client or proxy timeout does not stop it halfway.
func (s *Server) putResync(c echo.Context) error {
	name, err := s.handlerName(c)
	if err != nil {
		return err
	}
	if err := s.opts.Dispatcher.Resync(context.WithoutCancel(c.Request().Context()), name); err != nil {
		return serverError(exceptionName(err), err)
	}
	return s.send(c, http.StatusOK, detailResync, nil)
}

type probe struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (s *Server) getLive(c echo.Context) error {
	return c.JSON(http.StatusOK, probe{Status: "ok"})
}

func (s *Server) getReady(c echo.Context) error {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			return c.JSON(http.StatusServiceUnavailable, probe{Status: "unavailable", Error: err.Error()})
		}
	}
	return c.JSON(http.StatusOK, probe{Status: "ok"})
}

func (s *Server) getAPIPage(c echo.Context) error {
	return c.HTMLBlob(http.StatusOK, apiPage)
}

func (s *Server) getSwagger(c echo.Context) error {
	return c.JSON(http.StatusOK, s.swagger(c.Scheme()))
}
