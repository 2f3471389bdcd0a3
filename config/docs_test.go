package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEveryKeyDocumented fails when a configuration key or COWBIRD_*
// variable the loader reads is missing from docs/configuration.md.
func TestEveryKeyDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	var keys []string
	keys = append(keys, "active", "priority", "url", "workspace_dir")
	for name, hk := range handlerKeys {
		keys = append(keys, name)
		keys = append(keys, hk...)
	}
	for _, k := range daemonKeys {
		keys = append(keys, k.name, k.env)
	}
	keys = append(keys, hooksKeys...)
	keys = append(keys, HookEvents()...)
	// The settings' environment variables, as the loader spells them.
	src, err := os.ReadFile("settings.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`"(COWBIRD_[A-Z_]+[A-Z])"`).FindAllStringSubmatch(string(src), -1) {
		keys = append(keys, m[1])
	}
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		if !strings.Contains(text, "`"+k+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", k)
		}
	}
}
