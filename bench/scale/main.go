// Command scale measures the running daemon at scale (issue 17 item 4):
//
//	go run ./bench/scale -files 1000000 -users 10000
//
// Files phase: it builds a WPS-outputs tree of -files files (the layout of
// bench/reconcile: 4 birds, jobs of 10 files, alternately public and user
// jobs, one Magpie user per 200 files), starts `cowbird serve` (FileSystem
// and Magpie handlers, the in-process Magpie emulator) on it and prints the
// time from the process start to GET /readyz 200, the daemon's inotify
// watches (cowbird_inotify_watches), the time until its start-up reconcile
// ends (cowbird_reconcile_duration_seconds_count), and the daemon process's
// VmRSS and VmHWM (/proc/<pid>/status) at both points.
//
// Users phase: -users Magpie users, all in group "users", 4 in 5 allowed to
// read the secure-data-proxy wps_outputs route, each with one job of 10
// files and a workspace. Once the daemon's start-up reconcile is over, it
// times a user_created webhook (for a user whose workspace was removed), a
// user permission webhook and a group permission webhook (group "users",
// every user), each with the Magpie requests it made (emulator hits) and
// the most answered at once. -magpie-latency holds every answer of the
// emulator that long.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cowbird-go/cowbird/bench/daemon"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

const (
	birds       = 4
	filesPerJob = 10
	waitLong    = 30 * time.Minute // bound on start-up and the start-up reconcile
)

var (
	latency         time.Duration // how long the Magpie emulator holds every answer
	dispatchTimeout time.Duration // the daemon's dispatch_timeout in the users phase (0: its default)
	resyncFirst     bool          // users phase: one FileSystem resync before the webhooks
)

