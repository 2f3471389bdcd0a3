// Package config loads cowbird's YAML configuration (the original's
// handlers and sync_permissions sections plus our cowbird: section) into
// typed structs, and resolves the COWBIRD_* settings.
//
// Loading follows the original (cowbird.md §2): a file or a directory of
// .cfg/.yml/.yaml/.json files read in name order, $VAR and ${VAR} expanded
// in every key and string with undefined variables left as written, handler
// order taken from the files, the first definition of a handler winning.
// Validate reports every problem with its key path.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"
	"gopkg.in/yaml.v3"
)

// Config is a loaded configuration.
type Config struct {
	// Handlers are the known handlers in config-file order (not priority
	// order); unknown names are warned about and left out.
	Handlers []HandlerConfig
	// SyncPoints are the sync_permissions entries of every file, in order.
	SyncPoints []SyncPoint
	// Daemon holds the cowbird: section with its environment overrides.
	Daemon Daemon
	// Hooks holds the hooks: section; nil when no file has one.
	Hooks *Hooks
}

// configExts are the file name endings read from a config directory.
var configExts = []string{".cfg", ".yml", ".yaml", ".json"}

// Load reads the configuration at path, a file or a directory. A path that
// does not exist gives an empty configuration and warnings, as in the
// original. Problems in the files are returned together as Errors; I/O and
// YAML syntax errors are returned as they come.
//
// kinds are the handlers this build knows: an entry of another name is
// warned about and left out.
func Load(path string, log *logrus.Entry, kinds []HandlerKind) (*Config, error) {
	return load(path, log, kinds, os.LookupEnv)
}

func load(path string, log *logrus.Entry, kinds []HandlerKind, lookup func(string) (string, bool)) (*Config, error) {
	files, err := configFiles(path)
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	if len(files) == 0 {
		log.WithField("path", path).Warn("No handlers configuration found")
		log.WithField("path", path).Warn("No permission mapping configuration found")
	}
	l := loader{log: log, exp: newExpander(lookup), seen: map[string]bool{}, daemon: daemonNodes{}, kinds: kinds,
		hooks: hooksNodes{nodes: map[string]hooksValue{}}}
	for _, f := range files {
		if err := l.file(f); err != nil {
			return nil, fmt.Errorf("load config %s: %w", f, err)
		}
	}
	if refs := l.exp.undefinedRefs(); len(refs) > 0 {
		log.WithField("variables", strings.Join(refs, ", ")).
			Warn("undefined environment variables left as written in the config")
	}
	daemon, errs := resolveDaemon(l.daemon, lookup)
	l.cfg.Daemon = daemon
	errs = append(l.errs, errs...)
	var herrs Errors
	l.cfg.Hooks, herrs = resolveHooks(l.hooks)
	errs = append(errs, herrs...)
	reported := map[string]bool{}
	for _, e := range errs {
		reported[e.File+":"+e.Path] = true
	}
	for _, e := range l.cfg.validate() {
		if !reported[e.File+":"+e.Path] { // not already reported as a type problem
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &l.cfg, nil
}

// configFiles lists the files to read: path itself, the config files of a
// directory in name order, or none when path does not exist.
func configFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path) // sorted by name
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		for _, ext := range configExts {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ext) {
				out = append(out, filepath.Join(path, e.Name()))
				break
			}
		}
	}
	return out, nil
}

// loader merges the files of one Load.
type loader struct {
	log    *logrus.Entry
	exp    *expander
	cfg    Config
	errs   Errors
	seen   map[string]bool // handler names already defined
	daemon daemonNodes
	hooks  hooksNodes
	kinds  []HandlerKind
}

func (l *loader) file(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.log.WithField("file", path).Warn("empty config file")
			return nil
		}
		return fmt.Errorf("parse yaml: %w", err)
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return errors.New("parse yaml: more than one document")
	}
	d := &decoder{file: filepath.Base(path)}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("top level must be a mapping, got %s", typeName(root))
	}
	sections := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		sections[resolve(root.Content[i]).Value] = root.Content[i+1]
	}
	for _, name := range []string{"handlers", "sync_permissions", "cowbird", "hooks"} {
		n := sections[name]
		if n == nil {
			if name != "cowbird" && name != "hooks" {
				l.log.WithField("file", path).Warn("Config file section [" + name + "] not found.")
			}
			continue
		}
		d.prepare(n, name, l.exp, map[*yaml.Node]bool{})
		if r := resolve(n); r.Tag == "!!null" || (r.Kind == yaml.MappingNode && len(r.Content) == 0) {
			l.log.WithField("file", path).Warn("Config file section [" + name + "] is empty.")
			continue
		}
		switch name {
		case "handlers":
			l.handlers(d, n)
		case "sync_permissions":
			pairs, _ := d.mapping(n, name)
			for _, p := range pairs {
				l.cfg.SyncPoints = append(l.cfg.SyncPoints, d.syncPoint(p.key, p.val))
			}
		case "cowbird":
			d.daemonSection(n, l.daemon, l.log)
		case "hooks":
			d.hooksSection(n, &l.hooks, l.log)
		}
	}
	l.errs = append(l.errs, d.errs...)
	return nil
}

func (l *loader) handlers(d *decoder, n *yaml.Node) {
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	pairs, _ := d.mapping(n, "handlers")
	for _, p := range pairs {
		log := l.log.WithFields(logrus.Fields{"handler": p.key, "file": d.file})
		kind := HandlerKind{Name: p.key}
		i := slices.IndexFunc(l.kinds, func(k HandlerKind) bool { return k.Name == p.key })
		if i >= 0 {
			kind = l.kinds[i]
		}
		switch {
		case i < 0:
			log.Warn("unknown handler name; it is never instantiated")
		case l.seen[p.key]:
			log.Warn("handler already defined in an earlier file; this definition is ignored")
		default:
			l.seen[p.key] = true
			l.cfg.Handlers = append(l.cfg.Handlers, d.handler(kind, p.val, l.log))
			continue
		}
		d.handler(kind, p.val, logrus.NewEntry(quiet)) // type-checked all the same, as the original's schema does
	}
}

// Handler returns the handler configured under name.
func (c *Config) Handler(name string) (HandlerConfig, bool) {
	for _, h := range c.Handlers {
		if h.Name == name {
			return h, true
		}
	}
	return HandlerConfig{}, false
}

// ServiceTypes returns the Magpie service types used by every sync point,
// sorted and without duplicates, for the Magpie handler to check against
// Magpie's GET /services/types.
func (c *Config) ServiceTypes() []string {
	set := map[string]bool{}
	for _, sp := range c.SyncPoints {
		for _, svc := range sp.Services {
			set[svc.Type] = true
		}
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Validate reports every problem of a configuration: the required
// parameters of active handlers (of a loaded configuration: a handler entry
// built in code has no kind to check it), the sync_permissions semantics
// and the cowbird: value ranges. The result is nil or Errors.
func (c *Config) Validate() error {
	return c.validate().orNil()
}

func (c *Config) validate() Errors {
	errs := validateHandlers(c.Handlers)
	for _, sp := range c.SyncPoints {
		errs = append(errs, sp.validate()...)
	}
	return append(errs, c.Daemon.validate()...)
}
