package handlers

import (
	"encoding/json"
	"regexp"
	"strings"
)

// Fact is one thing an explanation (GET /explain, cowbird explain) checked
// when it was asked: an lstat, a readlink, a Magpie or GeoServer answer,
// never a guess. Handlers that explain their state return facts.
type Fact struct {
	// Check names what was checked (source, link, datastore mode, ...).
	Check string `json:"check"`
	// OK is false when this is why the user does not get what they expect,
	// or when the state differs from what the handler keeps.
	OK bool `json:"ok"`
	// Detail says what was found.
	Detail string `json:"detail"`
	// Fix, on a fact that is not OK, is what repairs it: a command when
	// there is one, else what to do instead.
	Fix string `json:"fix,omitempty"`
}

// plainWord is what ShellQuote leaves as it is.
var plainWord = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_-]+$`)

// ShellQuote quotes s for a POSIX shell when it needs it, for the commands
// of a Fact's Fix.
func ShellQuote(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// QuoteJSON is s as a JSON string, for the request bodies of a Fact's Fix.
func QuoteJSON(s string) string {
	b, _ := json.Marshal(s) // a string always encodes
	return string(b)
}
