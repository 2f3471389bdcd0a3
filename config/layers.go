package config

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Layers resolves the daemon's settings from their sources, lowest first:
// the defaults, the environment, the INI file named by
// COWBIRD_INI_FILE_PATH (which wins over the environment, as in the
// original), then the serve command's flags given on the command line. Empty
// environment and INI values count as unset. A Layers is not safe for
// concurrent use.
type Layers struct {
	v      *viper.Viper
	lookup func(string) (string, bool)
}

// serveFlags are the serve command's flags and the settings they set.
var serveFlags = []struct{ name, key, def, usage string }{
	{"config", "config_path", "", "YAML config file or directory (default $COWBIRD_CONFIG_PATH)"},
	{"addr", "addr", ":7000", "listen address"},
	{"data-dir", "data_dir", "./data", "directory of the state database (created if absent)"},
}

// NewLayers returns the layers of the settings, reading the environment
// through lookup (os.LookupEnv in production).
func NewLayers(lookup func(string) (string, bool)) *Layers {
	v := viper.New()
	for _, k := range settingKeys {
		v.SetDefault(k.key, origin{raw: k.def, path: k.env})
	}
	for _, f := range serveFlags {
		if !v.IsSet(f.key) {
			v.SetDefault(f.key, origin{raw: f.def, path: "--" + f.name})
		}
	}
	return &Layers{v: v, lookup: lookup}
}

// BindServeFlags defines the serve command's flags --config, --addr and
// --data-dir on fs. A flag given on the command line wins over every other
// source; one left out changes nothing.
func (l *Layers) BindServeFlags(fs *pflag.FlagSet) {
	for _, f := range serveFlags {
		fs.String(f.name, f.def, f.usage)
		_ = l.v.BindPFlag(f.key, fs.Lookup(f.name)) // fails only for a nil flag
	}
}

// Settings resolves the settings; every invalid value is reported, as
// Errors naming the variable, INI key or flag it came from.
func (l *Layers) Settings() (Settings, error) {
	env := map[string]any{}
	for _, k := range settingKeys {
		if o, ok := envValue(l.lookup, k.env); ok {
			env[k.key] = o
		}
	}
	merge(l.v, env)
	if p, ok := l.lookup("COWBIRD_INI_FILE_PATH"); ok && p != "" {
		ini, err := readINI(p)
		if errors.Is(err, fs.ErrNotExist) {
			return Settings{}, &FieldError{Path: "COWBIRD_INI_FILE_PATH",
				Msg: fmt.Sprintf("Cannot find INI configuration file [%s]", p)}
		}
		if err != nil {
			return Settings{}, &FieldError{Path: "COWBIRD_INI_FILE_PATH", Msg: err.Error()}
		}
		file := filepath.Base(p)
		if lvl := strings.TrimSpace(ini["logger_cowbird"]["level"]); lvl != "" {
			l.v.SetDefault("log_level", origin{raw: lvl, file: file, path: "[logger_cowbird] level"})
		}
		merge(l.v, iniValues(ini[iniSection], file)) // over the environment
	}
	return l.settings()
}

// get returns the value viper picked for key. A flag given on the command
// line comes as its string.
func (l *Layers) get(key string) origin {
	switch v := l.v.Get(key).(type) {
	case origin:
		return v
	case string:
		for _, f := range serveFlags {
			if f.key == key {
				return origin{raw: v, path: "--" + f.name}
			}
		}
		return origin{raw: v, path: key}
	}
	return origin{path: key}
}

// origin is a raw value and where it came from. The layers hold origins, so
// the value viper picks still names its source in error messages.
type origin struct {
	raw string
	// file is the base name of the file the value came from; empty for the
	// environment, the flags and the defaults.
	file string
	// path is the key path, the variable or the flag.
	path string
	// err is a problem reading the value from its file; raw then holds what
	// could be read (the valid entries of a mapping) or the default.
	err error
}

// envValue reads the variable name through lookup, trimmed; empty counts as
// unset.
func envValue(lookup func(string) (string, bool), name string) (origin, bool) {
	v, ok := lookup(name)
	v = strings.TrimSpace(v)
	return origin{raw: v, path: name}, ok && v != ""
}

// merge lays the source m over viper's config layer: a key of m wins over
// the same key merged before.
func merge(v *viper.Viper, m map[string]any) {
	_ = v.MergeConfigMap(m) // never fails
}
