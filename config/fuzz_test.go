package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cowbird-go/cowbird/config"
)

// FuzzConfigLoad feeds arbitrary files to Load with the real handler kinds:
// it must not panic, must return either a config or an error, and a loaded
// config must validate.
func FuzzConfigLoad(f *testing.F) {
	for _, file := range testdataFiles(f) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "config.yml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		log, _ := config.NewLog()
		cfg, err := config.LoadWith(path, log, kinds, config.Env(exampleEnv))
		if (cfg == nil) == (err == nil) {
			t.Fatalf("load returned config %v and error %v", cfg, err)
		}
		if err != nil {
			var errs config.Errors
			if errors.As(err, &errs) {
				for _, e := range errs {
					if e.Path == "" || e.Msg == "" {
						t.Fatalf("problem without path or message: %#v", e)
					}
				}
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loaded config does not validate: %v", err)
		}
	})
}

// testdataFiles lists the config files of testdata (not the fuzz corpus).
func testdataFiles(tb testing.TB) []string {
	tb.Helper()
	entries, err := os.ReadDir("testdata")
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Type()&fs.ModeType == 0 {
			out = append(out, filepath.Join("testdata", e.Name()))
		}
	}
	return out
}
