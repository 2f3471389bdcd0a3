// Command reconcile measures the FileSystem handler's incremental reconcile
// on a synthetic WPS-outputs tree against `cp -al` of the same tree:
//
//	go run ./bench/reconcile -files 100000
//
// The tree has -birds birds; half of its jobs are public, half belong to
// users (one user per 200 files, so a user's share is constant across
// sizes); each job holds 10 files. The Magpie emulator runs in-process with
// those users and a secure-data-proxy wps_outputs route that four users out
// of five may read; -magpie-latency holds each of its answers (a real Magpie
// resolves permissions in SQL):
//
//	go run ./bench/reconcile -files 100000 -magpie-latency 20ms
//
// It prints cold and warm reconciles (periodic ones, which reuse Magpie's
// answers, and admin ones, which ask afresh), user_created, and how long
// file events take while a reconcile runs.
package main

import (
	"bufio"
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/filesystem"
	"github.com/cowbird-go/cowbird/handlers"
	"github.com/cowbird-go/cowbird/magpie"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
	"github.com/cowbird-go/cowbird/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "reconcile bench:", err)
		os.Exit(1)
	}
}

func run() error {
	files := flag.Int("files", 10000, "number of WPS output files (e.g. 10000, 100000, 1000000)")
	birds := flag.Int("birds", 4, "number of birds")
	workers := flag.Int("workers", 0, "reconcile workers (0: handler default)")
	dir := flag.String("dir", "", "work directory (default: a new temp dir, removed at the end)")
	warmRuns := flag.Int("warm", 3, "warm reconciles to run once the index is built (their median is compared with cold)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the warm reconciles to this file")
	latency := flag.Duration("magpie-latency", 0, "hold every answer of the Magpie emulator this long (e.g. 20ms)")
	magpiePool := flag.Int("magpie-pool", 0, "permission requests a reconcile has in flight at most (0: handler default)")
	flag.Parse()

	root := *dir
	if root == "" {
		var err error
		if root, err = os.MkdirTemp("", "cowbird-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(root)
	}
	wps, ws := filepath.Join(root, "wps_outputs"), filepath.Join(root, "user_workspaces")
	nUsers := max(10, *files/200)

	mg := magpietest.New(magpietest.Options{QuietSeeding: true, Latency: *latency})
	if err := mg.Start(); err != nil {
		return err
	}
	defer mg.Close()
	ids, err := seed(mg, nUsers)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := build(wps, ws, ids, *files, *birds); err != nil {
		return err
	}
	fmt.Printf("tree: %d files, %d birds, %d users, built in %s\n", *files, *birds, nUsers, time.Since(start).Round(time.Millisecond))

	cpal, err := cpAL(wps, filepath.Join(root, "cpal"))
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64 // as the daemon's outbound client
	client := magpie.NewClient(magpie.ClientOptions{URL: mg.URL(), AdminUser: "admin", AdminPassword: "qwertyqwerty",
		HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: tr}})
	l := logrus.New()
	l.SetOutput(io.Discard)
	db, err := store.Open(filepath.Join(root, "state"))
	if err != nil {
		return err
	}
	defer db.Close()
	newHandler := func() (*filesystem.Handler, error) {
		return filesystem.New(filesystem.Config{WorkspaceDir: ws, WPSOutputsDir: wps, JupyterhubUserDataDir: filepath.Join(root, "jupyterhub")},
			func() filesystem.Magpie { return client.WithCache() }, nil, logrus.NewEntry(l),
			filesystem.Options{Workers: *workers, IndexStore: db, MagpieConcurrency: *magpiePool})
	}
	h, err := newHandler()
	if err != nil {
		return err
	}
	defer func() { h.Close() }()
	ctx := context.Background()

	fmt.Printf("magpie latency %s per answer, at most %d permission requests in flight per reconcile\n",
		*latency, cmp.Or(*magpiePool, filesystem.DefaultMagpieConcurrency))
	fmt.Printf("cp -al:          %10s\n", cpal.Round(time.Millisecond))
	measure := func(name string, fn func() (filesystem.Stats, error)) (time.Duration, error) {
		before := client.Requests()
		mg.ResetPeak()
		t0 := time.Now()
		st, err := fn()
		d := time.Since(t0)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		fmt.Printf("%-24s %10s  %5.2fx cp -al  magpie requests %d (at most %d at once)", name+":", d.Round(time.Millisecond),
			float64(d)/float64(cpal), client.Requests()-before, mg.PeakInFlight())
		if st.Sources > 0 {
			fmt.Printf("  (sources %d, links +%d ~%d -%d, modes %d, dirs +%d, from the index %d)", st.Sources,
				st.LinksCreated, st.LinksReplaced, st.LinksRemoved, st.ModesFixed, st.DirsCreated, st.Indexed)
		}
		fmt.Println()
		return d, nil
	}
	reconcile := func(opts filesystem.ReconcileOptions) func() (filesystem.Stats, error) {
		return func() (filesystem.Stats, error) { return h.Reconcile(ctx, filesystem.Scope{}, opts) }
	}
	// Periodic runs may reuse the answers of the previous full run; admin
	// resyncs (and the cold run, as at start-up) ask Magpie afresh.
	periodic := reconcile(filesystem.ReconcileOptions{ReuseAnswers: true})
	admin := reconcile(filesystem.ReconcileOptions{})
	cold, err := measure("cold reconcile", admin)
	if err != nil {
		return err
	}
	coldEnd := time.Now()
	// The first warm run finds the index empty. The index takes only
	// directories unchanged for DefaultIndexAge before a run starts: once
	// the cold run's last changes are that old, one run builds it.
	unindexed, err := measure("warm, no index", periodic)
	if err != nil {
		return err
	}
	time.Sleep(time.Until(coldEnd.Add(filesystem.DefaultIndexAge + 100*time.Millisecond)))
	if _, err := measure("warm, indexing", periodic); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	median := func(name string, fn func() (filesystem.Stats, error)) (time.Duration, error) {
		ds := make([]time.Duration, max(1, *warmRuns))
		for i := range ds {
			if ds[i], err = measure(name, fn); err != nil {
				return 0, err
			}
		}
		slices.Sort(ds)
		return ds[len(ds)/2], nil
	}
	warm, err := median("warm, indexed, periodic", periodic)
	if err != nil {
		return err
	}
	fresh, err := median("warm, indexed, admin", admin)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	// A restarted daemon: a new handler loads the index from the database
	// (Magpie's answers are not kept across restarts).
	if err := h.Close(); err != nil {
		return err
	}
	if h, err = newHandler(); err != nil {
		return err
	}
	restarted, err := measure("warm, restarted", periodic)
	if err != nil {
		return err
	}
	user := "user" + strconv.Itoa(nUsers/2)
	if err := os.RemoveAll(filepath.Join(ws, user)); err != nil {
		return err
	}
	if _, err := measure("user_created", func() (filesystem.Stats, error) {
		return filesystem.Stats{}, h.UserCreated(ctx, handlers.UserEvent{Action: handlers.Created, UserName: user})
	}); err != nil {
		return err
	}
	if err := fileEventsDuring(ctx, h, wps, admin); err != nil {
		return err
	}
	n := max(1, *warmRuns)
	fmt.Printf("cold / warm: %.1fx without the index (%s), with it %.1fx periodic (median of %d: %s), %.1fx admin (median of %d: %s), %.1fx after a restart (%s)\n",
		float64(cold)/float64(unindexed), unindexed.Round(time.Millisecond),
		float64(cold)/float64(warm), n, warm.Round(time.Millisecond),
		float64(cold)/float64(fresh), n, fresh.Round(time.Millisecond),
		float64(cold)/float64(restarted), restarted.Round(time.Millisecond))
	fmt.Printf("peak RSS (VmHWM, whole process incl. emulator and tree build): %s\n", vmHWM())
	return nil
}