func main() {
	files := flag.Int("files", 1000000, "files phase: WPS output files (0: skip the phase)")
	users := flag.Int("users", 10000, "users phase: Magpie users (0: skip the phase)")
	bin := flag.String("bin", "", "cowbird binary (default: go build ./cmd/cowbird into a temp dir)")
	flag.DurationVar(&latency, "magpie-latency", 0, "hold every answer of the Magpie emulator this long (e.g. 20ms)")
	flag.DurationVar(&dispatchTimeout, "dispatch-timeout", 0, "users phase: the daemon's dispatch_timeout (0: its default, 30s)")
	flag.BoolVar(&resyncFirst, "resync-first", true, "users phase: one FileSystem resync before the webhooks, as the periodic reconcile of a running daemon has done (it builds the index of unchanged directories, which the start-up reconcile of a new tree cannot)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, *bin, *files, *users)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, files, users int) error {
	dir, err := os.MkdirTemp("", "cowbird-bench-scale-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin, err = daemon.Build(ctx, bin, dir); err != nil {
		return err
	}
	daemon.ReadyTimeout = waitLong
	if files > 0 {
		if err := filesPhase(ctx, bin, files); err != nil {
			return fmt.Errorf("files phase: %w", err)
		}
	}
	if users > 0 {
		if err := usersPhase(ctx, bin, users); err != nil {
			return fmt.Errorf("users phase: %w", err)
		}
	}
	return nil
}

// env is a Magpie emulator and a temp tree for one phase.
type env struct {
	dir   string
	mg    *magpietest.Server
	route int
	ids   []int
}

// newEnv starts the emulator with n users (user0..) in group "users" and
// the secure-data-proxy wps_outputs route, which users whose index is not
// a multiple of 5 may read; it writes the daemon's config.
func newEnv(n int) (*env, error) {
	dir, err := os.MkdirTemp("", "cowbird-bench-scale-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, mg: magpietest.New(magpietest.Options{QuietSeeding: true, Latency: latency})}
	if err := e.mg.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start magpie emulator: %w", err)
	}
	if err := e.seed(n); err != nil {
		e.close()
		return nil, fmt.Errorf("seed magpie emulator: %w", err)
	}
	if err := os.WriteFile(e.config(), fmt.Appendf(nil, daemon.FileSystemConfig, e.mg.URL(), dir), 0o600); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	e.mg.Close()
	if err := os.RemoveAll(e.dir); err != nil {
		fmt.Fprintln(os.Stderr, "remove", e.dir+":", err)
	}
}

func (e *env) config() string { return filepath.Join(e.dir, "config.yml") }
func (e *env) wps() string    { return filepath.Join(e.dir, "wps") }
func (e *env) ws() string     { return filepath.Join(e.dir, "ws") }

func (e *env) seed(n int) error {
	svc, err := e.mg.AddService("secure-data-proxy", "api")
	if err != nil {
		return err
	}
	if e.route, err = e.mg.AddResource(svc, "wps_outputs", "route"); err != nil {
		return err
	}
	e.ids = make([]int, n)
	for i := range n {
		name := "user" + strconv.Itoa(i)
		if e.ids[i], err = e.mg.AddUser(name, "", "users"); err != nil {
			return err
		}
		if i%5 != 0 {
			if err := e.mg.SetUserPermission(name, e.route, "read-allow-recursive"); err != nil {
				return err
			}
		}
	}
	return nil
}

// workspaces creates a workspace per user.
func (e *env) workspaces() error {
	for i := range e.ids {
		if err := os.MkdirAll(filepath.Join(e.ws(), "user"+strconv.Itoa(i)), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// job writes one job directory of 10 empty files.
func job(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for k := range filesPerJob {
		if err := os.WriteFile(filepath.Join(dir, "out"+strconv.Itoa(k)+".nc"), nil, 0o664); err != nil {
			return err
		}
	}
	return nil
}

// hits is the number of requests the emulator has answered.
func (e *env) hits() int { return daemon.MagpieRequests(e.mg) }

// routeHits is the requests answered so far, by route.
func (e *env) routeHits() map[string]int {
	m := map[string]int{}
	for _, r := range magpietest.Routes() {
		m[r] = e.mg.Hits(r)
	}
	return m
}

// since describes the requests answered since before, by route.
func (e *env) since(before map[string]int) string {
	var parts []string
	for _, r := range magpietest.Routes() {
		if n := e.mg.Hits(r) - before[r]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s x%d", r, n))
		}
	}
	return strings.Join(parts, ", ")
}

func filesPhase(ctx context.Context, bin string, files int) error {
	nUsers := max(10, files/200)
	e, err := newEnv(nUsers)
	if err != nil {
		return err
	}
	defer e.close()
	t0 := time.Now()
	if err := e.workspaces(); err != nil {
		return err
	}
	dirs := 0
	for j := 0; j*filesPerJob < files; j++ {
		bird := "bird" + strconv.Itoa(j%birds)
		d := filepath.Join(e.wps(), bird, "public", "job"+strconv.Itoa(j))
		if j%2 == 1 {
			d = filepath.Join(e.wps(), bird, "users", strconv.Itoa(e.ids[(j/2)%len(e.ids)]), "job"+strconv.Itoa(j))
		}
		if err := job(d); err != nil {
			return err
		}
		dirs++
	}
	fmt.Printf("== files: %d files in %d job dirs, %d birds, %d users, built in %s\n",
		dirs*filesPerJob, dirs, birds, nUsers, time.Since(t0).Round(time.Millisecond))

	before := e.hits()
	t0 = time.Now()
	d, err := daemon.Start(ctx, bin, e.config(), e.dir)
	if err != nil {
		return err
	}
	defer d.Stop()
	ready := time.Since(t0)
	metrics := d.URL + "/metrics"
	watches, err := daemon.Metric(ctx, metrics, "cowbird_inotify_watches")
	if err != nil {
		return err
	}
	limit, _ := daemon.Metric(ctx, metrics, "cowbird_inotify_max_user_watches")
	rss, hwm := daemon.Memory(d.Pid())
	fmt.Printf("start-up to /readyz 200: %s  inotify watches %.0f (max_user_watches %.0f)  daemon VmRSS %s VmHWM %s  magpie requests %d\n",
		ready.Round(time.Millisecond), watches, limit, rss, hwm, e.hits()-before)
	reconciled, err := startupReconciled(ctx, metrics)
	if err != nil {
		return err
	}
	since := time.Since(t0)
	watches, err = daemon.Metric(ctx, metrics, "cowbird_inotify_watches")
	if err != nil {
		return err
	}
	rss, hwm = daemon.Memory(d.Pid())
	fmt.Printf("start-up reconcile over %s after the start (%s): inotify watches %.0f  daemon VmRSS %s VmHWM %s  magpie requests %d\n",
		since.Round(time.Millisecond), reconciled, watches, rss, hwm, e.hits()-before)
	return nil
}

// startupReconciled waits until the daemon has finished a reconcile and
// describes it.
func startupReconciled(ctx context.Context, metrics string) (string, error) {
	deadline := time.Now().Add(waitLong)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		n, err := daemon.Metric(ctx, metrics, "cowbird_reconcile_duration_seconds_count")
		if err == nil && n >= 1 {
			sum, _ := daemon.Metric(ctx, metrics, "cowbird_reconcile_duration_seconds_sum")
			return fmt.Sprintf("%.0f reconcile(s), %.2f s in the daemon's histogram", n, sum), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", errors.New("start-up reconcile not over")
}

// quiesce waits until the daemon delivers no file event, ends no
// reconcile and runs none for 5 s: the links the start-up reconcile made
// raise file events of their own (and an inotify overflow a reconcile),
// which would otherwise run beside the webhooks.
func quiesce(ctx context.Context, metrics string) error {
	read := func() (sum float64, running bool, err error) {
		for _, name := range []string{"cowbird_monitor_events_total", "cowbird_reconcile_duration_seconds_count"} {
			v, err := daemon.Metric(ctx, metrics, name)
			if err != nil {
				return 0, false, err
			}
			sum += v
		}
		n, err := daemon.Metric(ctx, metrics, "cowbird_reconcile_running")
		return sum, n > 0, err
	}
	first, _, err := read()
	if err != nil {
		return err
	}
	t0, last, still := time.Now(), first, time.Now()
	for time.Since(still) < 5*time.Second {
		if time.Since(t0) > waitLong || ctx.Err() != nil {
			return errors.New("daemon not idle")
		}
		time.Sleep(250 * time.Millisecond)
		v, running, err := read()
		if err != nil {
			return err
		}
		if v != last || running {
			last, still = v, time.Now()
		}
	}
	fmt.Printf("daemon idle after %s (%.0f file events and reconciles meanwhile)\n",
		time.Since(t0).Round(100*time.Millisecond), last-first)
	return nil
}

// resync runs one FileSystem resync (the original's route, which answers
// once it is over) and waits for the daemon to be idle again.
func resync(ctx context.Context, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/handlers/FileSystem/resync", nil)
	if err != nil {
		return err
	}
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("resync: %s", resp.Status)
	}
	fmt.Printf("resync before the webhooks: %s\n", time.Since(t0).Round(time.Millisecond))
	return quiesce(ctx, base+"/metrics")
}

func usersPhase(ctx context.Context, bin string, users int) error {
	users = max(users, 10)
	e, err := newEnv(users)
	if err != nil {
		return err
	}
	defer e.close()
	t0 := time.Now()
	if err := e.workspaces(); err != nil {
		return err
	}
	for i, id := range e.ids {
		if err := job(filepath.Join(e.wps(), "bird"+strconv.Itoa(i%birds), "users", strconv.Itoa(id), "job0")); err != nil {
			return err
		}
	}
	fmt.Printf("== users: %d users (all in group users, 4 in 5 may read wps_outputs), one job of %d files each, built in %s\n",
		users, filesPerJob, time.Since(t0).Round(time.Millisecond))
	var env []string
	if dispatchTimeout > 0 {
		env = append(env, "COWBIRD_DISPATCH_TIMEOUT="+dispatchTimeout.String())
	}
	d, err := daemon.Start(ctx, bin, e.config(), e.dir, env...)
	if err != nil {
		return err
	}
	defer d.Stop()
	if _, err := startupReconciled(ctx, d.URL+"/metrics"); err != nil {
		return err
	}
	if err := quiesce(ctx, d.URL+"/metrics"); err != nil {
		return err
	}
	if resyncFirst {
		if err := resync(ctx, d.URL); err != nil {
			return err
		}
	}
	measure := func(name, path string, body map[string]any) error {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		before, routes := e.hits(), e.routeHits()
		e.mg.ResetPeak()
		t0 := time.Now()
		err = post(ctx, d.URL+path, b)
		took := time.Since(t0)
		fmt.Printf("%-36s %10s  magpie requests %d (at most %d at once)\n    %s\n", name+":", took.Round(100*time.Microsecond),
			e.hits()-before, e.mg.PeakInFlight(), e.since(routes))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	// user_created for a user allowed to read, whose workspace is gone.
	u := users/2 + 1
	if u%5 == 0 {
		u++
	}
	name := "user" + strconv.Itoa(u)
	if err := os.RemoveAll(filepath.Join(e.ws(), name)); err != nil {
		return err
	}
	if err := measure("user_created", "/webhooks/users", map[string]any{"event": "created", "user_name": name, "callback_url": ""}); err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(e.ws(), name, "wps_outputs", "bird"+strconv.Itoa(u%birds), "job0", "out0.nc")); err != nil {
		return fmt.Errorf("user_created: link missing: %w", err)
	}
	// A user permission created for a user who could not read.
	u = (users / 2 / 5) * 5
	name = "user" + strconv.Itoa(u)
	link := filepath.Join(e.ws(), name, "wps_outputs", "bird"+strconv.Itoa(u%birds), "job0", "out0.nc")
	if _, err := os.Lstat(link); err == nil {
		return fmt.Errorf("%s has a link before its permission", name)
	}
	if err := e.mg.SetUserPermission(name, e.route, "read-allow-recursive"); err != nil {
		return err
	}
	perm := func(target, who string) map[string]any {
		return map[string]any{"event": "created", "service_name": "secure-data-proxy", "service_type": "api",
			"resource_id": e.route, "resource_full_name": "secure-data-proxy/wps_outputs",
			"name": "read", "access": "allow", "scope": "recursive", target: who}
	}
	if err := measure("user permission created", "/webhooks/permissions", perm("user", name)); err != nil {
		return err
	}
	if _, err := os.Lstat(link); err != nil {
		return fmt.Errorf("user permission: link missing: %w", err)
	}
	// A group permission for group users: every user may read.
	if err := e.mg.SetGroupPermission("users", e.route, "read-allow-recursive"); err != nil {
		return err
	}
	if err := measure(fmt.Sprintf("group permission created (%d users)", users), "/webhooks/permissions", perm("group", "users")); err != nil {
		return err
	}
	rss, hwm := daemon.Memory(d.Pid())
	fmt.Printf("daemon VmRSS %s VmHWM %s\n", rss, hwm)
	return samples(ctx, d.URL+"/metrics", "cowbird_reconcile_runs_total", "cowbird_inotify_overflows_total")
}

// samples prints the samples of the named metrics, labelled or not.
func samples(ctx context.Context, url string, names ...string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		for _, n := range names {
			if strings.HasPrefix(sc.Text(), n) {
				fmt.Println("   ", sc.Text())
			}
		}
	}
	return sc.Err()
}

// post sends a JSON webhook and wants 200.
func post(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, msg)
	}
	return nil
}
