package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// Daemon holds the settings the Go daemon adds to the original. They are
// read from the optional top-level section "cowbird:" (which the original
// ignores); a non-empty COWBIRD_* environment variable overrides each key.
type Daemon struct {
	// JournalRetention (journal_retention, COWBIRD_JOURNAL_RETENTION,
	// default 168h) is how long finished journal events are kept.
	JournalRetention time.Duration
	// JournalMaxEvents (journal_max_events, COWBIRD_JOURNAL_MAX_EVENTS,
	// default 100000) caps the number of events kept in the journal.
	JournalMaxEvents int
	// DispatchTimeout (dispatch_timeout, COWBIRD_DISPATCH_TIMEOUT, default
	// 30s) bounds the dispatch of one event to all handlers.
	DispatchTimeout time.Duration
	// BodyLimit (body_limit, COWBIRD_BODY_LIMIT, default 1048576) is the
	// largest request body accepted, in bytes.
	BodyLimit int64
	// URLPrefix (url_prefix, COWBIRD_URL_PREFIX, default "/cowbird") is the
	// prefix under which every route also answers; empty disables it.
	URLPrefix string
	// ReconcileInterval (reconcile_interval, COWBIRD_RECONCILE_INTERVAL,
	// default 0 = off) is the period of the background reconcile.
	ReconcileInterval time.Duration
	// AdminTokens (admin_tokens, COWBIRD_ADMIN_TOKENS, default none) are the
	// bearer tokens of the actions API, each authenticating as principal
	// "token:<name>". In the file it is a mapping name -> token; in the
	// environment "name=token,name2=sha256:<hex>". A token is given in
	// clear or as "sha256:" and the hex SHA-256 of the token. It is kept in
	// the environment form, sorted by name; AdminTokenMap decodes it.
	AdminTokens Secret
	// WebhookSecret (webhook_secret, COWBIRD_WEBHOOK_SECRET, default none)
	// is the shared secret the webhook routes then require in header
	// X-Cowbird-Webhook-Secret. Off by default: Magpie sends no header.
	WebhookSecret Secret
	// MagpieAuth (magpie_auth, COWBIRD_MAGPIE_AUTH, default false) lets
	// callers of the actions API authenticate with their Magpie session
	// cookie, as principals magpie:user:<name> and magpie:group:<name>.
	MagpieAuth bool
}

// AdminTokenMap returns AdminTokens as a map from name to token.
func (d Daemon) AdminTokenMap() map[string]string {
	m, _ := parseAdminTokens(d.AdminTokens.Reveal())
	return m
}

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// parseAdminTokens decodes "name=token,...", checking every entry. The
// messages never quote a token.
func parseAdminTokens(s string) (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	i := 0
	for item := range strings.SplitSeq(s, ",") {
		i++
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, tok, named := strings.Cut(item, "=")
		name, tok = strings.TrimSpace(name), strings.TrimSpace(tok)
		switch hash, hashed := strings.CutPrefix(tok, "sha256:"); {
		case !named: // a bare token: never quote it
			errs = append(errs, fmt.Errorf("entry %d must be name=token", i))
		case !tokenNameRE.MatchString(name): // maybe a token with '=' in it: never quoted
			errs = append(errs, fmt.Errorf("entry %d: the name before '=' must be letters, digits, '.', '_' or '-'", i))
		case out[name] != "":
			errs = append(errs, fmt.Errorf("token %q is defined twice", name))
		case tok == "":
			errs = append(errs, fmt.Errorf("token %q is empty", name))
		case hashed && !isSHA256Hex(hash):
			errs = append(errs, fmt.Errorf("token %q: sha256: must be followed by 64 hex digits", name))
		default:
			out[name] = tok
		}
	}
	return out, errors.Join(errs...)
}