// fileEventsDuring runs reconcile while file events arrive, one every 5 ms
// (a new public output, linked by HandleFile), and prints how long each
// event took: a file event does not wait for a whole reconcile.
func fileEventsDuring(ctx context.Context, h *filesystem.Handler, wps string, reconcile func() (filesystem.Stats, error)) error {
	dir := filepath.Join(wps, "bird0", "public", "events")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	done := make(chan struct{})
	type result struct {
		took []time.Duration
		err  error
	}
	res := make(chan result, 1)
	go func() {
		var r result
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				res <- r
				return
			case <-tick.C:
			}
			p := filepath.Join(dir, "f"+strconv.Itoa(i)+".nc")
			if r.err = os.WriteFile(p, nil, 0o644); r.err != nil {
				res <- r
				return
			}
			t0 := time.Now()
			r.err = h.HandleFile(ctx, handlers.FileEvent{Op: handlers.FileCreated, Path: p, Handler: filesystem.Name})
			r.took = append(r.took, time.Since(t0))
			if r.err != nil {
				res <- r
				return
			}
		}
	}()
	t0 := time.Now()
	_, err := reconcile()
	d := time.Since(t0)
	close(done)
	r := <-res
	if err != nil {
		return fmt.Errorf("reconcile with file events: %w", err)
	}
	if r.err != nil {
		return fmt.Errorf("file event: %w", r.err)
	}
	if len(r.took) == 0 {
		fmt.Printf("file events during an admin reconcile (%s): none\n", d.Round(time.Millisecond))
		return nil
	}
	slices.Sort(r.took)
	pct := func(p float64) time.Duration {
		return r.took[int(p*float64(len(r.took)-1))].Round(10 * time.Microsecond)
	}
	fmt.Printf("file events during an admin reconcile (%s): %d, each took p50 %s, p99 %s, max %s\n",
		d.Round(time.Millisecond), len(r.took), pct(0.5), pct(0.99), pct(1))
	return nil
}

