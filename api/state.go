package api

import (
	"io"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
)

// SnapshotType is the name under which Auth.RunnableBy lists who may read
// the state snapshot; by default AdminGroup and every admin token.
const SnapshotType = "state.snapshot"

// Snapshotter writes a consistent copy of the daemon's state (*store.DB).
type Snapshotter interface {
	// Snapshot writes the copy to w, calling begin with its size first.
	Snapshot(w io.Writer, begin func(size int64)) (int64, error)
}

// stateRoutes is GET /state/snapshot when the server has a state.
func (s *Server) stateRoutes() []route {
	if s.opts.State == nil {
		return nil
	}
	return []route{{method: http.MethodGet, path: "/state/snapshot", name: "state_snapshot", tag: tagAPI,
		summary: "A consistent copy of the state database, taken online (cowbird backup).", plain: true,
		responses: map[int]string{http.StatusOK: "The bbolt database.", http.StatusUnauthorized: "UnauthorizedRequest: missing or invalid credentials.",
			http.StatusForbidden: "Forbidden."},
		handle: s.getSnapshot}}
}

// getSnapshot streams the state snapshot to an admin.
func (s *Server) getSnapshot(c echo.Context) error {
	caller, err := s.auth.caller(c.Request())
	if err != nil {
		return c.JSON(http.StatusUnauthorized, map[string]any{"code": http.StatusUnauthorized,
			"detail": "UnauthorizedRequest: missing or invalid credentials."})
	}
	if !s.auth.mayRun(caller, SnapshotType) {
		return c.JSON(http.StatusForbidden, map[string]any{"code": http.StatusForbidden, "detail": "Forbidden."})
	}
	res := c.Response()
	res.Header().Set(echo.HeaderContentType, "application/vnd.cowbird.bbolt")
	res.Header().Set(echo.HeaderContentDisposition, `attachment; filename="cowbird.db"`)
	_, err = s.opts.State.Snapshot(res, func(n int64) {
		res.Header().Set(echo.HeaderContentLength, strconv.FormatInt(n, 10))
		res.WriteHeader(http.StatusOK)
	})
	if err != nil && !res.Committed {
		return serverError(exceptionName(err), err)
	}
	if err != nil {
		s.opts.Log.WithError(err).Warn("state snapshot cut short")
	}
	return nil
}
