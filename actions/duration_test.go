package actions

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	const d = 24 * time.Hour
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"P7D", 7 * d},
		{"P30D", 30 * d},
		{"PT1H", time.Hour},
		{"P1DT2H", d + 2*time.Hour},
		{"P1W", 7 * d},
		{"P1M", 30 * d},
		{"P1Y", 365 * d},
		{"P1Y2M3W4DT5H6M7S", 365*d + 60*d + 21*d + 4*d + 5*time.Hour + 6*time.Minute + 7*time.Second},
		{"PT0S", 0},
		{"PT90M", 90 * time.Minute},
		{"PT0.5S", 500 * time.Millisecond},
		{"PT1,5H", 90 * time.Minute},
		{"P0.5D", 12 * time.Hour},
		{"P1DT1.25M", d + 75*time.Second},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseDurationRejects(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "not an ISO-8601 duration"},
		{"P", "not an ISO-8601 duration"},
		{"PT", "not an ISO-8601 duration"},
		{"P1DT", "not an ISO-8601 duration"},
		{"7D", "not an ISO-8601 duration"},
		{"P-1D", "not an ISO-8601 duration"},
		{"P1H", "not an ISO-8601 duration"},   // hours need T
		{"PT1D", "not an ISO-8601 duration"},  // days do not follow T
		{"P1D2Y", "not an ISO-8601 duration"}, // out of order
		{"P1.5DT2H", "only the last component"},
		{"P.5D", "not an ISO-8601 duration"},
		{"p1d", "not an ISO-8601 duration"},
		{"P9999999999Y", "too long"},
	}
	for _, tt := range tests {
		if got, err := ParseDuration(tt.in); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.want)
		}
	}
}

func TestFormatDurationRoundTrips(t *testing.T) {
	tests := map[time.Duration]string{
		0:                                   "PT0S",
		7 * 24 * time.Hour:                  "P7D",
		90 * time.Minute:                    "PT1H30M",
		24*time.Hour + 500*time.Millisecond: "P1DT0.5S",
		2*24*time.Hour + 3*time.Hour + 4*time.Second: "P2DT3H4S",
	}
	for d, want := range tests {
		got := formatDuration(d)
		if got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := ParseDuration(got); err != nil || back != d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", got, back, err, d)
		}
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("é", 70)
	if got := truncate(long); got != strings.Repeat("é", 64) {
		t.Errorf("truncate(70 × é) = %d characters, want 64", len([]rune(got)))
	}
	if got := truncate("Running"); got != "Running" {
		t.Errorf("truncate(Running) = %q", got)
	}
}
