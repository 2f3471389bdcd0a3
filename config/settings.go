package config

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Settings are the COWBIRD_* settings (cowbird.md §2.1) and the serve
// command's flags. Each setting comes, first found wins, from a flag given
// on the command line, the INI file named by COWBIRD_INI_FILE_PATH (section
// [app:cowbird_app], key COWBIRD_X or cowbird.x), the environment variable
// COWBIRD_X, then the default. Empty values count as unset.
type Settings struct {
	// URL (COWBIRD_URL / cowbird.url) is Cowbird's public URL. Empty means
	// the caller derives http://localhost:<port> and warns.
	URL string
	// ConfigPath (--config, COWBIRD_CONFIG_PATH / cowbird.config_path) is
	// the YAML config file or directory; empty when unset.
	ConfigPath string
	// Addr (--addr, default ":7000") is the listen address.
	Addr string
	// DataDir (--data-dir, default "./data") is the directory of the state
	// database.
	DataDir string
	// SSLVerify (COWBIRD_SSL_VERIFY / cowbird.ssl_verify, default true)
	// enables TLS verification of outbound calls.
	SSLVerify bool
	// RequestTimeout (COWBIRD_REQUEST_TIMEOUT / cowbird.request_timeout,
	// integer seconds, default 5) bounds every outbound HTTP request.
	RequestTimeout time.Duration
	// LogLevel (COWBIRD_LOG_LEVEL / cowbird.log_level) defaults to the INI's
	// [logger_cowbird] level, else info.
	LogLevel logrus.Level
	// LogFormat (COWBIRD_LOG_FORMAT / cowbird.log_format, "text" or "json",
	// default text) is our addition.
	LogFormat string
	// AdminUID and AdminGID (COWBIRD_FILESYSTEM_ADMIN_UID/_GID, default 0)
	// own the files cowbird manages.
	AdminUID, AdminGID int
	// UserUID and UserGID (COWBIRD_FILESYSTEM_USER_UID/_GID, default 1000)
	// are the users' uid and gid.
	UserUID, UserGID int
}

// settingKeys are the COWBIRD_* settings: the variable, the key in the
// layers (the INI's alternate name is "cowbird." and the key) and the
// default.
var settingKeys = []struct{ env, key, def string }{
	{"COWBIRD_URL", "url", ""},
	{"COWBIRD_CONFIG_PATH", "config_path", ""},
	{"COWBIRD_SSL_VERIFY", "ssl_verify", "true"},
	{"COWBIRD_REQUEST_TIMEOUT", "request_timeout", "5"},
	{"COWBIRD_LOG_LEVEL", "log_level", "INFO"},
	{"COWBIRD_LOG_FORMAT", "log_format", "text"},
	{"COWBIRD_FILESYSTEM_ADMIN_UID", "filesystem_admin_uid", "0"},
	{"COWBIRD_FILESYSTEM_ADMIN_GID", "filesystem_admin_gid", "0"},
	{"COWBIRD_FILESYSTEM_USER_UID", "filesystem_user_uid", "1000"},
	{"COWBIRD_FILESYSTEM_USER_GID", "filesystem_user_gid", "1000"},
}

// iniSection is the PasteDeploy section whose cowbird.* keys are settings.
const iniSection = "app:cowbird_app"

// LoadSettings resolves the settings without flags from getenv
// (os.LookupEnv in production) and, when COWBIRD_INI_FILE_PATH is set, from
// that INI file, which must then exist. Every invalid value is reported, as
// Errors.
func LoadSettings(getenv func(string) (string, bool)) (Settings, error) {
	return NewLayers(getenv).Settings()
}

// iniValues is the INI's layer: for each setting, the first non-empty of
// the keys COWBIRD_X and cowbird.x of the section.
func iniValues(section map[string]string, file string) map[string]any {
	out := map[string]any{}
	for _, k := range settingKeys {
		for _, name := range []string{k.env, "cowbird." + k.key} {
			if v := strings.TrimSpace(section[name]); v != "" {
				out[k.key] = origin{raw: v, file: file, path: name}
				break
			}
		}
	}
	return out
}

