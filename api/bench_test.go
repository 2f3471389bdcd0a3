package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// BenchmarkUserWebhook serves user_created webhooks in process (no network,
// no journal) at the error log level the load bench runs at: the API
// layer's own cost per webhook.
func BenchmarkUserWebhook(b *testing.B) {
	f := newFixture(b, nil, Options{})
	f.srv.opts.Log.Logger.SetLevel(logrus.ErrorLevel)
	h := f.srv.Handler()
	const body = `{"event": "created", "user_name": "alice", "callback_url": "http://magpie/cb"}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/users", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
