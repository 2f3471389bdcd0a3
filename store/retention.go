package store

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"
)

// RetentionInterval is how often RunRetention prunes the journal.
const RetentionInterval = time.Hour

// RunRetention prunes the journal's finished events (Prune with maxAge and
// maxEvents) at once and then every RetentionInterval, until ctx ends. A
// failed prune is logged and tried again at the next tick.
func (db *DB) RunRetention(ctx context.Context, maxAge time.Duration, maxEvents int, log *logrus.Entry) error {
	t := time.NewTicker(RetentionInterval)
	defer t.Stop()
	for {
		n, err := db.Prune(ctx, time.Now(), maxAge, maxEvents)
		if err != nil && ctx.Err() == nil {
			log.WithError(err).Warn("journal retention")
		} else if n > 0 {
			log.WithField("events", n).Info("journal pruned")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
