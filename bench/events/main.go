// Command events measures the file-event latency of a running cowbird
// daemon: the time from creating a WPS output file to its hardlink being
// visible in the owner's workspace.
//
//	go run ./bench/events -rate 200 -seconds 10 -burst 50000
//	go run ./bench/events -bin before/cowbird,after/cowbird -rounds 2
//
// It builds and starts `cowbird serve` with the FileSystem and Magpie
// handlers against the in-process Magpie emulator, creates files at a steady
// rate, then a burst large enough to overflow the inotify queue, and prints
// p50/p99/max latencies, the links missing at the end (must be 0), the
// daemon's inotify overflows and peak RSS, the Magpie requests, and the
// burst's time as a ratio to `cp -al` of the same tree. With several
// binaries, each round runs every binary in turn and the end prints the
// medians and each binary's ratios to the first one's, taken within rounds.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cowbird-go/cowbird/bench/daemon"
	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

const (
	benchUser   = "bench"
	filesPerJob = 10
	pollEvery   = time.Millisecond // pause between sweeps of the pending links...
	pollIdle    = 4                // ...or this many times the last sweep's duration, if longer
	steadyDrain = time.Minute      // wait for the last steady links
	burstDrain  = 5 * time.Minute  // wait for every burst link
)

func main() {
	rate := flag.Int("rate", 200, "steady phase: files created per second")
	seconds := flag.Int("seconds", 10, "steady phase: duration in seconds")
	burst := flag.Int("burst", 50000, "burst phase: files created as fast as possible")
	dirsFirst := flag.Bool("dirs-first", true, "burst phase: create the directories and wait until they are watched before the files")
	bins := flag.String("bin", "", "cowbird binary, or comma-separated binaries to compare (default: go build ./cmd/cowbird into a temp dir)")
	rounds := flag.Int("rounds", 1, "rounds; each runs every binary once")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := compare(ctx, strings.Split(*bins, ","), *rounds, *rate, *seconds, *burst, *dirsFirst)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "events bench:", err)
		os.Exit(1)
	}
}

// summary holds the figures of one run compared across binaries.
type summary struct {
	steadyP50, steadyP99, steadyMax time.Duration
	burstAll, burstP50, burstP99    time.Duration
	burstTail                       time.Duration // last link after the last creation
	burstCpAL                       float64       // burst all-links time / cp -al
}

// compare runs every binary once per round, then, with more than one,
// prints the medians and the ratios to the first binary's.
func compare(ctx context.Context, bins []string, rounds, rate, seconds, burst int, dirsFirst bool) error {
	if rounds <= 0 {
		return errors.New("-rounds must be positive")
	}
	dir, err := os.MkdirTemp("", "cowbird-bench-events-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for i, bin := range bins {
		if bins[i], err = daemon.Build(ctx, bin, dir); err != nil {
			return err
		}
	}
	sums := make([][]summary, len(bins))
	for r := range rounds {
		for i, bin := range bins {
			fmt.Printf("== round %d: %s\n", r+1, bin)
			var sum summary
			if err := run(ctx, bin, rate, seconds, burst, dirsFirst, &sum); err != nil {
				return fmt.Errorf("%s: %w", bin, err)
			}
			sums[i] = append(sums[i], sum)
		}
	}
	if len(bins) == 1 {
		return nil
	}
	figures := []struct {
		name string
		get  func(summary) float64
	}{
		{"steady p50", func(s summary) float64 { return float64(s.steadyP50) }},
		{"steady p99", func(s summary) float64 { return float64(s.steadyP99) }},
		{"steady max", func(s summary) float64 { return float64(s.steadyMax) }},
		{"burst all links", func(s summary) float64 { return float64(s.burstAll) }},
		{"burst tail", func(s summary) float64 { return float64(s.burstTail) }},
		{"burst p50", func(s summary) float64 { return float64(s.burstP50) }},
		{"burst p99", func(s summary) float64 { return float64(s.burstP99) }},
		{"burst / cp -al", func(s summary) float64 { return s.burstCpAL }},
	}
	fmt.Println("== medians over rounds; ratio = this binary / the first, per round, median")
	for _, f := range figures {
		fmt.Printf("%-16s", f.name)
		for i := range bins {
			var vals, ratios []float64
			for r := range rounds {
				v, base := f.get(sums[i][r]), f.get(sums[0][r])
				vals = append(vals, v)
				ratios = append(ratios, v/base)
			}
			val := daemon.Median(vals)
			shown := fmt.Sprintf("%.1fx", val)
			if f.name != "burst / cp -al" {
				shown = time.Duration(val).Round(100 * time.Microsecond).String()
			}
			fmt.Printf("  %s: %s (x%.3f)", filepath.Base(filepath.Dir(bins[i]))+"/"+filepath.Base(bins[i]), shown, daemon.Median(ratios))
		}
		fmt.Println()
	}
	return nil
}