func isSHA256Hex(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

// formatAdminTokens is the environment form of m, sorted by name.
func formatAdminTokens(m map[string]string) string {
	items := make([]string, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		items = append(items, name+"="+m[name])
	}
	return strings.Join(items, ",")
}

// DefaultDaemon returns the defaults of the cowbird: section.
func DefaultDaemon() Daemon {
	var d Daemon
	for _, k := range daemonKeys {
		_ = k.set(&d, k.def) // valid: TestDefaultDaemon
	}
	return d
}

// daemonKey describes one key of the cowbird: section.
type daemonKey struct {
	// name is the key in the section, env its variable, def its default in
	// the environment form.
	name, env, def string
	set            func(d *Daemon, raw string) error
	// mapping keys take a mapping of scalars in the file, handed to set in
	// the environment form "k=v,k2=v2".
	mapping bool
}

var daemonKeys = []daemonKey{
	{"journal_retention", "COWBIRD_JOURNAL_RETENTION", "168h", func(d *Daemon, s string) (err error) {
		d.JournalRetention, err = parseDuration(s)
		return err
	}, false},
	{"journal_max_events", "COWBIRD_JOURNAL_MAX_EVENTS", "100000", func(d *Daemon, s string) (err error) {
		d.JournalMaxEvents, err = parseInt(s)
		return err
	}, false},
	{"dispatch_timeout", "COWBIRD_DISPATCH_TIMEOUT", "30s", func(d *Daemon, s string) (err error) {
		d.DispatchTimeout, err = parseDuration(s)
		return err
	}, false},
	{"body_limit", "COWBIRD_BODY_LIMIT", "1048576", func(d *Daemon, s string) error {
		n, err := parseInt(s)
		d.BodyLimit = int64(n)
		return err
	}, false},
	{"url_prefix", "COWBIRD_URL_PREFIX", "/cowbird", func(d *Daemon, s string) error {
		d.URLPrefix = s
		return nil
	}, false},
	{"reconcile_interval", "COWBIRD_RECONCILE_INTERVAL", "0", func(d *Daemon, s string) (err error) {
		d.ReconcileInterval, err = parseDuration(s)
		return err
	}, false},
	{"admin_tokens", "COWBIRD_ADMIN_TOKENS", "", func(d *Daemon, s string) error {
		m, err := parseAdminTokens(s)
		d.AdminTokens = Secret(formatAdminTokens(m))
		return err
	}, true},
	{"webhook_secret", "COWBIRD_WEBHOOK_SECRET", "", func(d *Daemon, s string) error {
		d.WebhookSecret = Secret(s)
		return nil
	}, false},
	{"magpie_auth", "COWBIRD_MAGPIE_AUTH", "false", func(d *Daemon, s string) error {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("must be true or false, got %q", s)
		}
		d.MagpieAuth = b
		return nil
	}, false},
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("must be a duration such as 30s or 168h, got %q", s)
	}
	return d, nil
}

func parseInt(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("must be an integer, got %q", s)
	}
	return n, nil
}

// daemonNodes collects the keys of the cowbird: sections; the first file
// that sets a key wins.
type daemonNodes map[string]daemonValue

type daemonValue struct {
	node *yaml.Node
	file string
}

func (d *decoder) daemonSection(n *yaml.Node, into daemonNodes, log *logrus.Entry) {
	pairs, _ := d.mapping(n, "cowbird")
	for _, p := range pairs {
		known := false
		for _, k := range daemonKeys {
			known = known || k.name == p.key
		}
		switch _, dup := into[p.key]; {
		case !known:
			d.fail("cowbird."+p.key, "unknown key")
		case dup:
			log.WithFields(logrus.Fields{"key": p.key, "file": d.file}).Warn("duplicate cowbird key ignored")
		default:
			into[p.key] = daemonValue{p.val, d.file}
		}
	}
}

