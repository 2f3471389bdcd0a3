package app

import (
	"context"
	"io"
	"net"
	"net/http"
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

// runDaemon runs the daemon with o until the test ends and returns its
// base URL.
func runDaemon(t *testing.T, o Options) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := make(chan string, 1), make(chan error, 1)
	o.Ready = func(a string) { addr <- a }
	go func() { done <- Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon stopped with: %v", err)
		}
	})
	select {
	case a := <-addr:
		return "http://" + a
	case err := <-done:
		done <- err
		t.Fatalf("daemon did not start: %v", err)
	}
	return ""
}

// get returns the body of a GET.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	must(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	return string(body)
}

// waitReady waits until the daemon at base answers /readyz with 200 (its
// watches are established: files created from now on produce events).
func waitReady(t *testing.T, base string) {
	t.Helper()
	eventually(t, "readiness", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