func run(ctx context.Context, bin string, rate, seconds, burst int, dirsFirst bool, sum *summary) error {
	if rate <= 0 || seconds <= 0 || burst <= 0 {
		return errors.New("-rate, -seconds and -burst must be positive")
	}
	dir, err := os.MkdirTemp("", "cowbird-bench-events-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	mg := magpietest.New(magpietest.Options{QuietSeeding: true})
	if err := mg.Start(); err != nil {
		return fmt.Errorf("start magpie emulator: %w", err)
	}
	defer mg.Close()
	uid, err := seed(mg)
	if err != nil {
		return fmt.Errorf("seed magpie emulator: %w", err)
	}

	if err := os.Mkdir(filepath.Join(dir, "ws"), 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, daemon.FileSystemConfig, mg.URL(), dir), 0o600); err != nil {
		return err
	}
	d, err := daemon.Start(ctx, bin, cfg, dir)
	if err != nil {
		return err
	}
	defer d.Stop()
	base := d.URL
	if err := userCreated(ctx, base); err != nil {
		return err
	}
	wps, links := filepath.Join(dir, "wps"), filepath.Join(dir, "ws", benchUser, "wps_outputs")
	if _, err := os.Stat(filepath.Dir(links)); err != nil {
		return fmt.Errorf("workspace after user_created: %w", err)
	}
	queued, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		return err
	}
	fmt.Printf("inotify max_queued_events=%s, magpie requests at start (incl. user_created): %d\n",
		strings.TrimSpace(string(queued)), daemon.MagpieRequests(mg))

	// Steady phase: one file every 1/rate s, paced against the start time.
	before := daemon.MagpieRequests(mg)
	hist0, err := fileEventHistogram(ctx, base+"/metrics")
	if err != nil {
		return err
	}
	n := rate * seconds
	noise := daemon.StartNoise()
	period := time.Second / time.Duration(rate)
	steady, err := phase(ctx, "steady", fileSet{wps, links, "bird", uid}, n, steadyDrain, func(create func(int) error) error {
		start := time.Now()
		for i := range n {
			time.Sleep(time.Until(start.Add(time.Duration(i) * period)))
			if err := create(i); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("steady: %d files at %d/s  %s  magpie requests %d\n", n, rate, steady, daemon.MagpieRequests(mg)-before)
	fmt.Printf("        %s\n", noise.Stop())
	hist1, err := fileEventHistogram(ctx, base+"/metrics")
	if err != nil {
		return err
	}
	fmt.Printf("        the daemon's own cowbird_file_event_latency_seconds (FileSystem, created) over the phase: %s\n", histogramSummary(hist0, hist1))

	// Burst phase: -burst files as fast as possible, filesPerJob per new
	// directory. With -dirs-first the directories come first and the files
	// only once the daemon watches them all, so that every file queues an
	// inotify event; otherwise the daemon, busy with the first events,
	// watches most new directories late and finds their files by scanning.
	before = daemon.MagpieRequests(mg)
	fs := fileSet{wps, links, "burst", uid}
	jobs := (burst + filesPerJob - 1) / filesPerJob
	var watched time.Duration
	burstRes, err := phase(ctx, "burst", fs, burst, burstDrain, func(create func(int) error) error {
		if dirsFirst {
			t0 := time.Now()
			if err := makeWatchedDirs(ctx, base+"/metrics", fs, jobs); err != nil {
				return err
			}
			watched = time.Since(t0)
		}
		for i := range burst {
			if err := create(i); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var counts [3]float64 // overflows, events delivered, events dropped after an overflow
	for i, name := range []string{"cowbird_inotify_overflows_total", "cowbird_monitor_events_total", "cowbird_monitor_dropped_events_total"} {
		if counts[i], err = daemon.Metric(ctx, base+"/metrics", name); err != nil {
			return err
		}
	}
	fmt.Printf("burst: %d files in %d new dirs (dirs first: %t, watched after %s), created after %s, all links present after %s (tail %s)\n"+
		"       %s  inotify overflows %.0f  file events delivered %.0f, dropped (covered by the overflow's reconcile) %.0f  magpie requests %d\n",
		burst, jobs, dirsFirst, watched.Round(time.Millisecond), burstRes.created.Round(time.Millisecond),
		burstRes.total.Round(time.Millisecond), max(0, burstRes.total-burstRes.created).Round(time.Millisecond),
		burstRes, counts[0], counts[1], counts[2], daemon.MagpieRequests(mg)-before)

	cpal, err := cpAL(ctx, filepath.Join(wps, fs.bird), filepath.Join(dir, "cpal"))
	if err != nil {
		return err
	}
	fmt.Printf("cp -al of the burst tree: %s  burst all-links time / cp -al = %.1fx\n",
		cpal.Round(time.Millisecond), float64(burstRes.total)/float64(cpal))
	_, hwm := daemon.Memory(d.Pid())
	fmt.Printf("daemon VmHWM %s, magpie requests per run %d\n", hwm, daemon.MagpieRequests(mg))
	*sum = summary{
		steadyP50: steady.pct(0.5), steadyP99: steady.pct(0.99), steadyMax: steady.pct(1),
		burstAll: burstRes.total, burstP50: burstRes.pct(0.5), burstP99: burstRes.pct(0.99),
		burstTail: max(0, burstRes.total-burstRes.created),
		burstCpAL: float64(burstRes.total) / float64(cpal),
	}
	if m := steady.missing + burstRes.missing; m != 0 {
		return fmt.Errorf("%d links missing", m)
	}
	return nil
}

// seed creates the bench user in group users, and a secure-data-proxy
// wps_outputs route that group users may read recursively; it returns the
// user's id.
func seed(mg *magpietest.Server) (int, error) {
	uid, err := mg.AddUser(benchUser, "", "users")
	if err != nil {
		return 0, err
	}
	svc, err := mg.AddService("secure-data-proxy", "api")
	if err != nil {
		return 0, err
	}
	route, err := mg.AddResource(svc, "wps_outputs", "route")
	if err != nil {
		return 0, err
	}
	return uid, mg.SetGroupPermission("users", route, "read-allow-recursive")
}

// fileSet names the i-th file of a phase and the hardlink it must get:
// <wps>/<bird>/users/<uid>/job<i/10>/f<i%10>.nc and <links>/<bird>/job<i/10>/f<i%10>.nc.
type fileSet struct {
	wps, links, bird string
	uid              int
}

func (s fileSet) paths(i int) (src, link string) {
	rel := filepath.Join("job"+strconv.Itoa(i/filesPerJob), "f"+strconv.Itoa(i%filesPerJob)+".nc")
	return filepath.Join(s.userDir(), rel), filepath.Join(s.links, s.bird, rel)
}

// userDir is <wps>/<bird>/users/<uid>.
func (s fileSet) userDir() string {
	return filepath.Join(s.wps, s.bird, "users", strconv.Itoa(s.uid))
}

// makeWatchedDirs creates the job directories of fs (and the user
// directory's three new levels), then waits until the daemon's
// cowbird_inotify_watches has grown by as many.
func makeWatchedDirs(ctx context.Context, metrics string, fs fileSet, jobs int) error {
	before, err := daemon.Metric(ctx, metrics, "cowbird_inotify_watches")
	if err != nil {
		return err
	}
	for j := range jobs {
		if err := os.MkdirAll(filepath.Join(fs.userDir(), "job"+strconv.Itoa(j)), 0o755); err != nil {
			return err
		}
	}
	want := before + float64(jobs+3)
	deadline := time.Now().Add(burstDrain)
	for {
		n, err := daemon.Metric(ctx, metrics, "cowbird_inotify_watches")
		switch {
		case err != nil:
			return err
		case n >= want:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("inotify watches: %.0f after %s, want %.0f", n, burstDrain, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// probe is a created file whose link is awaited.
type probe struct {
	link    string
	created time.Time
}

// result is a phase's outcome.
type result struct {
	lat     []time.Duration // sorted latencies of the links seen
	missing int             // links still absent at the end
	created time.Duration   // time from the phase's start to the last creation
	total   time.Duration   // time from the phase's start to the last link seen
}

// pct is the p-quantile of the latencies (0 if none).
func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[int(float64(len(r.lat)-1)*p)]
}

func (r result) String() string {
	if len(r.lat) == 0 {
		return fmt.Sprintf("no links seen, missing %d", r.missing)
	}
	pct := func(p float64) time.Duration { return r.pct(p).Round(100 * time.Microsecond) }
	return fmt.Sprintf("latency p50 %s p90 %s p99 %s max %s, missing %d", pct(0.5), pct(0.9), pct(0.99), pct(1), r.missing)
}

// phase creates files 0..n-1 of fs through the create function it hands to
// gen, while a poller waits for their links; after the last creation it
// waits at most drain for the remaining links.
func phase(ctx context.Context, name string, fs fileSet, n int, drain time.Duration, gen func(create func(int) error) error) (result, error) {
	probes := make(chan probe, n)
	done := make(chan result, 1)
	start := time.Now()
	go func() { done <- poll(ctx, probes, drain, start) }()
	err := gen(func(i int) error {
		src, link := fs.paths(i)
		if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(src, nil, 0o644); err != nil {
			return err
		}
		probes <- probe{link, time.Now()}
		return nil
	})
	created := time.Since(start)
	close(probes)
	res := <-done
	res.created = created
	if err != nil {
		return res, fmt.Errorf("%s phase: %w", name, err)
	}
	return res, nil
}

// poll sweeps the pending links until probes is closed and every link is
// present, the drain deadline passes, or ctx ends. Between sweeps it pauses
// pollEvery, or pollIdle times the sweep's duration, so that it takes at
// most a fifth of a CPU. Links are checked in creation order; a link whose
// directory is absent skips the next links of that directory in the sweep.
func poll(ctx context.Context, probes <-chan probe, drain time.Duration, start time.Time) result {
	var (
		res      result
		pending  []probe
		deadline time.Time
	)
	for {
	receive:
		for deadline.IsZero() {
			select {
			case p, ok := <-probes:
				if !ok {
					deadline = time.Now().Add(drain)
					break receive
				}
				pending = append(pending, p)
			default:
				break receive
			}
		}
		swept, missingDir := time.Now(), ""
		pending = slices.DeleteFunc(pending, func(p probe) bool {
			dir := filepath.Dir(p.link)
			if dir == missingDir {
				return false
			}
			if _, err := os.Lstat(p.link); err != nil {
				if _, err := os.Lstat(dir); err != nil {
					missingDir = dir
				}
				return false
			}
			now := time.Now()
			res.lat = append(res.lat, now.Sub(p.created))
			res.total = now.Sub(start)
			return true
		})
		if !deadline.IsZero() && (len(pending) == 0 || time.Now().After(deadline)) || ctx.Err() != nil {
			break
		}
		time.Sleep(max(pollEvery, pollIdle*time.Since(swept)))
	}
	res.missing = len(pending)
	slices.Sort(res.lat)
	return res
}

// userCreated sends the user_created webhook for the bench user.
func userCreated(ctx context.Context, base string) error {
	body := fmt.Appendf(nil, `{"event":"created","user_name":%q,"callback_url":""}`, benchUser)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/webhooks/users", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("user_created webhook: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("user_created webhook: status %d: %s", resp.StatusCode, msg)
	}
	return nil
}

// cpAL times `cp -al src dst`.
func cpAL(ctx context.Context, src, dst string) (time.Duration, error) {
	t0 := time.Now()
	if out, err := exec.CommandContext(ctx, "cp", "-al", src, dst).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("cp -al: %w: %s", err, out)
	}
	return time.Since(t0), nil
}

// latencyBounds are the bucket bounds of cowbird_file_event_latency_seconds.
var latencyBounds = []string{"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}

// fileEventHistogram reads the daemon's cumulative bucket counts of
// cowbird_file_event_latency_seconds for FileSystem's created events, in
// latencyBounds order; nil when the daemon does not export it (an older
// binary).
func fileEventHistogram(ctx context.Context, metrics string) ([]float64, error) {
	out := make([]float64, len(latencyBounds))
	for i, le := range latencyBounds {
		name := `cowbird_file_event_latency_seconds_bucket{handler="FileSystem",op="created",le="` + le + `"}`
		v, err := daemon.Metric(ctx, metrics, name)
		if err != nil && i == 0 && strings.HasSuffix(err.Error(), "not found") {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// histogramSummary gives the events timed between two readings and the
// bucket bounds their p50 and p99 fall under (a histogram tells no more).
func histogramSummary(before, after []float64) string {
	if before == nil || after == nil {
		return "not exported by this binary"
	}
	n := after[len(after)-1] - before[len(before)-1]
	if n == 0 {
		return "no event"
	}
	bound := func(q float64) string {
		for i := range after {
			if after[i]-before[i] >= q*n {
				return latencyBounds[i] + " s"
			}
		}
		return "+Inf"
	}
	return fmt.Sprintf("%.0f events, p50 <= %s, p99 <= %s", n, bound(0.5), bound(0.99))
}
