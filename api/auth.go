package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/cowbird-go/cowbird/actions"
)

// Authentication settings and defaults.
const (
	// WebhookSecretHeader carries the shared secret of the webhook routes.
	WebhookSecretHeader = "X-Cowbird-Webhook-Secret"
	// MagpieCookie is the name of Magpie's session cookie.
	MagpieCookie = "auth_tkt"
	// AdminGroup is the principal allowed to run every action type by
	// default, with every admin token.
	AdminGroup = "magpie:group:administrators"
	// DefaultMagpieCacheTTL is how long a resolved Magpie session is reused.
	DefaultMagpieCacheTTL = time.Minute
)

// ErrUnauthenticated is returned (wrapped) for missing or invalid
// credentials.
var ErrUnauthenticated = errors.New("unauthenticated")

// Auth configures who may call the actions API and the webhooks.
type Auth struct {
	// AdminTokens maps a name to a bearer token, in clear or as
	// "sha256:<hex>"; a matching token authenticates as "token:<name>".
	AdminTokens map[string]string
	// Magpie, when set, authenticates callers without a bearer token by
	// their Magpie session cookie (auth_tkt).
	Magpie MagpieAuth
	// RunnableBy lists the principals that may run each action type; a
	// type not listed may be run by AdminGroup and every admin token.
	RunnableBy map[string][]string
	// WebhookSecret, when set, must be sent in X-Cowbird-Webhook-Secret to
	// the webhook routes.
	WebhookSecret string
}

// MagpieAuth turns a Magpie session cookie into a caller.
type MagpieAuth interface {
	// Principal returns the cookie's user with its groups, or an error
	// wrapping ErrUnauthenticated for a cookie that signs no one in.
	Principal(ctx context.Context, cookie string) (actions.Caller, error)
}

// adminToken is a configured token, kept only as its SHA-256.
type adminToken struct {
	principal string
	sum       []byte
}

// authenticator checks the credentials of a request.
type authenticator struct {
	tokens     []adminToken
	magpie     MagpieAuth
	runnableBy map[string][]string
	defaults   []string
}

// newAuthenticator hashes the tokens of a; a malformed sha256 value matches
// no token and is reported in the returned error.
func newAuthenticator(a Auth) (*authenticator, error) {
	au := &authenticator{magpie: a.Magpie, runnableBy: a.RunnableBy, defaults: []string{AdminGroup}}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(a.AdminTokens)) {
		tok := a.AdminTokens[name]
		var sum []byte
		if h, ok := strings.CutPrefix(tok, "sha256:"); ok {
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != sha256.Size {
				errs = append(errs, fmt.Errorf("admin token %q: sha256: must be followed by 64 hex digits", name))
				continue
			}
			sum = b
		} else {
			s := sha256.Sum256([]byte(tok))
			sum = s[:]
		}
		p := "token:" + name
		au.tokens = append(au.tokens, adminToken{principal: p, sum: sum})
		au.defaults = append(au.defaults, p)
	}
	return au, errors.Join(errs...)
}

// caller authenticates r: a bearer token if there is an Authorization
// header, else the Magpie cookie when Magpie authentication is on.
func (au *authenticator) caller(r *http.Request) (actions.Caller, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return actions.Caller{}, fmt.Errorf("authorization header is not a bearer token: %w", ErrUnauthenticated)
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		found := ""
		for _, t := range au.tokens { // no early exit: the time does not depend on which
			if subtle.ConstantTimeCompare(sum[:], t.sum) == 1 {
				found = t.principal
			}
		}
		if found == "" {
			return actions.Caller{}, fmt.Errorf("bearer token is not valid: %w", ErrUnauthenticated)
		}
		return actions.Caller{ID: found}, nil
	}
	if au.magpie != nil {
		if c, err := r.Cookie(MagpieCookie); err == nil && c.Value != "" {
			caller, err := au.magpie.Principal(r.Context(), c.Value)
			if err != nil {
				return actions.Caller{}, fmt.Errorf("magpie session: %w", err)
			}
			return caller, nil
		}
	}
	return actions.Caller{}, fmt.Errorf("no credentials: %w", ErrUnauthenticated)
}

