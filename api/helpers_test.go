package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/cowbird-go/cowbird/handlers"
)

// journal records handler calls in order, across test handlers.
type journal struct {
	mu     sync.Mutex
	calls  []string
	events []handlers.Event
	ctxErr []error
}

func (j *journal) add(name string, ev handlers.Event, ctx context.Context) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls = append(j.calls, name+":"+ev.Name())
	j.events = append(j.events, ev)
	j.ctxErr = append(j.ctxErr, ctx.Err())
}

func (j *journal) snapshot() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.calls...)
}

// recHandler is a handler with every capability that records its calls and
// fails the events named in fail.
type recHandler struct {
	name string
	j    *journal
	fail map[string]error
}

func (h *recHandler) Name() string { return h.name }

func (h *recHandler) do(ctx context.Context, ev handlers.Event) error {
	h.j.add(h.name, ev, ctx)
	return h.fail[ev.Name()]
}

func (h *recHandler) UserCreated(ctx context.Context, ev handlers.UserEvent) error {
	return h.do(ctx, ev)
}
func (h *recHandler) UserDeleted(ctx context.Context, ev handlers.UserEvent) error {
	return h.do(ctx, ev)
}
func (h *recHandler) PermissionCreated(ctx context.Context, ev handlers.PermissionEvent) error {
	return h.do(ctx, ev)
}
func (h *recHandler) PermissionDeleted(ctx context.Context, ev handlers.PermissionEvent) error {
	return h.do(ctx, ev)
}
func (h *recHandler) Resync(ctx context.Context) error {
	h.j.add(h.name, resyncEvent{}, ctx)
	if h.fail["resync"] != nil {
		return h.fail["resync"]
	}
	return nil
}

// resyncEvent stands for a resync call in the journal.
type resyncEvent struct{}

func (resyncEvent) Kind() handlers.Kind { return "resync" }
func (resyncEvent) Key() string         { return "resync" }
func (resyncEvent) Name() string        { return "resync" }

// panicHandler panics on resync.
type panicHandler struct{ name string }

func (h panicHandler) Name() string                 { return h.name }
func (h panicHandler) Resync(context.Context) error { panic("boom") }

func prio(p int) *int { return &p }

// fixture is a Server over real registry and dispatcher, served by httptest.
type fixture struct {
	srv  *Server
	ts   *httptest.Server
	j    *journal
	logs *logtest.Hook // what the server logged
}

// newFixture builds a server with handlers FileSystem (priority 1), Magpie
// (2) and Thredds (no capability, last); fail makes FileSystem fail events.
func newFixture(t testing.TB, fail map[string]error, opts Options) *fixture {
	t.Helper()
	j := &journal{}
	reg, err := handlers.NewRegistry(
		handlers.Registration{Handler: handlers.Named("Thredds"), Active: true},
		handlers.Registration{Handler: &recHandler{name: "Magpie", j: j}, Active: true, Priority: prio(2)},
		handlers.Registration{Handler: &recHandler{name: "Inactive", j: j}, Active: false, Priority: prio(0)},
		handlers.Registration{Handler: &recHandler{name: "FileSystem", j: j, fail: fail}, Active: true, Priority: prio(1)},
		handlers.Registration{Handler: panicHandler{"Panicky"}, Active: true, Priority: prio(5)},
	)
	if err != nil {
		t.Fatal(err)
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	logs := logtest.NewLocal(l)
	log := logrus.NewEntry(l)
	opts.Registry = reg
	if opts.URL == "" {
		opts.URL = "https://example.org/cowbird"
	}
	opts.Log = log
	opts.DaemonVersion = "0.1.0-test"
	var s *Server
	opts.Dispatcher = handlers.NewDispatcher(reg, log, handlers.Options{
		Observe: func(h string, ev handlers.Event, took time.Duration, err error) { s.ObserveDispatch(h, ev, took, err) },
	})
	s = New(opts)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &fixture{srv: s, ts: ts, j: j, logs: logs}
}

// reply is a decoded answer.
type reply struct {
	code   int
	header http.Header
	raw    string
	body   map[string]any
}

// call sends a request without following redirects. A body starting with
// '{' or '[' is sent as JSON unless headers set a Content-Type.
func (f *fixture) call(t *testing.T, method, path, body string, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{code: resp.StatusCode, header: resp.Header, raw: string(data)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		_ = json.Unmarshal(data, &r.body)
	}
	return r
}

// expect checks code, detail and, when p is set, the param object.
func (r reply) expect(t *testing.T, code int, detail string, p map[string]any) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status = %d, want %d; body %s", r.code, code, r.raw)
	}
	if r.body == nil {
		t.Fatalf("body is not JSON: %q", r.raw)
	}
	if got := r.body["code"]; got != float64(code) {
		t.Errorf("body code = %v, want %d", got, code)
	}
	if got := r.body["detail"]; got != detail {
		t.Errorf("detail = %q, want %q", got, detail)
	}
	if p != nil {
		got, _ := json.Marshal(r.body["param"])
		want, _ := json.Marshal(p)
		if string(got) != string(want) {
			t.Errorf("param = %s, want %s", got, want)
		}
	}
}

var errDisk = errors.New("mkdir /data/alice: no space left on device")
