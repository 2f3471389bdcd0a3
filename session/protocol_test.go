package session

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseMessage(t *testing.T) {
	tests := []struct {
		line          string
		kind, payload string // kind "" = not a message
	}{
		{"cowbird_status: hello world", "status", "hello world"},
		{"openjd_progress: 12.5", "progress", "12.5"},
		{"cowbird_fail: x", "fail", "x"},
		{"cowbird_env: A=1", "env", "A=1"},
		{"openjd_unset_env: A", "unset_env", "A"},
		{"cowbird_redacted_env: A=s", "redacted_env", "A=s"},
		{"cowbird_status:  two spaces", "status", " two spaces"},
		{"cowbird_status:hello", "", ""},   // missing space
		{"COWBIRD_STATUS: hello", "", ""},  // upper case
		{"cowbird_status: ", "", ""},       // empty payload
		{" cowbird_status: x", "", ""},     // not at column 0
		{"cowbird_environment: x", "", ""}, // unknown: plain output
		{"cowbird_envx: A=1", "", ""},      // near miss: plain output
		{"openjd_session_runtime_loglevel: DEBUG", "", ""},
	}
	for _, tt := range tests {
		m, ok := parseMessage(tt.line)
		if ok != (tt.kind != "") || m.kind != tt.kind || m.payload != tt.payload {
			t.Errorf("parseMessage(%q) = %+v, %v; want %q %q", tt.line, m, ok, tt.kind, tt.payload)
		}
	}
}

