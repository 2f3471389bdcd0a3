package filesystem

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Resync implements handlers.Resyncer: a full incremental reconcile of the
// WPS-output links and modes. Unlike the original, it also (re)creates the
// notebooks symlinks of the existing workspaces of Magpie users.
func (h *Handler) Resync(ctx context.Context) error {
	_, err := h.Reconcile(ctx, Scope{}, ReconcileOptions{})
	return err
}

// ResyncPath reconciles the tree at path, a watched root under
// wps_outputs_dir, when the monitor may have missed its file events (an
// inotify overflow, or files there before the watch, at start-up). It
// reports whether the reconcile did all that those events would have done:
// true when it succeeded.
func (h *Handler) ResyncPath(ctx context.Context, path string) (bool, error) {
	_, err := h.Reconcile(ctx, Scope{Path: path}, ReconcileOptions{})
	return err == nil, err
}

// Periodic calls run every interval plus up to 10% of random jitter (so
// that daemons started together spread their reconciles) until ctx ends,
// then returns nil. The caller makes run an admin action (a full
// reconcile); its error is logged as a warning unless ctx ended.
func (h *Handler) Periodic(ctx context.Context, every time.Duration, run func(context.Context) error) error {
	if every <= 0 {
		return errors.New("periodic reconcile: the interval must be positive")
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.after(every + time.Duration(rand.Int64N(int64(every)/10+1))):
		}
		if err := run(ctx); err != nil && ctx.Err() == nil {
			h.log.WithError(err).Warn("periodic reconcile")
		}
	}
}
