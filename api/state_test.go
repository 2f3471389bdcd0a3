package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// fakeState is a state whose snapshot is a fixed text.
type fakeState string

func (f fakeState) Snapshot(w io.Writer, begin func(int64)) (int64, error) {
	begin(int64(len(f)))
	n, err := io.WriteString(w, string(f))
	return int64(n), err
}

// TestStateSnapshotForAdminsOnly: GET /state/snapshot streams the state to
// an admin token, and refuses anonymous callers.
func TestStateSnapshotForAdminsOnly(t *testing.T) {
	ts := httptest.NewServer(New(Options{State: fakeState("bbolt bytes"),
		Auth: Auth{AdminTokens: map[string]string{"ops": "s3cret"}}}).Handler())
	t.Cleanup(ts.Close)
	get := func(token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/state/snapshot", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get(""); code != http.StatusUnauthorized {
		t.Errorf("anonymous = %d %s, want 401", code, body)
	}
	if code, _ := get("wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong token = %d, want 401", code)
	}
	if code, body := get("s3cret"); code != http.StatusOK || body != "bbolt bytes" {
		t.Errorf("admin = %d %q, want the snapshot", code, body)
	}
}
