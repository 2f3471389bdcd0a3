package handlers

import "context"

// PathResyncer reconciles one watched tree after its file events were lost
// (inotify overflow, start-up catch-up). The composition root finds it by type
// assertion on a handler that watches paths.
type PathResyncer interface {
	Handler
	// ResyncPath brings what the handler manages under path (a watched
	// root or a directory beneath one) back to the desired state. covered
	// reports that the reconcile did all that the lost events would have:
	// the monitor then drops them instead of delivering them as well.
	ResyncPath(ctx context.Context, path string) (covered bool, err error)
}
