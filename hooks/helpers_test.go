package hooks

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/cowbird-go/cowbird/config"
)

// hangGuard bounds every wait of the tests.
const hangGuard = 30 * time.Second

// recorder is a Recorder that keeps everything it is told; started gets
// each new run.
type recorder struct {
	started chan *recorded
}

func newRecorder() *recorder { return &recorder{started: make(chan *recorded, 100)} }

// Start implements Recorder.
func (r *recorder) Start(_ context.Context, label string) Run {
	run := &recorded{label: label, lines: make(chan string, 1000), finished: make(chan error, 1)}
	r.started <- run
	return run
}

// recorded is one run seen by the recorder.
type recorded struct {
	label    string
	lines    chan string // every Log line
	finished chan error  // the Finish error

	mu       sync.Mutex
	progress []float64
	statuses []string
}

func (r *recorded) Progress(pct float64, status string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress = append(r.progress, pct)
	r.statuses = append(r.statuses, status)
}

func (r *recorded) Log(line string) { r.lines <- line }

func (r *recorded) Finish(err error) { r.finished <- err }

// log returns the lines logged so far.
func (r *recorded) log() []string {
	var out []string
	for {
		select {
		case l := <-r.lines:
			out = append(out, l)
		default:
			return out
		}
	}
}

// await returns the value ch delivers, failing after hangGuard.
func await[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangGuard):
		t.Fatal("hang guard: nothing came")
		panic("unreachable")
	}
}

// loadHooks loads a config file holding yaml and returns its hooks section.
func loadHooks(t *testing.T, yaml string) *config.Hooks {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	l, _ := logtest.NewNullLogger()
	cfg, err := config.Load(f, logrus.NewEntry(l), nil)
	if err != nil {
		t.Fatalf("load hooks config: %v", err)
	}
	return cfg.Hooks
}

// newHandler builds a handler for yaml with a temporary session root and
// workspace, and a recorder.
func newHandler(t *testing.T, yaml string) (*Handler, *recorder, string) {
	t.Helper()
	ws := t.TempDir()
	rec := newRecorder()
	h, err := New(loadHooks(t, yaml), Options{WorkspaceDir: ws, WpsOutputsDir: filepath.Join(ws, "wps"),
		SessionRoot: t.TempDir(), Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	return h, rec, ws
}

// selfAccount maps the user names to the test's own uid, so that hooks run
// without root.
func selfAccount(names ...string) string {
	var b strings.Builder
	b.WriteString("  allow_run_as_daemon_user: true\n  accounts:\n")
	for _, n := range names {
		b.WriteString("    " + n + ": {uid: " + itoa(os.Getuid()) + ", gid: " + itoa(os.Getgid()) + "}\n")
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }
