package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
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
}

// DefaultDaemon returns the defaults of the cowbird: section.
func DefaultDaemon() Daemon {
	return Daemon{
		JournalRetention: 168 * time.Hour,
		JournalMaxEvents: 100000,
		DispatchTimeout:  30 * time.Second,
		BodyLimit:        1 << 20,
		URLPrefix:        "/cowbird",
	}
}

// daemonKey describes one key of the cowbird: section.
type daemonKey struct {
	name, env string
	set       func(d *Daemon, raw string) error
}

var daemonKeys = []daemonKey{
	{"journal_retention", "COWBIRD_JOURNAL_RETENTION", func(d *Daemon, s string) (err error) {
		d.JournalRetention, err = parseDuration(s)
		return err
	}},
	{"journal_max_events", "COWBIRD_JOURNAL_MAX_EVENTS", func(d *Daemon, s string) (err error) {
		d.JournalMaxEvents, err = parseInt(s)
		return err
	}},
	{"dispatch_timeout", "COWBIRD_DISPATCH_TIMEOUT", func(d *Daemon, s string) (err error) {
		d.DispatchTimeout, err = parseDuration(s)
		return err
	}},
	{"body_limit", "COWBIRD_BODY_LIMIT", func(d *Daemon, s string) error {
		n, err := parseInt(s)
		d.BodyLimit = int64(n)
		return err
	}},
	{"url_prefix", "COWBIRD_URL_PREFIX", func(d *Daemon, s string) error {
		d.URLPrefix = s
		return nil
	}},
	{"reconcile_interval", "COWBIRD_RECONCILE_INTERVAL", func(d *Daemon, s string) (err error) {
		d.ReconcileInterval, err = parseDuration(s)
		return err
	}},
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

// resolveDaemon applies environment, then file values, then defaults. An
// empty environment variable counts as unset.
func resolveDaemon(nodes daemonNodes, lookup func(string) (string, bool)) (Daemon, Errors) {
	out := DefaultDaemon()
	var errs Errors
	for _, k := range daemonKeys {
		if v, ok := lookup(k.env); ok && strings.TrimSpace(v) != "" {
			if err := set(&out, k, strings.TrimSpace(v)); err != nil {
				errs = append(errs, &FieldError{Path: k.env, Msg: err.Error()})
			}
			continue
		}
		e, ok := nodes[k.name]
		if !ok {
			continue
		}
		n := resolve(e.node)
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			errs = append(errs, &FieldError{File: e.file, Path: "cowbird." + k.name, Msg: "must be a scalar, got " + typeName(n)})
			continue
		}
		if err := set(&out, k, n.Value); err != nil {
			errs = append(errs, &FieldError{File: e.file, Path: "cowbird." + k.name, Msg: err.Error()})
		}
	}
	return out, errs
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
