package actions

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// basePath is the path of the actions API on the daemon (api.ActionsBase).
const basePath = "/actions/v1"

// DefaultTimeout bounds each request of a Client whose Timeout is not set.
const DefaultTimeout = 30 * time.Second

// maxAnswer is the largest answer a Client reads.
const maxAnswer = 16 << 20

// Client calls a cowbird daemon's actions API (/actions/v1, the Globus
// Action Provider interface) over HTTP. The daemon's routes name the type of
// an action as well as its ID: the methods on one action take both, and an
// empty type is looked up with Find, at the cost of a request per type.
// Every Status a Client returns has its Type set. A Client is safe for
// concurrent use.
type Client struct {
	// URL is the daemon's base URL, e.g. "http://127.0.0.1:7000".
	URL string
	// Token is the bearer token sent with every request ("" for none).
	Token string
	// HTTP sends the requests (http.DefaultClient if nil).
	HTTP *http.Client
	// Timeout bounds each request, reading the answer included
	// (DefaultTimeout if not positive).
	Timeout time.Duration
}

// APIError is an answer of the daemon other than 2xx. A 404 is returned
// wrapped with ErrNotFound.
type APIError struct {
	// Method and Path are those of the request (Path without the base URL).
	Method, Path string
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Code is the error code of the answer, e.g. "ActionConflict", if any.
	Code string
	// Description is the daemon's description of the error, or the status
	// text when the answer has none.
	Description string
}

// Error implements error. It quotes the daemon, never the token.
func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.StatusCode, e.Description)
}

// ArgumentError reports a call for which no request was sent: an argument,
// such as an action ID, or the client's URL is invalid.
type ArgumentError struct{ Err error }

// Error implements error.
func (e *ArgumentError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *ArgumentError) Unwrap() error { return e.Err }

// Types describes the action types of the daemon (GET /actions/v1/).
func (c *Client) Types(ctx context.Context) ([]Description, error) {
	var doc struct {
		ActionTypes []Description `json:"action_types"`
	}
	if err := c.do(ctx, http.MethodGet, basePath+"/", nil, &doc); err != nil {
		return nil, err
	}
	return doc.ActionTypes, nil
}

// Handlers lists the daemon's active handlers in dispatch order (GET
// /handlers): the names a handler.resync action accepts.
func (c *Client) Handlers(ctx context.Context) ([]string, error) {
	var doc struct {
		Handlers []string `json:"handlers"`
	}
	if err := c.do(ctx, http.MethodGet, "/handlers", nil, &doc); err != nil {
		return nil, err
	}
	return doc.Handlers, nil
}

// Run starts an action of type typ. An empty req.RequestID is replaced by a
// random one, so only a request with a RequestID is safe to send again.
func (c *Client) Run(ctx context.Context, typ string, req RunRequest) (Status, error) {
	if req.RequestID == "" {
		req.RequestID = newRequestID()
	}
	var st Status
	err := c.do(ctx, http.MethodPost, typePath(typ), req, &st)
	st.Type = typ
	return st, err
}

// Status returns the status of action id of type typ ("" to look it up, as
// Find does).
func (c *Client) Status(ctx context.Context, typ, id string) (Status, error) {
	if typ == "" {
		return c.Find(ctx, id)
	}
	return c.onAction(ctx, http.MethodGet, typ, id, "")
}

// Cancel asks action id of type typ ("" to look it up) to stop and returns
// its status, which may still be ACTIVE: cancellation is advisory.
func (c *Client) Cancel(ctx context.Context, typ, id string) (Status, error) {
	return c.onAction(ctx, http.MethodPost, typ, id, "/cancel")
}

// Release deletes terminal action id of type typ ("" to look it up), its
// record and its log, and returns its last status.
func (c *Client) Release(ctx context.Context, typ, id string) (Status, error) {
	return c.onAction(ctx, http.MethodDelete, typ, id, "")
}

// Find returns the status of action id, whatever its type: it asks each
// type of the daemon in turn, since the routes name the type. An action no
// type knows is an ErrNotFound.
func (c *Client) Find(ctx context.Context, id string) (Status, error) {
	if err := checkID(id); err != nil {
		return Status{}, err
	}
	types, err := c.Types(ctx)
	if err != nil {
		return Status{}, err
	}
	for _, t := range types {
		st, err := c.Status(ctx, t.Title, id)
		if !errors.Is(err, ErrNotFound) {
			return st, err
		}
	}
	return Status{}, fmt.Errorf("action %s: %w", id, ErrNotFound)
}

