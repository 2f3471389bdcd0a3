package app

import (
	"context"

	"github.com/cowbird-go/cowbird/api"
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

// callback tells Magpie that a user's creation failed.
func (d *daemon) callback(ctx context.Context, url string) error {
	return magpie.NotifyFailure(ctx, d.callbackClient, url)
}
