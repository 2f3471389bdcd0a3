// Package catalog implements the Catalog handler: it watches each user's
// workspace and logs what changes there. Catalog indexing is not implemented
// in the original either (spec cowbird.md §3.6).
package catalog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
)

// Name is the handler's configuration key.
const Name = "Catalog"

// Watcher registers recursive watches whose events come back to HandleFile.
type Watcher interface {
	Register(ctx context.Context, path, handler string, recursive bool) error
	Unregister(ctx context.Context, path, handler string) error
}

// Handler is the Catalog handler.
type Handler struct {
	workspaceDir string
	watch        Watcher
	log          *logrus.Entry
}

// New returns a Catalog handler for the user workspaces under workspaceDir.
func New(workspaceDir string, watch Watcher, log *logrus.Entry) *Handler {
	return &Handler{workspaceDir: workspaceDir, watch: watch, log: log}
}

// Name implements handlers.Handler.
func (h *Handler) Name() string { return Name }

// Start implements handlers.Starter: it watches every existing user
// workspace, as the original restores its monitors at start-up (after a
// switch from the Python Cowbird, whose monitors were kept in MongoDB,
// there is nothing else to restore them from). A missing workspace_dir is
// a warning: there is no workspace to watch yet.
func (h *Handler) Start(ctx context.Context) error {
	entries, err := os.ReadDir(h.workspaceDir)
	if errors.Is(err, os.ErrNotExist) {
		h.log.WithField("path", h.workspaceDir).Warn("workspace_dir does not exist: no workspace to monitor yet")
		return nil
	}
	if err != nil {
		return fmt.Errorf("list workspaces: %w", err)
	}
	for _, e := range entries {
		// Real directories only (a symlink is not followed), and not the
		// hidden ones (.trash).
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if err := h.watch.Register(ctx, filepath.Join(h.workspaceDir, e.Name()), Name, true); err != nil {
			h.log.WithError(err).WithField("user", e.Name()).Warn("Cannot monitor the user workspace")
		}
	}
	return nil
}

// UserCreated implements handlers.UserHandler: it watches {workspace_dir}/{user}
// recursively. A workspace that does not exist yet is a warning, not a failure
// (FileSystem, which creates it, should run first).
func (h *Handler) UserCreated(ctx context.Context, ev handlers.UserEvent) error {
	dir := filepath.Join(h.workspaceDir, ev.UserName)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		h.log.WithFields(logrus.Fields{"user": ev.UserName, "path": dir}).
			Warn("Cannot monitor the user workspace: No such file or directory")
		return nil
	}
	if err := h.watch.Register(ctx, dir, Name, true); err != nil {
		return fmt.Errorf("watch workspace of %q: %w", ev.UserName, err)
	}
	return nil
}

// UserDeleted implements handlers.UserHandler: it removes the workspace watch.
func (h *Handler) UserDeleted(ctx context.Context, ev handlers.UserEvent) error {
	if err := h.watch.Unregister(ctx, filepath.Join(h.workspaceDir, ev.UserName), Name); err != nil {
		return fmt.Errorf("unwatch workspace of %q: %w", ev.UserName, err)
	}
	return nil
}

// HandleFile implements handlers.FileHandler: it logs the change, as the
// original does.
func (h *Handler) HandleFile(_ context.Context, ev handlers.FileEvent) error {
	h.log.WithField("path", ev.Path).Infof("The following path [%s] has just been %s", ev.Path, ev.Op)
	return nil
}

var (
	_ handlers.UserHandler = (*Handler)(nil)
	_ handlers.FileHandler = (*Handler)(nil)
)
