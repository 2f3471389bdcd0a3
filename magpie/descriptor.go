package magpie

import (
	"context"
	"fmt"
	"net/http"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/config"
	"github.com/cowbird-go/cowbird/handlers"
)

// Descriptor describes the Magpie handler. Its entry also gives the url and
// credentials of the Magpie client every handler shares (SharedClient).
var Descriptor = handlers.Descriptor{
	HandlerKind: config.HandlerKind{
		Name: Name,
		// Its own keys are the admin credentials, both required non-empty.
		Decode: func(s *config.Section) any { return s.Credentials() },
		Validate: func(hc config.HandlerConfig) config.Errors {
			var errs config.Errors
			if c := config.SettingsOf[config.Credentials](hc); c.AdminUser == "" || c.AdminPassword == "" {
				errs = append(errs, hc.Problem("", "Missing Magpie credentials in config. Admin Magpie username and password are required."))
			}
			return append(errs, hc.Require("url", hc.URL)...)
		},
	},
	Type: (*Handler)(nil),
	New:  newHandler,
	Fields: func(hc config.HandlerConfig) []handlers.Field {
		return handlers.WithCredentials(hc, handlers.Field{Key: "url", Value: hc.URL})
	},
}

// newHandler builds the Magpie handler on the shared client. It asks
// Magpie nothing: its Run checks Magpie in the background, so that the
// daemon starts whatever Magpie answers (the original does too).
func newHandler(_ context.Context, env handlers.Env) (handlers.Handler, error) {
	c, err := Shared(env)
	if err != nil {
		return nil, err
	}
	return NewHandler(env.Config.SyncPoints, c, env.Log)
}

// SharedClient is the Magpie client every handler shares, from the Magpie
// entry's url and credentials (active or not); nil when no entry has a url.
func SharedClient(cfg *config.Config, hc *http.Client, log *logrus.Entry) *Client {
	e, ok := cfg.Handler(Name)
	if !ok || e.URL == "" {
		return nil
	}
	c := config.SettingsOf[config.Credentials](e)
	return NewClient(ClientOptions{URL: e.URL, AdminUser: c.AdminUser, AdminPassword: c.AdminPassword.Reveal(),
		HTTPClient: hc, Log: log})
}

// Shared returns the shared client of env.Deps (see SharedClient), or an
// error saying the handler needs one.
func Shared(env handlers.Env) (*Client, error) {
	c, err := handlers.Dep[*Client](env)
	if err != nil || c == nil {
		return nil, fmt.Errorf("the %s handler needs the %s handler's url and credentials", env.Entry.Name, Name)
	}
	return c, nil
}
