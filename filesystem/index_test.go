package filesystem

import (
	"reflect"
	"testing"
)

// TestLeafEncoding round-trips leaves through their stored form and
// refuses every truncation and a wrong version.
func TestLeafEncoding(t *testing.T) {
	for _, l := range []leaf{
		{mirror: "public/wps_outputs/weaver/public/job1", src: dirID{12, 1_700_000_000_123_456_789}, dst: dirID{1 << 40, -5}, files: 3},
		{mirror: "alice/wps_outputs/raven/job2", src: dirID{7, 8}, dst: dirID{9, 10}, files: 10,
			names: "a.nc/b.nc/c.nc/d.nc/e.nc/f.nc/g.nc/h.nc/i.nc", readable: []bool{true, false, true, true, false, false, true, true, false}},
	} {
		b := l.encode()
		got, ok := decodeLeaf(b)
		if !ok || !reflect.DeepEqual(got, l) {
			t.Errorf("round trip of %+v: %+v, %v", l, got, ok)
		}
		for n := range len(b) {
			if _, ok := decodeLeaf(b[:n]); ok {
				t.Errorf("truncated to %d bytes: accepted", n)
			}
		}
		if _, ok := decodeLeaf(append(b, 0)); ok {
			t.Error("trailing byte accepted")
		}
		b[0] = leafVersion + 1
		if _, ok := decodeLeaf(b); ok {
			t.Error("other version accepted")
		}
	}
}