// resolveDaemon layers the defaults, the cowbird: sections and the
// environment, each winning over the one before. An empty environment
// variable counts as unset.
func resolveDaemon(nodes daemonNodes, lookup func(string) (string, bool)) (Daemon, Errors) {
	v := viper.New()
	file, env := map[string]any{}, map[string]any{}
	for _, k := range daemonKeys {
		v.SetDefault(k.name, origin{raw: k.def, path: "cowbird." + k.name})
		if e, ok := nodes[k.name]; ok {
			file[k.name] = k.fileValue(e)
		}
		if o, ok := envValue(lookup, k.env); ok {
			env[k.name] = o
		}
	}
	merge(v, file)
	merge(v, env)
	out := DefaultDaemon()
	var errs Errors
	for _, k := range daemonKeys {
		o := v.Get(k.name).(origin)
		errs = append(errs, fieldErrors(o.file, o.path, errors.Join(o.err, set(&out, k, o.raw)))...)
	}
	return out, errs
}

// fileValue reads k's value in a cowbird: section. A value of the wrong
// YAML type is reported and stands as the default; a mapping keeps its
// valid entries.
func (k daemonKey) fileValue(e daemonValue) origin {
	o := origin{file: e.file, path: "cowbird." + k.name}
	switch n := resolve(e.node); {
	case k.mapping:
		o.raw, o.err = mappingValue(n)
		if n.Kind != yaml.MappingNode {
			o.raw = k.def
		}
	case n.Kind != yaml.ScalarNode || n.Tag == "!!null":
		o.raw, o.err = k.def, errors.New("must be a scalar, got "+typeName(n))
	default:
		o.raw = n.Value
	}
	return o
}

// mappingValue turns a mapping of scalars into "k=v,k2=v2", leaving out
// and reporting the values that are not strings without ','. Values are
// never quoted in the messages.
func mappingValue(n *yaml.Node) (string, error) {
	if n.Kind != yaml.MappingNode {
		return "", fmt.Errorf("must be a mapping, got %s", typeName(n))
	}
	var items []string
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || strings.Contains(v.Value, ",") {
			errs = append(errs, fmt.Errorf("value of %q must be a string without ',', got %s", k.Value, typeName(v)))
			continue
		}
		items = append(items, k.Value+"="+v.Value)
	}
	return strings.Join(items, ","), errors.Join(errs...)
}

// fieldErrors reports err, one FieldError per joined error.
func fieldErrors(file, path string, err error) Errors {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out Errors
		for _, e := range j.Unwrap() {
			out = append(out, fieldErrors(file, path, e)...)
		}
		return out
	}
	if err == nil {
		return nil
	}
	return Errors{&FieldError{File: file, Path: path, Msg: err.Error()}}
}

// set applies one raw value, leaving d unchanged when it is invalid.
func set(d *Daemon, k daemonKey, raw string) error {
	tmp := *d
	if err := k.set(&tmp, raw); err != nil {
		return err
	}
	*d = tmp
	return nil
}

// validate checks value ranges.
func (d Daemon) validate() Errors {
	var errs Errors
	fail := func(key, msg string) { errs = append(errs, &FieldError{Path: "cowbird." + key, Msg: msg}) }
	if d.JournalRetention <= 0 {
		fail("journal_retention", "must be positive")
	}
	if d.JournalMaxEvents <= 0 {
		fail("journal_max_events", "must be positive")
	}
	if d.DispatchTimeout <= 0 {
		fail("dispatch_timeout", "must be positive")
	}
	if d.BodyLimit <= 0 {
		fail("body_limit", "must be positive")
	}
	if d.ReconcileInterval < 0 {
		fail("reconcile_interval", "must not be negative (0 turns it off)")
	}
	if d.URLPrefix != "" && (!strings.HasPrefix(d.URLPrefix, "/") || strings.HasSuffix(d.URLPrefix, "/")) {
		fail("url_prefix", fmt.Sprintf("must start with / and not end with /, got %q", d.URLPrefix))
	}
	return errs
}
