// Command webhooks is a bounded loopback load run against a cowbird daemon:
// it starts `cowbird serve` on a temporary config and data dir, sends N user
// webhooks from C concurrent clients, and prints events/s, p50/p99 latency and
// the number of failures (which must be 0).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
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
	bin := flag.String("bin", "", "cowbird binary (default: go build ./cmd/cowbird into a temp dir)")
	flag.Parse()
	if err := run(*bin, *clients, *total); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(bin string, clients, total int) error {
	dir, err := os.MkdirTemp("", "cowbird-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if bin, err = daemon.Build(ctx, bin, dir); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, benchConfig, filepath.Join(dir, "workspaces")), 0o600); err != nil {
		return err
	}
	d, err := daemon.Start(ctx, bin, cfg, dir)
	if err != nil {
		return err
	}
	defer d.Stop()
	base := d.URL

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
	var next, failures atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				body := fmt.Appendf(nil, `{"event":"created","user_name":"user%d","callback_url":""}`, i)
				t0 := time.Now()
				resp, err := client.Post(base+"/webhooks/users", "application/json", bytes.NewReader(body))
				lat[c] = append(lat[c], time.Since(t0))
				if err != nil || resp.StatusCode != http.StatusOK {
					failures.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[int(float64(len(all)-1)*p)] }
	fmt.Printf("webhooks=%d clients=%d elapsed=%s events/s=%.0f p50=%s p99=%s failures=%d\n",
		len(all), clients, elapsed.Round(time.Millisecond), float64(len(all))/elapsed.Seconds(),
		pct(0.50), pct(0.99), failures.Load())
	if failures.Load() != 0 {
		return errors.New("some webhooks failed")
	}
	return nil
}