// allowed lists the principals that may run action type typ.
func (au *authenticator) allowed(typ string) []string {
	if ps, ok := au.runnableBy[typ]; ok {
		return ps
	}
	return au.defaults
}

// mayRun reports whether c may run action type typ.
func (au *authenticator) mayRun(c actions.Caller, typ string) bool {
	for _, p := range au.allowed(typ) {
		if p == c.ID || slices.Contains(c.Groups, p) {
			return true
		}
	}
	return false
}

// requireWebhookSecret wraps a webhook route so that it answers 401 unless
// the request carries the configured secret (no check when none is set).
func (s *Server) requireWebhookSecret(next echo.HandlerFunc) echo.HandlerFunc {
	if s.opts.Auth.WebhookSecret == "" {
		return next
	}
	want := sha256.Sum256([]byte(s.opts.Auth.WebhookSecret))
	return func(c echo.Context) error {
		got := sha256.Sum256([]byte(c.Request().Header.Get(WebhookSecretHeader)))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return s.reject(c, &apiError{code: http.StatusUnauthorized, detail: detailBadWebhookSecret})
		}
		return next(c)
	}
}

// detailBadWebhookSecret answers a webhook without the right secret.
const detailBadWebhookSecret = "Missing or invalid " + WebhookSecretHeader + " header."

// SessionLookup asks Magpie whom a session cookie signs in;
// *magpie.Sessions implements it.
type SessionLookup interface {
	// User returns the name and the group names of the user cookie signs
	// in, or "" when Magpie answers that it signs no one in. An error means
	// Magpie could not tell (it is down, or answered something else); it
	// never holds the cookie.
	User(ctx context.Context, cookie string) (name string, groups []string, err error)
}

// MagpieSessions implements MagpieAuth with a SessionLookup: the user a
// cookie signs in is the principal magpie:user:<name>, and its groups
// magpie:group:<name>. Callers are cached for a short time by the cookie's
// hash; a cookie that signs no one in, or a failure to ask Magpie, denies
// (fails closed) and is not cached.
type MagpieSessions struct {
	lookup SessionLookup
	ttl    time.Duration
	now    func() time.Time

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cachedCaller
}

type cachedCaller struct {
	caller  actions.Caller
	expires time.Time
}

// NewMagpieSessions returns a MagpieAuth that asks lookup and caches its
// answers for ttl; ttl <= 0 means DefaultMagpieCacheTTL.
func NewMagpieSessions(lookup SessionLookup, ttl time.Duration) *MagpieSessions {
	if ttl <= 0 {
		ttl = DefaultMagpieCacheTTL
	}
	return &MagpieSessions{lookup: lookup, ttl: ttl, now: time.Now, cache: map[[sha256.Size]byte]cachedCaller{}}
}

// Principal implements MagpieAuth.
func (m *MagpieSessions) Principal(ctx context.Context, cookie string) (actions.Caller, error) {
	key := sha256.Sum256([]byte(cookie))
	now := m.now()
	m.mu.Lock()
	cached, ok := m.cache[key]
	if ok && now.After(cached.expires) {
		delete(m.cache, key)
		ok = false
	}
	m.mu.Unlock()
	if ok {
		return cached.caller, nil
	}
	name, groups, err := m.lookup.User(ctx, cookie)
	if err != nil {
		return actions.Caller{}, err
	}
	if name == "" {
		return actions.Caller{}, fmt.Errorf("not signed in: %w", ErrUnauthenticated)
	}
	c := actions.Caller{ID: "magpie:user:" + name}
	for _, g := range groups {
		c.Groups = append(c.Groups, "magpie:group:"+g)
	}
	m.mu.Lock()
	for k, v := range m.cache { // keep the cache bounded by the live sessions
		if now.After(v.expires) {
			delete(m.cache, k)
		}
	}
	m.cache[key] = cachedCaller{caller: c, expires: now.Add(m.ttl)}
	m.mu.Unlock()
	return c, nil
}

// Interface guard.
var _ MagpieAuth = (*MagpieSessions)(nil)
