package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/handlers"
)

// TestStartupAsksMagpieOnTheRunContext: a daemon stopped (SIGTERM) while
// Magpie does not answer its start-up check stops at once, instead of
// waiting for the request timeout.
func TestStartupAsksMagpieOnTheRunContext(t *testing.T) {
	asked := make(chan struct{}, 1)
	release := make(chan struct{})
	magpie := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); magpie.Close() })
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`handlers:
  Magpie: {active: true, url: %s, admin_user: admin, admin_password: pw}
`, magpie.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, cfg, dir)
	o.Settings.RequestTimeout = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	select {
	case <-asked:
	case err := <-done:
		t.Fatalf("daemon ended before asking Magpie: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Magpie never asked")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want a clean stop or the cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run kept waiting for Magpie after its context ended")
	}
}

// gated is a user handler whose first user_created waits for open, and
// which records when two of its calls overlap.
type gated struct {
	name    string
	entered chan string
	open    chan struct{}

	mu      sync.Mutex
	running int
	overlap bool
	first   sync.Once
}

func (g *gated) Name() string { return g.name }

func (g *gated) UserCreated(_ context.Context, ev handlers.UserEvent) error {
	g.mu.Lock()
	g.running++
	g.overlap = g.overlap || g.running > 1
	g.mu.Unlock()
	g.entered <- ev.UserName
	g.first.Do(func() { <-g.open })
	g.mu.Lock()
	g.running--
	g.mu.Unlock()
	return nil
}

func (g *gated) UserDeleted(context.Context, handlers.UserEvent) error { return nil }

// TestUserResyncWaitsForTheUsersWebhook: a user.resync action goes through
// the dispatcher, journaled and under the user's lock, so it never runs
// beside a webhook of the same user; and it leaves out the Hooks handler.
func TestUserResyncWaitsForTheUsersWebhook(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(`handlers:
  Catalog: {active: true, url: http://catalog, workspace_dir: /ws}
  Hooks: {active: true}
cowbird:
  admin_tokens: {ops: `+adminToken+`}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gated{name: "Catalog", entered: make(chan string, 4), open: make(chan struct{})}
	hooksRan := newCalls()
	kinds := slices.Clone(Kinds)
	for i, k := range kinds {
		switch k.Name {
		case "Catalog":
			kinds[i].New = func(context.Context, handlers.Env) (handlers.Handler, error) { return g, nil }
		case "Hooks":
			kinds[i].New = func(context.Context, handlers.Env) (handlers.Handler, error) {
				return &recording{name: "Hooks", calls: hooksRan}, nil
			}
		}
	}
	o := testOptions(t, cfg, dir)
	o.Kinds = kinds
	base := runDaemon(t, o)
	var opened sync.Once
	open := func() { opened.Do(func() { close(g.open) }) }
	t.Cleanup(open) // before the daemon stops, if the test fails early

	webhook := make(chan int, 1)
	go func() {
		code, _ := post(t, base+"/webhooks/users", `{"event": "created", "user_name": "alice", "callback_url": ""}`)
		webhook <- code
	}()
	<-g.entered // the webhook's call holds alice's lock
	code, run := call(t, http.MethodPost, base+"/actions/v1/user.resync", `{"request_id": "r1", "body": {"user_name": "alice"}}`)
	if code != http.StatusAccepted {
		t.Fatalf("run user.resync = %d %v", code, run)
	}
	// Fixed: the resync is journaled, then waits for alice's lock (two
	// events pending). Broken: it calls the handler at once.
	eventually(t, "the resync journaled or running", func() bool {
		select {
		case u := <-g.entered:
			g.entered <- u
			return true
		default:
		}
		return strings.Contains(get(t, base+"/metrics"), "cowbird_journal_pending_events 2")
	})
	open()
	if c := <-webhook; c != http.StatusOK {
		t.Fatalf("webhook = %d", c)
	}
	st := waitAction(t, base, "user.resync", run["action_id"].(string))
	if st["status"] != "SUCCEEDED" {
		t.Fatalf("user.resync = %v", st)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.overlap {
		t.Fatal("user.resync ran beside the webhook of the same user")
	}
	if got := st["details"].(map[string]any)["handlers"]; fmt.Sprint(got) != "[Catalog]" {
		t.Errorf("user.resync handlers = %v, want [Catalog] (not Hooks)", got)
	}
	if got := hooksRan.get(); !slices.Equal(got, []string{"Hooks user_created alice"}) {
		t.Errorf("Hooks calls = %v, want the webhook's only", got)
	}
}

// flaky is a user handler whose failure the test changes.
type flaky struct {
	mu   sync.Mutex
	fail error
	runs chan string
}

func (f *flaky) Name() string { return "Thredds" }

func (f *flaky) UserCreated(_ context.Context, ev handlers.UserEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs <- ev.UserName
	return f.fail
}

func (f *flaky) UserDeleted(context.Context, handlers.UserEvent) error { return nil }

type transient struct{}

func (transient) Error() string   { return "magpie unavailable" }
func (transient) Transient() bool { return true }

// TestUserWebhookCallsBackOnlyWhenRetriesGiveUp: a transient failure is
// answered 202 without Magpie's failure callback; the callback is sent
// when a journaled retry fails for good.
func TestUserWebhookCallsBackOnlyWhenRetriesGiveUp(t *testing.T) {
	callback := make(chan string, 2)
	magpie := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		callback <- r.Method + " " + r.URL.Path
	}))
	t.Cleanup(magpie.Close)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte("handlers:\n  Thredds: {active: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &flaky{fail: fmt.Errorf("sign in: %w", transient{}), runs: make(chan string, 10)}
	kinds := slices.Clone(Kinds)
	for i := range kinds {
		if kinds[i].Name == "Thredds" {
			kinds[i].New = func(context.Context, handlers.Env) (handlers.Handler, error) { return h, nil }
		}
	}
	o := testOptions(t, cfg, dir)
	o.Kinds = kinds
	base := runDaemon(t, o)
	code, body := post(t, base+"/webhooks/users",
		`{"event": "created", "user_name": "bob", "callback_url": "`+magpie.URL+`/tmp/abc"}`)
	if code != http.StatusAccepted {
		t.Fatalf("transient failure answered %d %v, want 202", code, body)
	}
	<-h.runs
	select {
	case got := <-callback:
		t.Fatalf("callback %q sent for a failure the journal retries", got)
	default:
	}
	h.mu.Lock()
	h.fail = errors.New("no space left on device") // the retry fails for good
	h.mu.Unlock()
	select {
	case got := <-callback:
		if got != "HEAD /tmp/abc" {
			t.Fatalf("callback = %q", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no callback after the retry failed for good")
	}
}
