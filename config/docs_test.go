package config_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cowbird-go/cowbird/app"
	"github.com/cowbird-go/cowbird/config"
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
	for _, k := range app.Kinds {
		keys = append(keys, k.Name)
		keys = append(keys, k.HandlerKind.Keys()...)
	}
	names, envs := config.DaemonKeys()
	keys = append(keys, names...)
	keys = append(keys, envs...)
	keys = append(keys, config.HooksKeys...)
	keys = append(keys, config.HookEvents()...)
	// The settings' environment variables, as the loader spells them.
	for _, file := range []string{"settings.go", "layers.go"} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`"(COWBIRD_[A-Z_]+[A-Z])"`).FindAllStringSubmatch(string(src), -1) {
			keys = append(keys, m[1])
		}
	}
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		if !strings.Contains(text, "`"+k+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", k)
		}
	}
}
