package app

import (
	"context"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/api"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
)

// auth is who may call the actions API and the webhooks.
func (d *daemon) auth() api.Auth {
	a := api.Auth{AdminTokens: d.cfg.Daemon.AdminTokenMap(), WebhookSecret: d.cfg.Daemon.WebhookSecret.Reveal()}
	if e, ok := d.cfg.Handler(magpie.Name); ok && e.URL != "" && d.cfg.Daemon.MagpieAuth {
		a.Magpie = api.NewMagpieSessions(magpie.NewSessions(e.URL, d.httpClient("magpie")), 0)
	}
	return a
}

// gaveUp tells Magpie that a user's creation failed when a journaled retry
// of its user_created fails for good (the webhook was answered 202).
func (d *daemon) gaveUp(ev handlers.Event, handler string, err error) {
	log := d.log.WithFields(logrus.Fields{"event": ev.Name(), "handler": handler}).WithError(err)
	if k, _ := Lookup(d.kinds, handler); k.RunsCommands {
		log.Warn("hook failed for good after retries") // the Hooks handler's failure only
		return
	}
	u, ok := ev.(handlers.UserEvent)
	if !ok || u.Action != handlers.Created || u.CallbackURL == "" {
		log.Error("event failed for good after retries")
		return
	}
	log.WithField("user", u.UserName).Error("user_created failed for good after retries: telling Magpie")
	ctx, cancel := context.WithTimeout(context.Background(), d.settings.RequestTimeout)
	defer cancel()
	if cerr := d.callback(ctx, u.CallbackURL); cerr != nil {
		d.log.WithError(cerr).Warn("magpie callback for failed user creation")
	}
}

// callback tells Magpie that a user's creation failed.
func (d *daemon) callback(ctx context.Context, url string) error {
	return magpie.NotifyFailure(ctx, d.callbackClient, url)
}
