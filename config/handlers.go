package config

import (
	"slices"

	"github.com/sirupsen/logrus"
	"gopkg.in/yaml.v3"
)

// HandlerConfig is one entry of the handlers section.
type HandlerConfig struct {
	// Name is the handler's key, one of the known handler kinds.
	Name string
	// Active handlers are instantiated and dispatched to (key active,
	// default false).
	Active bool
	// Priority orders handlers, lower first; nil when unset (runs last).
	Priority *int
	// URL is the key url (optional for every handler).
	URL string
	// WorkspaceDir is the key workspace_dir (optional for every handler).
	WorkspaceDir string
	// File is the base name of the config file the entry came from.
	File string
	// Settings holds the handler's own keys as its kind's Decode built them
	// (a pointer to the handler package's config type); nil for a kind
	// without keys of its own.
	Settings any

	validate func(HandlerConfig) Errors
}

// HandlerKind tells Load how to read the entry of one known handler. The
// keys every handler has (active, priority, url, workspace_dir) are read by
// Load itself.
type HandlerKind struct {
	// Name is the handler's key in the handlers section.
	Name string
	// Decode reads the handler's own keys through s and returns its
	// settings; nil when the handler has none. A key it does not read is
	// warned about and ignored.
	Decode func(s *Section) any
	// Validate reports what an active handler lacks (HandlerConfig.Require
	// helps); nil when nothing is required.
	Validate func(hc HandlerConfig) Errors
}

// Require reports, with the original's message, each key whose value is
// empty; kv alternates keys and their values.
func (hc HandlerConfig) Require(kv ...string) Errors {
	var errs Errors
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			errs = append(errs, hc.Problem(kv[i],
				hc.Name+" handler requires the following missing configuration parameter : ["+kv[i]+"]"))
		}
	}
	return errs
}

// Problem is a problem of the entry's key (of the entry itself when key is
// empty), located in the entry's file.
func (hc HandlerConfig) Problem(key, msg string) *FieldError {
	path := "handlers." + hc.Name
	if key != "" {
		path += "." + key
	}
	return &FieldError{File: hc.File, Path: path, Msg: msg}
}

// Section reads one handler entry's own keys; every problem is recorded
// with its key path (handlers.<Name>.<key>).
type Section struct {
	d     *decoder
	name  string
	vals  map[string]*yaml.Node
	read  map[string]bool
	got   map[string]string // scalar values already decoded
	order []string          // keys in the order first read
	log   *logrus.Entry
	scope string // handlers.<Name>
}

// Name is the handler's key.
func (s *Section) Name() string { return s.name }

// Log is the logger for warnings about the entry.
func (s *Section) Log() *logrus.Entry { return s.log }

// node returns the value of key and marks the key read.
func (s *Section) node(key string) (*yaml.Node, bool) {
	if !s.read[key] {
		s.order = append(s.order, key)
	}
	s.read[key] = true
	n, ok := s.vals[key]
	return n, ok
}

// String is the string value of key; "" when absent.
func (s *Section) String(key string) string { return s.scalar(key, s.d.str) }

// NonEmpty is the value of key, which must be a non-empty string when
// given; "" when absent.
func (s *Section) NonEmpty(key string) string { return s.scalar(key, s.d.nonEmpty) }

// Text is any scalar value of key as written (credentials may be
// numbers); "" when absent or null (an unset variable in a template).
func (s *Section) Text(key string) string {
	return s.scalar(key, func(n *yaml.Node, path string) (string, bool) {
		if n := resolve(n); n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return "", true
		}
		return s.d.text(n, path)
	})
}

// scalar decodes key's value once with get; a key read again (a common key
// a kind also reads) gives the same value without a second report.
func (s *Section) scalar(key string, get func(*yaml.Node, string) (string, bool)) string {
	if v, ok := s.got[key]; ok {
		return v
	}
	n, ok := s.node(key)
	if !ok {
		return ""
	}
	v, _ := get(n, join(s.scope, key))
	s.got[key] = v
	return v
}

// Fail records a problem of key's value.
func (s *Section) Fail(key, format string, args ...any) {
	s.d.fail(join(s.scope, key), format, args...)
}

