package app

import (
	"io"
	"net"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/config"
)

// testOptions runs the daemon on 127.0.0.1:0 with the config at cfgPath
// (none when empty) and its state under dir, default settings and
// discarded logs.
func testOptions(t *testing.T, cfgPath, dir string) Options {
	t.Helper()
	s, err := config.LoadSettings(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	s.ConfigPath, s.Addr, s.DataDir = cfgPath, "127.0.0.1:0", filepath.Join(dir, "data")
	log := logrus.New()
	log.SetOutput(io.Discard)
	return Options{Settings: s, Log: log, Out: io.Discard, Version: "test"}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
