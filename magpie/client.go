// Package magpie talks to Magpie, bird-house's access-management service:
// a REST client with cookie sign-in, typed results, classified errors and an
// optional per-operation cache.
package magpie

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
)

// maxBody bounds how much of an answer is read.
const maxBody = 64 << 20

// ClientOptions configures a Client.
type ClientOptions struct {
	// URL is Magpie's base URL, prefix included (e.g. http://magpie:2001/magpie).
	URL string
	// AdminUser and AdminPassword sign in; the password is never logged.
	AdminUser, AdminPassword string
	// HTTPClient sends the requests; its Timeout is COWBIRD_REQUEST_TIMEOUT
	// and its TLS settings are the caller's. Nil means http.DefaultClient.
	HTTPClient *http.Client
	// Log receives debug logs (nil: discarded).
	Log *logrus.Entry
}

// Client calls the Magpie REST API as an administrator. It is safe for
// concurrent use. It signs in on first use and, when a call answers 401 or
// 403, signs in again and retries that call once.
type Client struct {
	s     *session
	cache *cache // nil: no caching
}

// session is the state shared by a Client and its WithCache copies.
type session struct {
	base     string
	user     string
	password string
	http     *http.Client
	log      *logrus.Entry

	mu      sync.Mutex
	cookies []*http.Cookie
	gen     uint64 // bumped at each sign-in

	requests atomic.Int64
	logins   atomic.Int64
}

// NewClient returns a client for opts.URL; it sends nothing until used.
func NewClient(opts ClientOptions) *Client {
	hc := opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = logrus.NewEntry(l)
	}
	return &Client{s: &session{
		base: strings.TrimRight(opts.URL, "/"), user: opts.AdminUser, password: opts.AdminPassword,
		http: hc, log: log,
	}}
}

// Requests counts the HTTP requests sent so far, sign-ins included, by this
// client and every copy made by WithCache.
func (c *Client) Requests() int64 { return c.s.requests.Load() }

// Logins counts the sign-in requests sent so far.
func (c *Client) Logins() int64 { return c.s.logins.Load() }

// call sends one API request and decodes a 2xx answer's JSON into out (if
// not nil). It signs in when needed and retries once after a 401/403. It
// returns the answer's status.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, in, out any) (int, error) {
	op := method + " " + path
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return 0, &Error{Op: op, Err: fmt.Errorf("encode body: %w", err)}
		}
	}
	cookies, gen, err := c.s.current(ctx)
	if err != nil {
		return 0, err
	}
	resp, data, err := c.s.send(ctx, method, path, query, body, cookies)
	if err == nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
		c.s.log.WithField("status", resp.StatusCode).Debug("magpie session refused, signing in again")
		if cookies, err = c.s.refresh(ctx, gen); err != nil {
			return 0, err
		}
		resp, data, err = c.s.send(ctx, method, path, query, body, cookies)
	}
	if err != nil {
		return 0, &Error{Op: op, Err: err}
	}
	status := resp.StatusCode
	if status < 200 || status > 299 {
		return status, &Error{Op: op, Status: status, Detail: detail(data)}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return status, &Error{Op: op, Status: status, Detail: "undecodable answer: " + err.Error()}
		}
	}
	return status, nil
}

// detail extracts Magpie's "detail" message, or the start of the body.
func detail(data []byte) string {
	var env struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal(data, &env) == nil && env.Detail != "" {
		return env.Detail
	}
	s := strings.TrimSpace(string(data))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// send makes one HTTP request and reads the answer, returned with the
// response (body closed). Transport errors come back without the URL, so no
// credential in it can leak.
func (s *session) send(ctx context.Context, method, path string, query url.Values, body []byte, cookies []*http.Cookie) (*http.Response, []byte, error) {
	u := s.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, errors.New("build request: invalid magpie url")
	}
	// Cowbird sends this header on every Magpie call, GETs included.
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	s.requests.Add(1)
	resp, err := s.http.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, nil, fmt.Errorf("read answer: %w", err)
	}
	return resp, data, nil
}

// current returns the session cookies, signing in if there are none.
func (s *session) current(ctx context.Context) ([]*http.Cookie, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cookies == nil {
		if err := s.signIn(ctx); err != nil {
			return nil, 0, err
		}
	}
	return s.cookies, s.gen, nil
}

// refresh signs in again unless another caller already did since gen.
func (s *session) refresh(ctx context.Context, gen uint64) ([]*http.Cookie, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == gen || s.cookies == nil {
		s.cookies = nil
		if err := s.signIn(ctx); err != nil {
			return nil, err
		}
	}
	return s.cookies, nil
}

// signIn posts the admin credentials to /signin and keeps the cookies;
// callers hold s.mu.
func (s *session) signIn(ctx context.Context) error {
	const op = "POST /signin"
	body, err := json.Marshal(map[string]string{"user_name": s.user, "password": s.password})
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	s.logins.Add(1)
	resp, data, err := s.send(ctx, http.MethodPost, "/signin", nil, body, nil)
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return &Error{Op: op, Status: resp.StatusCode, Detail: fmt.Sprintf("sign in as %q: %s", s.user, detail(data))}
	}
	var cookies []*http.Cookie
	for _, ck := range resp.Cookies() {
		cookies = append(cookies, &http.Cookie{Name: ck.Name, Value: ck.Value})
	}
	if len(cookies) == 0 {
		return fmt.Errorf("magpie %s as %q: no session cookie in answer: %w", op, s.user, ErrAuth)
	}
	s.cookies = cookies
	s.gen++
	s.log.WithField("user", s.user).Debug("signed in to magpie")
	return nil
}
