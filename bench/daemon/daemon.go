// Package daemon runs the cowbird binary for the benchmark drivers: build
// it, serve a config on a free loopback port, wait until it is ready.
package daemon

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// Build returns bin, or when it is empty builds ./cmd/cowbird into dir and
// returns that path.
func Build(ctx context.Context, bin, dir string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	bin = filepath.Join(dir, "cowbird")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/cowbird")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build cowbird: %w", err)
	}
	return bin, nil
}

// ReadyTimeout bounds how long Start waits for /readyz 200.
var ReadyTimeout = 30 * time.Second

// Daemon is a running `cowbird serve`.
type Daemon struct {
	// URL is the daemon's base URL, e.g. http://127.0.0.1:41234.
	URL string
	cmd *exec.Cmd
}

// Start runs `bin serve` with config and a data dir in dir, logging at
// error level plus env, and waits until /readyz answers 200.
func Start(ctx context.Context, bin, config, dir string, env ...string) (*Daemon, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", config, "--addr", addr, "--data-dir", filepath.Join(dir, "data"))
	cmd.Env = append(append(os.Environ(), "COWBIRD_LOG_LEVEL=error"), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start cowbird: %w", err)
	}
	d := &Daemon{URL: "http://" + addr, cmd: cmd}
	if err := d.waitReady(ctx); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Stop interrupts the daemon and waits for it to exit.
func (d *Daemon) Stop() {
	_ = d.cmd.Process.Signal(os.Interrupt)
	_ = d.cmd.Wait()
}

func (d *Daemon) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(ReadyTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("daemon not ready at %s", d.URL)
}

// Noise measures how late the scheduler wakes a goroutine that sleeps
// 1 ms, for as long as it runs: on a shared machine, the latencies a bench
// reports cannot be told apart from this floor. Stop ends it and returns
// the 99th percentile and the maximum of the overshoot.
type Noise struct {
	stop chan struct{}
	done chan []time.Duration
}

// StartNoise starts measuring.
func StartNoise() *Noise {
	n := &Noise{stop: make(chan struct{}), done: make(chan []time.Duration, 1)}
	go func() {
		var late []time.Duration
		for {
			select {
			case <-n.stop:
				n.done <- late
				return
			default:
			}
			t0 := time.Now()
			time.Sleep(time.Millisecond)
			late = append(late, time.Since(t0)-time.Millisecond)
		}
	}()
	return n
}

// Stop ends the measure and describes it.
func (n *Noise) Stop() string {
	close(n.stop)
	late := <-n.done
	if len(late) == 0 {
		return "scheduler noise: no sample"
	}
	slices.Sort(late)
	pct := func(p float64) time.Duration { return late[int(float64(len(late)-1)*p)].Round(10 * time.Microsecond) }
	return fmt.Sprintf("scheduler noise (sleep 1ms overshoot, in the bench process): p50 %s p99 %s max %s",
		pct(0.5), pct(0.99), pct(1))
}

// Median is the median of xs (the mean of the middle two for an even count).
func Median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Metric reads one unlabelled sample from a Prometheus text endpoint.
func Metric(ctx context.Context, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("get metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("metric %s: %w", name, err)
			}
			return f, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read metrics: %w", err)
	}
	return 0, fmt.Errorf("metric %s: not found", name)
}

// MagpieRequests is the number of requests the emulator has answered.
func MagpieRequests(mg *magpietest.Server) int {
	n := 0
	for _, r := range magpietest.Routes() {
		n += mg.Hits(r)
	}
	return n
}

// Memory is the VmRSS and VmHWM (peak) of process pid, "unknown" when
// /proc does not tell.
func Memory(pid int) (rss, hwm string) {
	rss, hwm = "unknown", "unknown"
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return rss, hwm
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rss = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			hwm = strings.TrimSpace(v)
		}
	}
	return rss, hwm
}

// FileSystemConfig is the config of the drivers that run the Magpie and
// FileSystem handlers: format it with the Magpie emulator's URL and the
// tree's directory (holding ws, jupyterhub and wps).
const FileSystemConfig = `handlers:
  Magpie:
    active: true
    url: %[1]s
    admin_user: admin
    admin_password: qwertyqwerty
  FileSystem:
    active: true
    priority: 1
    workspace_dir: %[2]s/ws
    jupyterhub_user_data_dir: %[2]s/jupyterhub
    wps_outputs_dir: %[2]s/wps
`
