package hooks

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/session"
)

// secretName matches the names of hook variables whose values are secret:
// the env setting's and the environments' variables named like
// QUOTA_PASSWORD, CHAT_SECRET_URL, GITHUB_TOKEN, S3_ACCESS_KEY or API_KEY.
// Their values are masked in everything the handler writes: log records,
// recorded output and statuses, and errors.
var secretName = regexp.MustCompile(`(?i)PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|APIKEY|(^|_)(KEY|PASS|AUTH)(_|$)`)

// IsSecretName reports whether a hook variable named name holds a secret.
func IsSecretName(name string) bool { return secretName.MatchString(name) }

// minSecret is the shortest value masked: shorter ones would mask
// everything and protect nothing.
const minSecret = 4

// masker replaces secret values with the session package's mask. It is
// safe for concurrent use: a run's values are added once its variables are
// resolved, while its records may already be flowing.
type masker struct {
	mu     sync.RWMutex
	values []string
}

// mask is what a secret value becomes, as session output shows it.
const mask = "********"

// add registers the values of vars whose names are secret. A multi-line
// value is registered line by line.
func (m *masker) add(vars map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, v := range vars {
		if !IsSecretName(name) {
			continue
		}
		for _, line := range strings.Split(v, "\n") {
			if line = strings.TrimSuffix(line, "\r"); len(line) >= minSecret && !slices.Contains(m.values, line) {
				m.values = append(m.values, line)
			}
		}
	}
	// Longest first: a secret that contains another is masked whole.
	slices.SortFunc(m.values, func(a, b string) int { return len(b) - len(a) })
}

// clone returns a masker with m's values, to add a run's own to.
func (m *masker) clone() *masker {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return &masker{values: slices.Clone(m.values)}
}

// str masks s.
func (m *masker) str(s string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, v := range m.values {
		s = strings.ReplaceAll(s, v, mask)
	}
	return s
}

// err masks err's message; errors.Is and errors.As still see err.
func (m *masker) err(err error) error {
	if err == nil {
		return nil
	}
	if msg := err.Error(); m.str(msg) != msg {
		return &maskedError{msg: m.str(msg), err: err}
	}
	return err
}

// result masks the messages and the error of r.
func (m *masker) result(r session.Result) session.Result {
	r.Actions = slices.Clone(r.Actions)
	for i := range r.Actions {
		r.Actions[i] = m.action(r.Actions[i])
	}
	r.Err = m.err(r.Err)
	return r
}

// action masks the messages of r.
func (m *masker) action(r session.ActionResult) session.ActionResult {
	r.StatusMessage, r.FailMessage = m.str(r.StatusMessage), m.str(r.FailMessage)
	return r
}

// maskedError is an error whose message had secrets in it.
type maskedError struct {
	msg string
	err error
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

// Transient keeps the wrapped error's answer, which errors.As would
// otherwise find through Unwrap anyway.
func (e *maskedError) Transient() bool {
	var t interface{ Transient() bool }
	return errors.As(e.err, &t) && t.Transient()
}

// log returns an entry that writes to base with m's secrets, including
// those added later, masked in the message and in every field.
func (m *masker) log(base *logrus.Entry) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetFormatter(discardFormatter{})
	l.SetLevel(base.Logger.GetLevel())
	l.AddHook(maskHook{base: base, m: m})
	return logrus.NewEntry(l)
}

// maskHook re-logs every record to base, masked.
type maskHook struct {
	base *logrus.Entry
	m    *masker
}

// Levels implements logrus.Hook.
func (maskHook) Levels() []logrus.Level { return logrus.AllLevels }

// Fire implements logrus.Hook.
func (h maskHook) Fire(e *logrus.Entry) error {
	fields := make(logrus.Fields, len(e.Data))
	for k, v := range e.Data {
		s := fmt.Sprint(v)
		if masked := h.m.str(s); masked != s {
			v = masked
		}
		fields[k] = v
	}
	h.base.WithFields(fields).WithTime(e.Time).Log(e.Level, h.m.str(e.Message))
	return nil
}

// discardFormatter formats nothing: the masking hook has written the record.
type discardFormatter struct{}

// Format implements logrus.Formatter.
func (discardFormatter) Format(*logrus.Entry) ([]byte, error) { return nil, nil }

// maskedRun masks what a Run is told.
type maskedRun struct {
	run Run
	m   *masker
}

// Progress implements Run.
func (r maskedRun) Progress(pct float64, status string) { r.run.Progress(pct, r.m.str(status)) }

// Log implements Run.
func (r maskedRun) Log(line string) { r.run.Log(r.m.str(line)) }

// Finish implements Run.
func (r maskedRun) Finish(err error) { r.run.Finish(r.m.err(err)) }
