package magpie

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/magpie/magpietest"
)

// callbackURLs receives Magpie's user webhooks and keeps each user's
// callback_url.
type callbackURLs struct {
	mu   sync.Mutex
	urls map[string]string
}

func (c *callbackURLs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		UserName    string `json:"user_name"`
		CallbackURL string `json:"callback_url"`
	}
	data, _ := io.ReadAll(r.Body)
	if json.Unmarshal(data, &body) == nil && body.CallbackURL != "" {
		c.mu.Lock()
		c.urls[body.UserName] = body.CallbackURL
		c.mu.Unlock()
	}
}

func (c *callbackURLs) get(user string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.urls[user]
}

func TestNotifyFailure(t *testing.T) {
	cb := &callbackURLs{urls: map[string]string{}}
	rcv := httptest.NewServer(cb)
	t.Cleanup(rcv.Close)
	srv := magpietest.NewServer(t, magpietest.Options{Webhooks: magpietest.CowbirdWebhooks(rcv.URL)})
	ok[int](t)(srv.AddUser("alice", ""))
	ok[int](t)(srv.AddUser("bob", ""))
	noErr(t, srv.WaitWebhooks(ctx(t)))
	alice := cb.get("alice")
	if alice == "" {
		t.Fatal("no callback_url for alice")
	}
	hc := &http.Client{Timeout: 5 * time.Second}

	noErr(t, NotifyFailure(ctx(t), hc, alice))
	if st, _ := srv.UserStatus("alice"); st != 2 {
		t.Errorf("alice's status after the callback = %d, want 2 (WebhookError)", st)
	}
	if st, _ := srv.UserStatus("bob"); st != 1 {
		t.Errorf("bob's status = %d, want 1 (OK)", st)
	}
	// Magpie's answer is ignored: a used (404) or expired (410) token is
	// not an error.
	noErr(t, NotifyFailure(ctx(t), hc, alice))
	srv.ExpireTokens()
	noErr(t, NotifyFailure(ctx(t), nil, cb.get("bob")))
	if st, _ := srv.UserStatus("bob"); st != 1 {
		t.Errorf("bob's status after an expired callback = %d, want 1 (OK)", st)
	}
}

func TestNotifyFailureSendsHEAD(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	if err := NotifyFailure(ctx(t), srv.Client(), srv.URL+"/magpie/tmp/token123"); err != nil {
		t.Errorf("500 answer: %v, want nil (the answer is ignored)", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "HEAD /magpie/tmp/token123" {
		t.Errorf("requests = %v, want [HEAD /magpie/tmp/token123]", got)
	}
}

func TestNotifyFailureErrors(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	loop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/magpie/tmp/secret-token?again="+r.URL.Query().Get("again")+"x", http.StatusFound)
	}))
	t.Cleanup(loop.Close)
	badRedirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "http://[::1"+r.URL.Path) // unparsable, quoted by net/http's error
		w.WriteHeader(http.StatusFound)
	}))
	t.Cleanup(badRedirect.Close)

	tests := []struct {
		name, url string
		hc        *http.Client
	}{
		{"not a url", "not a url /tmp/secret-token", nil},
		{"bad escape", "http://magpie/tmp/secret-token%zz", nil},
		{"no scheme", "magpie/tmp/secret-token", nil},
		{"connection refused", downURL + "/tmp/secret-token", nil},
		{"timeout", slow.URL + "/tmp/secret-token", &http.Client{Timeout: 50 * time.Millisecond}},
		{"redirect loop", loop.URL + "/magpie/tmp/secret-token", loop.Client()},
		{"unparsable redirect", badRedirect.URL + "/magpie/tmp/secret-token", badRedirect.Client()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := NotifyFailure(ctx(t), tt.hc, tt.url)
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("got %v, want an *Error", err)
			}
			if strings.Contains(err.Error(), "secret-token") {
				t.Errorf("error holds the token: %v", err)
			}
		})
	}
}
