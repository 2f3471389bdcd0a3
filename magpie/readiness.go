package magpie

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cowbird-go/cowbird/handlers"
)

// checkBackoff spaces the checks of Magpie while it refuses or fails them.
var checkBackoff = handlers.Backoff{Base: time.Second, Max: 5 * time.Minute}

// errNotChecked is Ready's answer before the first check.
var errNotChecked = errors.New("magpie: not checked yet")

// checkState is the outcome of the last check of Magpie.
type checkState struct {
	mu   sync.Mutex
	last error // nil once a check passed
	done bool  // a check passed: Ready stays nil
}

// Run implements handlers.Runner: it signs in to Magpie and checks the
// sync_permissions service types (Validate), retrying with backoff while
// Magpie is down, refuses the sign-in or does not know a service type,
// until a check passes or ctx ends. The daemon runs meanwhile: events that
// need Magpie fail transiently and are retried from the journal; Ready
// reports the problem.
func (h *Handler) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := h.Validate(ctx)
		if ctx.Err() != nil {
			return nil
		}
		h.check.mu.Lock()
		h.check.last, h.check.done = err, err == nil
		h.check.mu.Unlock()
		if err == nil {
			h.log.Info("Magpie answers and knows the sync_permissions service types")
			return nil
		}
		wait := checkBackoff.Delay(attempt)
		h.log.WithError(err).WithField("retry_in", wait.Round(time.Millisecond).String()).
			Warn("Magpie check failed: user outputs and permission sync wait for it")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Ready implements handlers.Readier: nil once a check of Magpie passed,
// else why not.
func (h *Handler) Ready() error {
	h.check.mu.Lock()
	defer h.check.mu.Unlock()
	switch {
	case h.check.done:
		return nil
	case h.check.last == nil:
		return errNotChecked
	}
	return h.check.last
}

var (
	_ handlers.Runner  = (*Handler)(nil)
	_ handlers.Readier = (*Handler)(nil)
)
