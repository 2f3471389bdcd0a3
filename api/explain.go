package api

import (
	"context"
	"errors"
	"io/fs"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/handlers"
)

// ExplainType is the name under which Auth.RunnableBy lists who may call
// GET /explain; by default AdminGroup and every admin token.
const ExplainType = "explain"

// Explainer tells why a WPS output is (not) in a workspace, or how a
// user's workspace stands, from facts checked at the time of the call. The
// daemon composes it from the handlers that explain (FileSystem: files,
// links, Magpie's read permission; Geoserver: workspace, datastore,
// layers, modes against permissions) and from its journal, actions and
// monitor; it explains whatever handlers are active, so a cowbird daemon
// always serves GET /explain.
type Explainer interface {
	// Explain explains the WPS output path (absolute) or, when path is "",
	// the user; exactly one is given. The result is served as JSON. An
	// error wrapping fs.ErrInvalid is the caller's (400).
	Explain(ctx context.Context, path, user string) (any, error)
}

// EventView is a journaled event as GET /events/{id} shows it: its status,
// each handler's outcome, secrets masked, and the events.replay action of
// its failed handlers; explanations quote it.
func EventView(rec handlers.Record) actions.JournalEvent { return eventView(rec, true) }

// explainRoutes is GET /explain when the server has an Explainer.
func (s *Server) explainRoutes() []route {
	if s.opts.Explainer == nil {
		return nil
	}
	return []route{{method: http.MethodGet, path: "/explain", name: "explain", tag: tagAPI,
		summary: "Why a WPS output is or is not in a workspace (?path=ABSOLUTE_PATH), or how a user's workspace, " +
			"notebooks symlink, outputs, GeoServer workspace, datastore and layers stand (?user=NAME), with the watches, " +
			"the pending or failed events and the last reconcile that concern them: the facts checked now, " +
			"each {check, ok, detail, fix} (cowbird explain).",
		plain: true,
		responses: map[int]string{http.StatusOK: "The explanation: {path|user, ok, fix, facts, checked_at}.",
			http.StatusBadRequest:   "Neither or both of path and user, a path outside wps_outputs_dir, or an unusable user name.",
			http.StatusUnauthorized: "UnauthorizedRequest: missing or invalid credentials.", http.StatusForbidden: "Forbidden."},
		handle: s.getExplain}}
}

// getExplain answers an admin's GET /explain.
func (s *Server) getExplain(c echo.Context) error {
	caller, err := s.auth.caller(c.Request())
	if err != nil {
		return c.JSON(http.StatusUnauthorized, map[string]any{"code": http.StatusUnauthorized,
			"detail": "UnauthorizedRequest: missing or invalid credentials."})
	}
	if !s.auth.mayRun(caller, ExplainType) {
		return c.JSON(http.StatusForbidden, map[string]any{"code": http.StatusForbidden, "detail": "Forbidden."})
	}
	q := c.QueryParams()
	path, user := q.Get("path"), q.Get("user")
	if (path == "") == (user == "") {
		return c.JSON(http.StatusBadRequest, map[string]any{"code": http.StatusBadRequest,
			"detail": "Give one of the query parameters path (an absolute WPS output path) and user (a user name)."})
	}
	x, err := s.opts.Explainer.Explain(c.Request().Context(), path, user)
	switch {
	case errors.Is(err, fs.ErrInvalid):
		return c.JSON(http.StatusBadRequest, map[string]any{"code": http.StatusBadRequest, "detail": err.Error()})
	case err != nil:
		return serverError(exceptionName(err), err)
	}
	return c.JSON(http.StatusOK, x)
}
