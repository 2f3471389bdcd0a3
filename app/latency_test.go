package app

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestFileEventLatencyMetric: once a public WPS output is linked into the
// public workspace, its file events are timed in
// cowbird_file_event_latency_seconds for FileSystem, the handler watching
// the WPS outputs, with the documented buckets.
func TestFileEventLatencyMetric(t *testing.T) {
	b := startBirdhouse(t)
	src := filepath.Join(b.dir, "wpsoutputs", "finch", "public", "j1", "out.nc")
	must(t, os.MkdirAll(filepath.Dir(src), 0o755))
	must(t, os.WriteFile(src, []byte("x"), 0o644))
	link := filepath.Join(b.dir, "user_workspaces", "public", "wps_outputs", "finch", "public", "j1", "out.nc")
	eventually(t, "hardlink of the public WPS output", func() bool {
		a, errA := os.Stat(src)
		l, errL := os.Stat(link)
		return errA == nil && errL == nil && os.SameFile(a, l)
	})

	const series = `cowbird_file_event_latency_seconds_count{handler="FileSystem",op="created"} `
	var metrics string
	eventually(t, "a timed file event in /metrics", func() bool {
		metrics = get(t, b.base+"/metrics")
		for _, line := range strings.Split(metrics, "\n") {
			if n, ok := strings.CutPrefix(line, series); ok {
				count, err := strconv.ParseFloat(n, 64)
				return err == nil && count > 0
			}
		}
		return false
	})
	for _, le := range []string{"0.0005", "10", "+Inf"} {
		if want := `cowbird_file_event_latency_seconds_bucket{handler="FileSystem",op="created",le="` + le + `"} `; !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
