package magpie

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// NotifyFailure tells Magpie that a user's creation failed on cowbird's side:
// it sends HEAD to callbackURL, the temporary URL Magpie put in the user
// webhook's callback_url, and Magpie then marks the user as failed (status
// WebhookError). hc sends the request and bounds it with its Timeout (the
// caller's COWBIRD_REQUEST_TIMEOUT and COWBIRD_SSL_VERIFY); nil means a
// client with a 5s timeout.
//
// As in the original, Magpie's answer is read and ignored, whatever its
// status (a used or expired token answers 404 or 410): the error is only for
// a request that could not be made or answered (an invalid URL, a refused
// connection, a timeout). It is an *Error that never holds the URL's path or
// query, where the one-time token is.
func NotifyFailure(ctx context.Context, hc *http.Client, callbackURL string) error {
	const op = "HEAD callback_url"
	if hc == nil {
		hc = &http.Client{Timeout: defaultTimeout}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, callbackURL, nil)
	if err != nil {
		return &Error{Op: op, Err: errors.New("invalid url")}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return &Error{Op: op, Err: redact(err, req.URL)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	return nil
}

// redact drops the URL a *url.Error carries and, should the rest still
// quote u's path or query (a redirect's Location, say), replaces the error by
// its text with them cut out.
func redact(err error, u *url.URL) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	redacted := msg
	for _, s := range []string{u.RawQuery, u.EscapedPath(), u.Path} {
		if len(s) > 1 { // "/" alone holds no token
			redacted = strings.ReplaceAll(redacted, s, "...")
		}
	}
	if redacted != msg {
		return errors.New(redacted)
	}
	return err
}