func TestParseProgress(t *testing.T) {
	for in, want := range map[string]float64{"0": 0, "50": 50, "100": 100, "12.5": 12.5} {
		if got, err := parseProgress(in); err != nil || got != want {
			t.Errorf("parseProgress(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "100.5", "abc", "NaN", "50%"} {
		if _, err := parseProgress(in); err == nil {
			t.Errorf("parseProgress(%q): want an error", in)
		}
	}
}

func TestParseAssignment(t *testing.T) {
	tests := []struct {
		payload              string
		name, value, escaped string
		err                  bool
	}{
		{payload: "A=1", name: "A", value: "1"},
		{payload: "A=", name: "A", value: ""},
		{payload: "A=b=c", name: "A", value: "b=c"},
		{payload: `"M=line1\nline2"`, name: "M", value: "line1\nline2", escaped: `line1\nline2`},
		{payload: "1A=x", err: true},
		{payload: "A", err: true},
		{payload: "=x", err: true},
		{payload: `"A=unterminated`, err: true},
		{payload: `"NOEQUALS"`, err: true},
	}
	for _, tt := range tests {
		a, err := parseAssignment(tt.payload)
		if (err != nil) != tt.err || a.name != tt.name || a.value != tt.value || a.escaped != tt.escaped {
			t.Errorf("parseAssignment(%q) = %+v, %v", tt.payload, a, err)
		}
	}
}

func TestRedactor(t *testing.T) {
	var r redactor
	r.add("abcd")
	r.add("cdef")
	r.add("first\nmid\nlast")
	r.add("")
	tests := map[string]string{
		"nothing here":  "nothing here",
		"xxabcdefyy":    "xx********yy",          // overlap merged
		"abcd and abcd": "******** and ********", // every occurrence
		"mid":           "********",              // middle line: whole-line match
		"a mid b":       "a mid b",               // not a whole line
		"key: first":    "key: ********",         // first line: substring
		"last of it":    "******** of it",        // last line: substring
		"abcdabcd":      "********",              // adjacent matches merged
		"":              "",
	}
	for in, want := range tests {
		if got := r.redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvironmentComposition(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.BaseEnv = []string{"PATH=/usr/bin:/bin", "BASE=base", "OVER=base", "GONE=base"}
		o.Vars = map[string]string{"EVENT": "user_created", "OVER": "vars"}
	})
	onEnter := sh(`[ "$AV" = a ] && [ -z "$SET" ] || exit 9
echo 'cowbird_env: SET=1'
echo 'cowbird_env: B=2'
echo 'cowbird_unset_env: B'
echo 'cowbird_env: B=3'
echo 'cowbird_unset_env: GONE'
printf '%s\n' 'cowbird_env: "M=line1\nline2"'
echo 'openjd_env: ALIAS=yes'
echo 'cowbird_env: OVER=a-stdout'`)
	checkResult(t, h.enter(Environment{Name: "a", Variables: map[string]string{"AV": "a", "OVER": "a"}, OnEnter: onEnter}), ActionSuccess, intp(0))
	checkResult(t, h.enter(Environment{Name: "b", Variables: map[string]string{"OVER": "b"}}), ActionSuccess, nil)
	checkResult(t, h.task(sh("echo 'cowbird_env: TASKVAR=1'")), ActionSuccess, intp(0))
	if !strings.Contains(h.logText(), "env messages are honored in onEnter only") {
		t.Error("an env message in a task was not reported as ignored")
	}
	h.output()

	checkResult(t, h.task(&Action{Command: "env"}), ActionSuccess, intp(0))
	want := []string{
		"ALIAS=yes", "AV=a", "BASE=base", "COWBIRD_SESSION_DIR=" + h.s.Dir(), "EVENT=user_created",
		"M=line1", "line2", "OVER=b", "PATH=/usr/bin:/bin", "SET=1",
	}
	if got := h.output(); !slices.Equal(got, want) {
		t.Errorf("task environment =\n%q\nwant\n%q", got, want)
	}
}

func TestMalformedEnvMessage(t *testing.T) {
	for _, line := range []string{"cowbird_env: 1BAD=x", "cowbird_env: NOEQUALS", "openjd_unset_env: A B", `cowbird_redacted_env: "X`} {
		t.Run(line, func(t *testing.T) {
			h := newHarness(t, nil)
			r := h.enter(Environment{Name: "e", OnEnter: sh("printf '%s\\n' '" + line + "'; exec sleep 1000")})
			checkResult(t, r, ActionFailed, intp(-9))
			if !strings.Contains(r.FailMessage, "malformed") {
				t.Errorf("fail message = %q, want it to name the malformed message", r.FailMessage)
			}
			if got := h.s.State(); got != StateReadyEnding {
				t.Errorf("state = %s, want READY_ENDING", got)
			}
		})
	}
	t.Run("after the process exited", func(t *testing.T) {
		h := newHarness(t, nil)
		r := h.enter(Environment{Name: "e", OnEnter: sh("echo 'cowbird_env: 1BAD=x'")})
		if r.State != ActionFailed {
			t.Errorf("state = %s, want FAILED", r.State)
		}
	})
	t.Run("in a task it is ignored", func(t *testing.T) {
		h := newHarness(t, nil)
		checkResult(t, h.task(sh("echo 'cowbird_env: 1BAD=x'")), ActionSuccess, intp(0))
	})
}

func TestProgressAndStatus(t *testing.T) {
	h := newHarness(t, nil)
	r := h.task(sh(`echo 'cowbird_progress: 50'
echo 'cowbird_progress: 150'
echo 'cowbird_status: halfway'
echo 'openjd_status: nearly'`))
	checkResult(t, r, ActionSuccess, intp(0))
	if r.Progress == nil || *r.Progress != 50 || r.StatusMessage != "nearly" {
		t.Errorf("result = %+v, want progress 50 and status nearly", r)
	}
	if !strings.Contains(h.logText(), `progress "150": want a number from 0 to 100`) {
		t.Error("out-of-range progress not logged")
	}
	var got []string
	for _, ev := range drainStatuses(h) {
		p := "-"
		if ev.res.Progress != nil {
			p = "50"
		}
		got = append(got, string(ev.res.State)+"/"+p+"/"+ev.res.StatusMessage)
	}
	want := []string{"RUNNING/-/", "RUNNING/50/", "RUNNING/50/halfway", "RUNNING/50/nearly", "SUCCESS/50/nearly"}
	if !slices.Equal(got, want) {
		t.Errorf("status calls = %q, want %q", got, want)
	}
}

func TestRedaction(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	h := newHarness(t, func(o *Options) { o.Vars = map[string]string{"OUT": out} })
	checkResult(t, h.enter(Environment{Name: "secrets", OnEnter: sh(`echo 'cowbird_redacted_env: TOKEN=s3cret'
printf '%s\n' 'cowbird_redacted_env: "KEY=-----BEGIN\nmiddle-part\nEND-----"'`)}), ActionSuccess, intp(0))
	r := h.task(sh(`echo "token is $TOKEN!"; printf '%s\n' "$KEY"; echo "cowbird_status: using $TOKEN"; printf %s "$TOKEN" >"$OUT"`))
	checkResult(t, r, ActionSuccess, intp(0))
	want := []string{
		"cowbird_redacted_env: TOKEN=********",
		`cowbird_redacted_env: "KEY=********"`,
		"token is ********!", "********", "********", "********",
		"cowbird_status: using ********",
	}
	if got := h.output(); !slices.Equal(got, want) {
		t.Errorf("output =\n%q\nwant\n%q", got, want)
	}
	if r.StatusMessage != "using ********" {
		t.Errorf("status message = %q, want it masked", r.StatusMessage)
	}
	if b, _ := os.ReadFile(out); string(b) != "s3cret" {
		t.Errorf("TOKEN in the task = %q, want the variable set", b)
	}
	if logs := h.logText(); strings.Contains(logs, "s3cret") || strings.Contains(logs, "middle-part") || strings.Contains(logs, "BEGIN") {
		t.Errorf("a secret reached the log:\n%s", logs)
	}
}
