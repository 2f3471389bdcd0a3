package app

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cowbird-go/cowbird/handlers"
)

// TestEventMatrixDoc checks the event matrix of docs/handlers.md against the
// handlers' capability interfaces.
func TestEventMatrixDoc(t *testing.T) {
	doc, err := os.ReadFile("../docs/handlers.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- matrix:start -->")
	table, _, ok2 := strings.Cut(rest, "<!-- matrix:end -->")
	if !ok || !ok2 {
		t.Fatal("docs/handlers.md has no matrix markers")
	}
	columns := [][]string{
		{"user_created", "user_deleted"},
		{"permission_created", "permission_deleted"},
		{"on_created", "on_modified", "on_deleted"},
		{"resync"},
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(table), "\n")[2:] {
		cells := strings.Split(strings.Trim(line, "| "), "|")
		name := strings.TrimSpace(cells[0])
		kind, known := Lookup(Kinds, name)
		if !known {
			t.Errorf("matrix row %q names no handler", name)
			continue
		}
		seen[name] = true
		caps := handlers.Capabilities(kind.Type)
		for i, evs := range columns {
			cell := strings.TrimSpace(cells[i+1])
			documented := strings.HasPrefix(cell, "yes")
			if !documented && !strings.HasPrefix(cell, "log") {
				t.Errorf("%s %v: cell %q must start with yes or log", name, evs, cell)
			}
			if has := slices.Contains(caps, evs[0]); has != documented {
				t.Errorf("%s %v: code says %v, docs/handlers.md says %q", name, evs, has, cell)
			}
		}
	}
	for _, k := range Kinds {
		if !seen[k.Name] {
			t.Errorf("handler %s missing from the matrix", k.Name)
		}
	}
}
