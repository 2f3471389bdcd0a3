package magpie

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// CookieName is the name of Magpie's session cookie.
const CookieName = "auth_tkt"

// defaultTimeout bounds the calls of a nil *http.Client: the default of
// COWBIRD_REQUEST_TIMEOUT.
const defaultTimeout = 5 * time.Second

// Sessions asks Magpie whom a session cookie signs in (GET /session). Unlike
// Client it never signs in itself: it sends the caller's cookie and nothing
// else. It is safe for concurrent use.
type Sessions struct {
	s *session
}

// NewSessions returns a Sessions for the Magpie at url, prefix included
// (e.g. https://host/magpie). hc sends the requests and bounds them with its
// Timeout; nil means a client with a 5s timeout.
func NewSessions(url string, hc *http.Client) *Sessions {
	if hc == nil {
		hc = &http.Client{Timeout: defaultTimeout}
	}
	return &Sessions{s: &session{base: strings.TrimRight(url, "/"), http: hc}}
}

// sessionAnswer is the part of Magpie's GET /session answer that is used;
// other fields are ignored, whatever their type.
type sessionAnswer struct {
	Authenticated bool `json:"authenticated"`
	User          *struct {
		UserName   string   `json:"user_name"`
		GroupNames []string `json:"group_names"`
	} `json:"user"`
}

// User returns the name and the group names of the user that cookie (the
// value of CookieName) signs in. A cookie that signs no one in is not an
// error: Magpie answered, and User returns "" and no groups. That is the case
// when Magpie answers that the session is not authenticated (an anonymous,
// forged or expired cookie) or has no user name, and when it answers 401 or
// 403.
//
// An error (*Error) means Magpie could not tell: a transport failure, any
// other status, or an answer that is not the JSON of a session;
// Error.Transient says whether asking again later may succeed (Magpie down,
// a 5xx or a timeout) or not (e.g. a 404 from a wrong URL). The cookie never
// appears in an error.
func (s *Sessions) User(ctx context.Context, cookie string) (name string, groups []string, err error) {
	const op = "GET /session"
	resp, data, err := s.s.send(ctx, http.MethodGet, "/session", nil, nil,
		[]*http.Cookie{{Name: CookieName, Value: cookie}})
	if err != nil {
		return "", nil, &Error{Op: op, Err: err}
	}
	switch status := resp.StatusCode; {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return "", nil, nil
	case status < 200 || status > 299:
		return "", nil, &Error{Op: op, Status: status, Detail: detail(data)}
	}
	var ans sessionAnswer
	if err := json.Unmarshal(data, &ans); err != nil {
		return "", nil, &Error{Op: op, Status: resp.StatusCode, Detail: "undecodable answer: " + err.Error()}
	}
	if !ans.Authenticated || ans.User == nil || ans.User.UserName == "" {
		return "", nil, nil
	}
	return ans.User.UserName, ans.User.GroupNames, nil
}