// seed creates the users and the secure-data-proxy route; users whose index
// is not a multiple of 5 may read all of it.
func seed(mg *magpietest.Server, n int) ([]int, error) {
	svc, err := mg.AddService("secure-data-proxy", "api")
	if err != nil {
		return nil, err
	}
	route, err := mg.AddResource(svc, "wps_outputs", "route")
	if err != nil {
		return nil, err
	}
	ids := make([]int, n)
	for i := range n {
		name := "user" + strconv.Itoa(i)
		if ids[i], err = mg.AddUser(name, ""); err != nil {
			return nil, err
		}
		if i%5 != 0 {
			if err := mg.SetUserPermission(name, route, "read-allow-recursive"); err != nil {
				return nil, err
			}
		}
	}
	return ids, nil
}

// build writes the tree: jobs of 10 files, alternately public and user
// jobs, birds and users round-robin; and one workspace per user.
func build(wps, ws string, ids []int, files, birds int) error {
	for i := range ids {
		if err := os.MkdirAll(filepath.Join(ws, "user"+strconv.Itoa(i)), 0o755); err != nil {
			return err
		}
	}
	for j := 0; j*10 < files; j++ {
		bird := "bird" + strconv.Itoa(j%birds)
		dir := filepath.Join(wps, bird, "public", "job"+strconv.Itoa(j))
		if j%2 == 1 {
			dir = filepath.Join(wps, bird, "users", strconv.Itoa(ids[(j/2)%len(ids)]), "job"+strconv.Itoa(j))
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for k := 0; k < 10 && j*10+k < files; k++ {
			if err := os.WriteFile(filepath.Join(dir, "out"+strconv.Itoa(k)+".nc"), nil, 0o664); err != nil {
				return err
			}
		}
	}
	return nil
}

// cpAL times `cp -al src dst` (the second of two runs, so both see a warm
// cache) and removes the copy.
func cpAL(src, dst string) (time.Duration, error) {
	var d time.Duration
	for range 2 {
		t0 := time.Now()
		if out, err := exec.Command("cp", "-al", src, dst).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("cp -al: %w: %s", err, out)
		}
		d = time.Since(t0)
		if err := os.RemoveAll(dst); err != nil {
			return 0, err
		}
	}
	return d, nil
}

func vmHWM() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