// List returns the actions f selects, type by type in the order of Types
// when f.Type is empty (GET /actions/v1/{type}?status=&roles=). The daemon
// applies f.Statuses and f.Roles as Service.Enumerate does.
func (c *Client) List(ctx context.Context, f Filter) ([]Status, error) {
	types := []string{f.Type}
	if f.Type == "" {
		descs, err := c.Types(ctx)
		if err != nil {
			return nil, err
		}
		types = types[:0]
		for _, d := range descs {
			types = append(types, d.Title)
		}
	}
	q := url.Values{"status": f.Statuses, "roles": f.Roles}.Encode()
	all := []Status{}
	for _, t := range types {
		var sts []Status
		if err := c.do(ctx, http.MethodGet, typePath(t)+"?"+q, nil, &sts); err != nil {
			return nil, err
		}
		for i := range sts {
			sts[i].Type = t
		}
		all = append(all, sts...)
	}
	return all, nil
}

// Log returns a page of up to limit entries (0 for the daemon's default) of
// the log of action id of type typ ("" to look it up), from marker ("" for
// the first page).
func (c *Client) Log(ctx context.Context, typ, id string, limit int, marker string) (LogPage, error) {
	p, _, err := c.route(ctx, typ, id)
	if err != nil {
		return LogPage{}, err
	}
	q := url.Values{}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if marker != "" {
		q.Set("marker", marker)
	}
	p += "/log"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var page LogPage
	err = c.do(ctx, http.MethodGet, p, nil, &page)
	return page, err
}

// LogAll returns the whole log of action id of type typ ("" to look it up),
// fetched page by page.
func (c *Client) LogAll(ctx context.Context, typ, id string) ([]LogEntry, error) {
	typ, err := c.typeOf(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	entries := []LogEntry{}
	for marker := ""; ; {
		page, err := c.Log(ctx, typ, id, 100, marker)
		if err != nil {
			return nil, err
		}
		entries = append(entries, page.Entries...)
		if !page.HasNextPage || page.Marker == "" {
			return entries, nil
		}
		marker = page.Marker
	}
}

// Follow polls action st (of type st.Type) every interval (one second if not
// positive) until it is terminal, and returns its last status. It calls
// progress, if not nil, with st and then with each status polled; a terminal
// st is returned without a request.
func (c *Client) Follow(ctx context.Context, st Status, interval time.Duration, progress func(Status)) (Status, error) {
	if interval <= 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if progress != nil {
			progress(st)
		}
		if st.Status.Terminal() {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("wait for action %s: %w", st.ActionID, ctx.Err())
		case <-tick.C:
		}
		next, err := c.Status(ctx, st.Type, st.ActionID)
		if err != nil {
			return st, err
		}
		st = next
	}
}

// onAction sends method to the route of action id of type typ, plus suffix,
// and returns the status answered.
func (c *Client) onAction(ctx context.Context, method, typ, id, suffix string) (Status, error) {
	p, typ, err := c.route(ctx, typ, id)
	if err != nil {
		return Status{}, err
	}
	var st Status
	err = c.do(ctx, method, p+suffix, nil, &st)
	st.Type = typ
	return st, err
}

// typePath is the route of action type typ.
func typePath(typ string) string { return basePath + "/" + url.PathEscape(typ) }

// route returns the route of action id and its type, typ or, if typ is "",
// the one Find finds.
func (c *Client) route(ctx context.Context, typ, id string) (string, string, error) {
	typ, err := c.typeOf(ctx, typ, id)
	if err != nil {
		return "", "", err
	}
	return typePath(typ) + "/" + url.PathEscape(id), typ, nil
}

// typeOf returns typ, or the type of action id if typ is "". It checks id.
func (c *Client) typeOf(ctx context.Context, typ, id string) (string, error) {
	if err := checkID(id); err != nil || typ != "" {
		return typ, err
	}
	st, err := c.Find(ctx, id)
	return st.Type, err
}

// checkID rejects an action ID that cannot be a path segment.
func checkID(id string) error {
	if id == "" || strings.ContainsAny(id, "/?#") {
		return &ArgumentError{fmt.Errorf("invalid action ID %q", id)}
	}
	return nil
}

// do sends one request with in as its JSON body (none if nil) and decodes a
// 2xx answer into out (if not nil). Other answers are *APIError.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URL, "/")+path, body)
	if err != nil {
		return &ArgumentError{fmt.Errorf("%s %s: %w", method, path, err)}
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error // it quotes the URL, which may hold credentials
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return answerError(method, path, resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// answerError is the error of a non-2xx answer: the actions API's envelope
// is {"code", "description"}, the Cowbird routes' {"code", "detail"}.
func answerError(method, path string, status int, data []byte) error {
	var env struct {
		Code        json.RawMessage `json:"code"`
		Description string          `json:"description"`
		Detail      string          `json:"detail"`
	}
	_ = json.Unmarshal(data, &env)
	e := &APIError{Method: method, Path: path, StatusCode: status,
		Description: strings.TrimSpace(env.Description + env.Detail)}
	_ = json.Unmarshal(env.Code, &e.Code) // the Cowbird routes' code is a number
	if e.Description == "" {
		e.Description = http.StatusText(status)
	}
	if status == http.StatusNotFound {
		return fmt.Errorf("%w: %w", e, ErrNotFound)
	}
	return e
}

// newRequestID returns a random request_id.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}