// handler decodes one handler entry with its kind. Type problems are
// recorded in d; keys the kind does not read are warned about.
func (d *decoder) handler(kind HandlerKind, n *yaml.Node, log *logrus.Entry) HandlerConfig {
	s := &Section{d: d, name: kind.Name, scope: "handlers." + kind.Name, vals: map[string]*yaml.Node{},
		read: map[string]bool{}, got: map[string]string{}, log: log.WithField("handler", kind.Name)}
	pairs, _ := d.mapping(n, s.scope)
	var keys []string
	for _, p := range pairs {
		s.vals[p.key] = p.val
		keys = append(keys, p.key)
	}
	h := HandlerConfig{Name: kind.Name, File: d.file, validate: kind.Validate}
	if n, ok := s.node("active"); ok {
		h.Active, _ = d.boolean(n, join(s.scope, "active"))
	}
	if n, ok := s.node("priority"); ok {
		if v, ok := d.integer(n, join(s.scope, "priority")); ok {
			h.Priority = &v
		}
	}
	if !h.Active {
		// An inactive handler is checked for its shape only: its values
		// (an empty credential from an unset variable, say) do not matter.
		s.d = &decoder{file: d.file}
	}
	h.URL, h.WorkspaceDir = s.String("url"), s.String("workspace_dir")
	if kind.Decode != nil {
		h.Settings = kind.Decode(s)
	}
	for _, k := range keys {
		if s.read[k] {
			continue
		}
		if schemaNonEmpty[k] {
			s.d.nonEmpty(s.vals[k], join(s.scope, k))
		}
		s.log.WithFields(logrus.Fields{"key": k, "file": d.file}).Warn("unknown handler key ignored")
	}
	return h
}

// schemaNonEmpty are the keys the original's schema requires to be
// non-empty strings in every handler entry that has them, even one that
// does not read them.
var schemaNonEmpty = map[string]bool{
	"jupyterhub_user_data_dir": true, "wps_outputs_dir": true, "secure_data_proxy_name": true,
	"wps_outputs_res_name": true, "notebooks_dir_name": true, "public_workspace_wps_outputs_subpath": true,
	"public_workspace_wps_outputs_subdir": true, "user_wps_outputs_dir_name": true,
}

// validateHandlers checks the required parameters of the active handlers
// (cowbird.md §2.4).
func validateHandlers(hs []HandlerConfig) Errors {
	var errs Errors
	for _, h := range hs {
		if h.Active && h.validate != nil {
			errs = append(errs, h.validate(h)...)
		}
	}
	return errs
}

// Or returns v, or def when v is empty.
func Or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Keys lists the keys an entry of the kind reads: the common ones, then
// its own in the order its Decode reads them.
func (k HandlerKind) Keys() []string {
	s := &Section{d: &decoder{}, name: k.Name, scope: "handlers." + k.Name, vals: map[string]*yaml.Node{},
		read: map[string]bool{}, got: map[string]string{}, log: logrus.NewEntry(logrus.New())}
	keys := []string{"active", "priority", "url", "workspace_dir"}
	if k.Decode != nil {
		k.Decode(s)
	}
	for _, key := range s.order {
		if !slices.Contains(keys, key) {
			keys = append(keys, key)
		}
	}
	return keys
}

// SettingsOf returns the entry's settings as its kind's Decode built them
// (a *T), or the zero T for an entry built in code.
func SettingsOf[T any](hc HandlerConfig) T {
	if p, ok := hc.Settings.(*T); ok && p != nil {
		return *p
	}
	var zero T
	return zero
}

// Credentials are the keys admin_user and admin_password of an entry
// (Magpie, Geoserver).
type Credentials struct {
	// AdminUser (admin_user) is the admin user.
	AdminUser string
	// AdminPassword (admin_password) is its password, never printed.
	AdminPassword Secret
}

// Credentials reads admin_user and admin_password (any scalar as written:
// a password may look like a number).
func (s *Section) Credentials() *Credentials {
	return &Credentials{AdminUser: s.Text("admin_user"), AdminPassword: Secret(s.Text("admin_password"))}
}

// Fields are the credentials for `handlers info`, the password masked.
func (c Credentials) Fields() [][2]string {
	return [][2]string{{"admin_user", c.AdminUser}, {"admin_password", c.AdminPassword.String()}}
}
