package actions

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const day = 24 * time.Hour

// durationUnits are the ISO-8601 designators in order, with their nominal
// lengths: a year is 365 days and a month 30 days.
var durationUnits = []time.Duration{365 * day, 30 * day, 7 * day, day, time.Hour, time.Minute, time.Second}

var durationRE = regexp.MustCompile(`^P(?:(\d+(?:[.,]\d+)?)Y)?(?:(\d+(?:[.,]\d+)?)M)?(?:(\d+(?:[.,]\d+)?)W)?(?:(\d+(?:[.,]\d+)?)D)?` +
	`(?:T(?:(\d+(?:[.,]\d+)?)H)?(?:(\d+(?:[.,]\d+)?)M)?(?:(\d+(?:[.,]\d+)?)S)?)?$`)

// ParseDuration parses an ISO-8601 duration PnYnMnWnDTnHnMnS. Any
// component may be left out, but not all of them; only the last one present
// may have a decimal fraction (with '.' or ','). Years and months have their
// nominal lengths, 365 and 30 days.
func ParseDuration(s string) (time.Duration, error) {
	m := durationRE.FindStringSubmatch(s)
	if m == nil || s == "P" || strings.HasSuffix(s, "T") {
		return 0, fmt.Errorf("%q is not an ISO-8601 duration (PnYnMnWnDTnHnMnS)", s)
	}
	var total float64
	fraction := false
	for i, v := range m[1:] {
		if v == "" {
			continue
		}
		if fraction {
			return 0, fmt.Errorf("duration %q: only the last component may have a fraction", s)
		}
		fraction = strings.ContainsAny(v, ".,")
		n, err := strconv.ParseFloat(strings.Replace(v, ",", ".", 1), 64)
		if err != nil {
			return 0, fmt.Errorf("duration %q: %w", s, err)
		}
		total += n * float64(durationUnits[i])
	}
	if total >= math.MaxInt64 {
		return 0, fmt.Errorf("duration %q is too long", s)
	}
	return time.Duration(math.Round(total)), nil
}

// formatDuration writes a non-negative d as an ISO-8601 duration in days,
// hours, minutes and (fractional) seconds, e.g. "P7D" or "P1DT2H0.5S".
func formatDuration(d time.Duration) string {
	var b strings.Builder
	b.WriteString("P")
	if days := d / day; days > 0 {
		fmt.Fprintf(&b, "%dD", days)
		d -= days * day
	}
	if d == 0 {
		if b.Len() == 1 {
			return "PT0S"
		}
		return b.String()
	}
	b.WriteString("T")
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dH", h)
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%dM", m)
		d -= m * time.Minute
	}
	if d > 0 {
		b.WriteString(strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "S")
	}
	return b.String()
}
