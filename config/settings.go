package config

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Settings are the COWBIRD_* settings (cowbird.md §2.1). Each comes, first
// found wins, from the INI file named by COWBIRD_INI_FILE_PATH (section
// [app:cowbird_app], key COWBIRD_X or cowbird.x), then the environment
// variable COWBIRD_X, then the default. Empty values count as unset.
type Settings struct {
	// URL (COWBIRD_URL / cowbird.url) is Cowbird's public URL. Empty means
	// the caller derives http://localhost:<port> and warns.
	URL string
	// ConfigPath (COWBIRD_CONFIG_PATH / cowbird.config_path) is the YAML
	// config file or directory; empty when unset.
	ConfigPath string
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

// iniSection is the PasteDeploy section whose cowbird.* keys are settings.
const iniSection = "app:cowbird_app"

// LoadSettings resolves the settings from getenv (os.LookupEnv in
// production) and, when COWBIRD_INI_FILE_PATH is set, from that INI file,
// which must then exist. Every invalid value is reported, as Errors.
func LoadSettings(getenv func(string) (string, bool)) (Settings, error) {
	r := settingsReader{getenv: getenv}
	if p, ok := getenv("COWBIRD_INI_FILE_PATH"); ok && p != "" {
		ini, err := readINI(p)
		if errors.Is(err, fs.ErrNotExist) {
			return Settings{}, &FieldError{Path: "COWBIRD_INI_FILE_PATH",
				Msg: fmt.Sprintf("Cannot find INI configuration file [%s]", p)}
		}
		if err != nil {
			return Settings{}, &FieldError{Path: "COWBIRD_INI_FILE_PATH", Msg: err.Error()}
		}
		r.ini, r.iniFile = ini, filepath.Base(p)
	}
	s := Settings{
		URL:        r.str("COWBIRD_URL", ""),
		ConfigPath: r.str("COWBIRD_CONFIG_PATH", ""),
		SSLVerify:  r.boolean("COWBIRD_SSL_VERIFY", true),
		LogFormat:  r.str("COWBIRD_LOG_FORMAT", "text"),
		AdminUID:   r.id("COWBIRD_FILESYSTEM_ADMIN_UID", 0),
		AdminGID:   r.id("COWBIRD_FILESYSTEM_ADMIN_GID", 0),
		UserUID:    r.id("COWBIRD_FILESYSTEM_USER_UID", 1000),
		UserGID:    r.id("COWBIRD_FILESYSTEM_USER_GID", 1000),
	}
	if v, path, file, ok := r.get("COWBIRD_REQUEST_TIMEOUT"); !ok {
		s.RequestTimeout = 5 * time.Second
	} else if n, err := strconv.Atoi(v); err != nil || n <= 0 {
		r.fail(file, path, "must be a positive integer number of seconds, got %q", v)
	} else {
		s.RequestTimeout = time.Duration(n) * time.Second
	}
	level, path, file, ok := r.get("COWBIRD_LOG_LEVEL")
	if !ok {
		level, path, file = r.ini["logger_cowbird"]["level"], "[logger_cowbird] level", r.iniFile
	}
	if level == "" {
		level = "INFO"
	}
	var err error
	if s.LogLevel, err = parseLevel(level); err != nil {
		r.fail(file, path, "%v", err)
	}
	if s.LogFormat != "text" && s.LogFormat != "json" {
		_, path, file, _ := r.get("COWBIRD_LOG_FORMAT")
		r.fail(file, path, "must be text or json, got %q", s.LogFormat)
	}
	return s, r.errs.orNil()
}

// settingsReader looks settings up in the original's order.
type settingsReader struct {
	getenv  func(string) (string, bool)
	ini     map[string]map[string]string
	iniFile string
	errs    Errors
}

var nonWord = regexp.MustCompile(`\W`)

// get returns the first non-empty value for name and where it came from:
// INI key name, INI key cowbird.x, environment variable name.
func (r *settingsReader) get(name string) (val, path, file string, ok bool) {
	alt := nonWord.ReplaceAllString(strings.ToLower(name), "_")
	alt = "cowbird." + strings.TrimPrefix(alt, "cowbird_")
	for _, key := range []string{name, alt} {
		if v := strings.TrimSpace(r.ini[iniSection][key]); v != "" {
			return v, key, r.iniFile, true
		}
	}
	if v, found := r.getenv(name); found && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), name, "", true
	}
	return "", name, "", false
}

func (r *settingsReader) fail(file, path, format string, args ...any) {
	r.errs = append(r.errs, &FieldError{File: file, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (r *settingsReader) str(name, def string) string {
	if v, _, _, ok := r.get(name); ok {
		return v
	}
	return def
}

func (r *settingsReader) boolean(name string, def bool) bool {
	v, path, file, ok := r.get(name)
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "true", "1", "yes", "y", "on", "t":
		return true
	case "false", "0", "no", "n", "off", "f":
		return false
	}
	r.fail(file, path, "must be a boolean (true/false, 1/0, yes/no), got %q", v)
	return def
}

func (r *settingsReader) id(name string, def int) int {
	v, path, file, ok := r.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		r.fail(file, path, "must be a non-negative integer, got %q", v)
		return def
	}
	return n
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
