package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// syncBuffer is a bytes.Buffer safe for the daemon and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond (a file-system or HTTP state check) until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDemo starts `serve --demo` on a fresh directory and checks what a
// newcomer sees: the six handlers, a webhook round trip that builds a
// workspace, and a user created in the Magpie emulator reaching cowbird
// through Magpie's webhook.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	var out syncBuffer
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	o := testOptions(t, "", dir)
	o.Demo, o.DemoDir, o.Out, o.Ready = true, filepath.Join(dir, "demo"), &out, func(a string) { addr <- a }
	go func() { done <- Run(ctx, o) }()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("demo did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not start in time")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo stopped with: %v", err)
		}
	}()
	eventually(t, "readiness", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	resp, err := http.Get(base + "/handlers")
	if err != nil {
		t.Fatal(err)
	}
	var hs struct{ Handlers []string }
	_ = json.NewDecoder(resp.Body).Decode(&hs)
	resp.Body.Close()
	if want := []string{"FileSystem", "Magpie", "Geoserver", "Catalog", "Thredds", "Nginx"}; !slices.Equal(hs.Handlers, want) {
		t.Fatalf("handlers = %v, want %v", hs.Handlers, want)
	}

	ws := filepath.Join(dir, "demo", "user_workspaces")
	code, body := post(t, base+"/webhooks/users", `{"event": "created", "user_name": "alice", "callback_url": ""}`)
	if code != 200 {
		t.Fatalf("user webhook = %d %v", code, body)
	}
	if target, err := os.Readlink(filepath.Join(ws, "alice", "notebooks")); err != nil ||
		target != filepath.Join(dir, "demo", "jupyterhub_user_data", "alice") {
		t.Fatalf("notebooks symlink = %q, %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(ws, "alice", "shapefile_datastore")); err != nil {
		t.Fatalf("geoserver datastore dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ws, "public", "wps_outputs", "hummingbird", "2f6e", "report.txt")); err != nil {
		t.Fatalf("public WPS output not linked: %v", err)
	}

	// A user created through Magpie's REST API reaches cowbird by webhook.
	m := regexp.MustCompile(`magpie:\s+(\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("demo output names no magpie URL:\n%s", out.String())
	}
	jar, _ := cookiejar.New(nil)
	mc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	for _, call := range []struct{ path, body string }{
		{"/signin", `{"user_name": "admin", "password": "qwertyqwerty"}`},
		{"/users", `{"user_name": "carol", "email": "carol@example.org", "password": "qwertyqwerty", "group_name": "users"}`},
	} {
		resp, err := mc.Post(m[1]+call.path, "application/json", strings.NewReader(call.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("magpie %s = %d", call.path, resp.StatusCode)
		}
	}
	eventually(t, "carol's workspace", func() bool {
		_, err := os.Lstat(filepath.Join(ws, "carol", "notebooks"))
		return err == nil
	})
}
