package session

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// A protocol message is a whole output line "<prefix>_<kind>: <payload>":
// the prefix is cowbird or openjd, then one space and a non-empty payload.
// Anything else, including near misses, is ordinary output.
var messageLine = regexp.MustCompile(`^(?:cowbird|openjd)_(progress|status|fail|env|unset_env|redacted_env): (.+)$`)

// message is one parsed protocol line.
type message struct {
	kind    string // progress, status, fail, env, unset_env or redacted_env
	payload string
}

// parseMessage reports whether line is a protocol message, and which.
func parseMessage(line string) (message, bool) {
	m := messageLine.FindStringSubmatch(line)
	if m == nil {
		return message{}, false
	}
	return message{kind: m[1], payload: m[2]}, true
}

// parseProgress parses a progress payload: a number from 0 to 100.
func parseProgress(payload string) (float64, error) {
	p, err := strconv.ParseFloat(payload, 64)
	if err != nil || math.IsNaN(p) || p < 0 || p > 100 {
		return 0, fmt.Errorf("progress %q: want a number from 0 to 100", payload)
	}
	return p, nil
}

// assignment is the payload of an env or redacted_env message.
type assignment struct {
	name, value string
	// escaped is the value as written in the JSON form ("" otherwise), so
	// the protocol line itself can be redacted.
	escaped string
}

// parseAssignment parses NAME=VALUE, or a JSON string holding NAME=VALUE
// (for values with newlines).
func parseAssignment(payload string) (assignment, error) {
	text := payload
	if strings.HasPrefix(payload, `"`) {
		if err := json.Unmarshal([]byte(payload), &text); err != nil {
			return assignment{}, fmt.Errorf("JSON assignment %s: %w", payload, err)
		}
	}
	name, value, ok := strings.Cut(text, "=")
	if !ok || !envName.MatchString(name) {
		return assignment{}, fmt.Errorf("assignment %q: want NAME=VALUE with NAME matching %s", text, envName)
	}
	a := assignment{name: name, value: value}
	if text != payload {
		_, a.escaped, _ = strings.Cut(strings.TrimSuffix(payload, `"`), "=")
	}
	return a, nil
}

// parseUnset parses the payload of an unset_env message.
func parseUnset(payload string) (string, error) {
	if !envName.MatchString(payload) {
		return "", fmt.Errorf("variable name %q: want a name matching %s", payload, envName)
	}
	return payload, nil
}

// mask replaces every redacted span.
const mask = "********"

// redactor masks registered secret values in output and log lines. A
// single-line value is masked wherever it occurs. For a multi-line value, its
// first and last lines are masked wherever they occur and its middle lines
// where they make up a whole line, since output is handled line by line.
// Overlapping and adjacent matches are merged into one mask.
type redactor struct {
	mu    sync.RWMutex
	subs  []string
	whole []string
}

// add registers a secret value; empty lines of it are ignored.
func (r *redactor) add(value string) {
	lines := strings.Split(value, "\n")
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, l := range lines {
		l = strings.TrimSuffix(l, "\r")
		switch {
		case l == "":
		case i == 0 || i == len(lines)-1:
			r.subs = append(r.subs, l)
		default:
			r.whole = append(r.whole, l)
		}
	}
}

// redact returns line with every registered value masked.
func (r *redactor) redact(line string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if slices.Contains(r.whole, line) {
		return mask
	}
	type span struct{ start, end int }
	var spans []span
	for _, s := range r.subs {
		for off := 0; ; {
			i := strings.Index(line[off:], s)
			if i < 0 {
				break
			}
			spans = append(spans, span{off + i, off + i + len(s)})
			off += i + 1
		}
	}
	if len(spans) == 0 {
		return line
	}
	slices.SortFunc(spans, func(a, b span) int { return a.start - b.start })
	var b strings.Builder
	last := 0
	for i := 0; i < len(spans); {
		cur := spans[i]
		for i++; i < len(spans) && spans[i].start <= cur.end; i++ {
			cur.end = max(cur.end, spans[i].end)
		}
		b.WriteString(line[last:cur.start])
		b.WriteString(mask)
		last = cur.end
	}
	b.WriteString(line[last:])
	return b.String()
}

// redactCommand masks a command line to be logged: the registered values,
// and everything after a redacted_env token, since the command prints a
// secret that is not registered yet.
func (r *redactor) redactCommand(line string) string {
	line = r.redact(line)
	for _, token := range []string{"cowbird_redacted_env:", "openjd_redacted_env:"} {
		if i := strings.Index(line, token); i >= 0 {
			line = line[:i+len(token)] + " " + mask
		}
	}
	return line
}