// settings converts the values the layers picked.
func (l *Layers) settings() (Settings, error) {
	var errs Errors
	s := Settings{
		URL:            l.get("url").raw,
		ConfigPath:     l.get("config_path").raw,
		Addr:           l.get("addr").raw,
		DataDir:        l.get("data_dir").raw,
		SSLVerify:      parsed(l, &errs, "ssl_verify", parseBool),
		AdminUID:       parsed(l, &errs, "filesystem_admin_uid", parseID),
		AdminGID:       parsed(l, &errs, "filesystem_admin_gid", parseID),
		UserUID:        parsed(l, &errs, "filesystem_user_uid", parseID),
		UserGID:        parsed(l, &errs, "filesystem_user_gid", parseID),
		RequestTimeout: parsed(l, &errs, "request_timeout", parseSeconds),
		LogLevel:       parsed(l, &errs, "log_level", parseLevel),
		LogFormat:      parsed(l, &errs, "log_format", parseLogFormat),
	}
	if len(errs) > 0 {
		return Settings{}, errs
	}
	return s, nil
}

// parsed parses the value picked for key, reporting a problem under the
// variable, INI key or flag the value came from.
func parsed[T any](l *Layers, errs *Errors, key string, parse func(string) (T, error)) T {
	o := l.get(key)
	v, err := parse(o.raw)
	if err != nil {
		*errs = append(*errs, &FieldError{File: o.file, Path: o.path, Msg: err.Error()})
	}
	return v
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "1", "yes", "y", "on", "t":
		return true, nil
	case "false", "0", "no", "n", "off", "f":
		return false, nil
	}
	return false, fmt.Errorf("must be a boolean (true/false, 1/0, yes/no), got %q", s)
}

func parseID(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("must be a non-negative integer, got %q", s)
	}
	return n, nil
}

func parseSeconds(s string) (time.Duration, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("must be a positive integer number of seconds, got %q", s)
	}
	return time.Duration(n) * time.Second, nil
}

func parseLogFormat(s string) (string, error) {
	if s != "text" && s != "json" {
		return "", fmt.Errorf("must be text or json, got %q", s)
	}
	return s, nil
}

// parseLevel reads a Python logging level name or number.
func parseLevel(s string) (logrus.Level, error) {
	switch strings.ToLower(s) {
	case "critical", "fatal", "50":
		return logrus.FatalLevel, nil
	case "error", "40":
		return logrus.ErrorLevel, nil
	case "warning", "warn", "30":
		return logrus.WarnLevel, nil
	case "info", "20":
		return logrus.InfoLevel, nil
	case "debug", "notset", "10", "0":
		return logrus.DebugLevel, nil
	case "trace":
		return logrus.TraceLevel, nil
	}
	return 0, fmt.Errorf("must be a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL), got %q", s)
}

// readINI parses a PasteDeploy INI file as Python's ConfigParser does for
// what cowbird reads: [sections], "key = value" or "key: value" with keys
// kept as written, indented continuation lines, whole-line # and ;
// comments. %(name)s interpolation is not performed.
func readINI(path string) (map[string]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]map[string]string{}
	var section, lastKey string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			continue
		case raw[0] == ' ' || raw[0] == '\t':
			if lastKey != "" {
				out[section][lastKey] += "\n" + line
			}
			continue
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section, lastKey = strings.TrimSpace(line[1:len(line)-1]), ""
			if out[section] == nil {
				out[section] = map[string]string{}
			}
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 || section == "" {
			return nil, fmt.Errorf("parse ini %s: line %q is not key = value in a section", path, line)
		}
		lastKey = strings.TrimSpace(line[:i])
		out[section][lastKey] = strings.TrimSpace(line[i+1:])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read ini %s: %w", path, err)
	}
	return out, nil
}
