// Command webhooks is a bounded loopback load run against a cowbird daemon:
// it starts `cowbird serve` on a temporary config and data dir, sends N user
// webhooks from C concurrent clients, and prints events/s, p50/p99 latency and
// the number of failures (which must be 0). Each client first sends one
// webhook that is not timed (its connection is opened then). By default the
// clients send as fast as they are answered (closed loop); with -rate the
// webhooks are due at that rate and timed from when they were due.
//
//	go run ./bench/webhooks -clients 200 -n 20000
//	go run ./bench/webhooks -rate 5000 -n 20000
//	go run ./bench/webhooks -bin before/cowbird,after/cowbird -rounds 3
//
// With several binaries (comma-separated), each round runs every binary once,
// in turn, on a fresh data dir, and the end prints each binary's median
// events/s and p99 and their ratios to the first binary's: on a shared
// machine, compare binaries within one run, not across runs.
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
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cowbird-go/cowbird/bench/daemon"
)

const benchConfig = `handlers:
  Catalog:
    active: true
    url: http://127.0.0.1:1/catalog
    workspace_dir: %s
  Thredds:
    active: true
  Nginx:
    active: true
`

func main() {
	clients := flag.Int("clients", 200, "concurrent clients")
	total := flag.Int("n", 20000, "webhooks to send")
	bins := flag.String("bin", "", "cowbird binary, or comma-separated binaries to compare (default: go build ./cmd/cowbird into a temp dir)")
	rounds := flag.Int("rounds", 1, "rounds; each runs every binary once")
	rate := flag.Float64("rate", 0, "offered load in webhooks/s, paced (open loop); 0: each client sends the next webhook as soon as the previous is answered")
	flag.Parse()
	if err := run(strings.Split(*bins, ","), *rounds, *clients, *total, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// result is one load run's outcome.
type result struct {
	rate     float64 // events/s
	p50, p99 time.Duration
}

func run(bins []string, rounds, clients, total int, rate float64) error {
	if rounds <= 0 || clients <= 0 || total <= 0 || rate < 0 {
		return errors.New("-rounds, -clients and -n must be positive, -rate not negative")
	}
	dir, err := os.MkdirTemp("", "cowbird-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i, bin := range bins {
		if bins[i], err = daemon.Build(ctx, bin, dir); err != nil {
			return err
		}
	}
	results := make([][]result, len(bins))
	for r := range rounds {
		for i, bin := range bins {
			res, err := load(ctx, bin, filepath.Join(dir, fmt.Sprintf("run-%d-%d", r, i)), clients, total, rate)
			if err != nil {
				return fmt.Errorf("%s: %w", bin, err)
			}
			offered := "closed loop"
			if rate > 0 {
				offered = fmt.Sprintf("offered %.0f/s", rate)
			}
			fmt.Printf("round %d  %s  webhooks=%d clients=%d (%s) events/s=%.0f p50=%s p99=%s failures=0\n",
				r+1, bin, total, clients, offered, res.rate, res.p50.Round(100*time.Microsecond), res.p99.Round(100*time.Microsecond))
			results[i] = append(results[i], res)
		}
	}
	if len(bins) == 1 {
		return nil
	}
	// Medians per binary, and per-round ratios to the first binary.
	for i, bin := range bins {
		var rate, p99, rateRatio, p99Ratio []float64
		for r, res := range results[i] {
			base := results[0][r]
			rate = append(rate, res.rate)
			p99 = append(p99, float64(res.p99))
			rateRatio = append(rateRatio, res.rate/base.rate)
			p99Ratio = append(p99Ratio, float64(res.p99)/float64(base.p99))
		}
		fmt.Printf("median  %s  events/s=%.0f p99=%s  vs %s: events/s x%.2f, p99 x%.2f (per-round ratios, median)\n",
			bin, daemon.Median(rate), time.Duration(daemon.Median(p99)).Round(100*time.Microsecond), bins[0], daemon.Median(rateRatio), daemon.Median(p99Ratio))
	}
	return nil
}

// load starts bin on a fresh data dir under dir and sends total user
// webhooks from clients concurrent clients. With rate > 0 the i-th webhook
// is due at i/rate s after the start and its latency counts from then, so
// that time spent waiting for a free client (the daemon falling behind) is
// counted too.
func load(ctx context.Context, bin, dir string, clients, total int, rate float64) (result, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{}, err
	}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, benchConfig, filepath.Join(dir, "workspaces")), 0o600); err != nil {
		return result{}, err
	}
	d, err := daemon.Start(ctx, bin, cfg, dir)
	if err != nil {
		return result{}, err
	}
	defer d.Stop()
	base := d.URL

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	var failures atomic.Int64
	post := func(name string) {
		body := fmt.Appendf(nil, `{"event":"created","user_name":"%s","callback_url":""}`, name)
		resp, err := client.Post(base+"/webhooks/users", "application/json", bytes.NewReader(body))
		if resp != nil {
			// Read to the end, so that the connection is reused:
			// closing an unread body closes the connection.
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			failures.Add(1)
		}
	}
	// Warm-up, not timed: one webhook per client, all at once, so that
	// every client's connection is open (200 connects and accepts at once
	// are not what a webhook costs).
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() { post(fmt.Sprintf("warmup%d", c)) })
	}
	wg.Wait()
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	noise := daemon.StartNoise()
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				t0 := time.Now()
				if rate > 0 {
					t0 = start.Add(time.Duration(float64(i-1) / rate * float64(time.Second)))
					time.Sleep(time.Until(t0))
				}
				post(fmt.Sprintf("user%d", i))
				lat[c] = append(lat[c], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	fmt.Println(noise.Stop())
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[int(float64(len(all)-1)*p)] }
	if n := failures.Load(); n != 0 {
		return result{}, fmt.Errorf("%d webhooks failed", n)
	}
	return result{rate: float64(len(all)) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99)}, nil
}
