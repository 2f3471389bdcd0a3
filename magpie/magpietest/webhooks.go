package magpietest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Webhook actions (spec A.1.2).
const (
	actionCreateUser = "create_user"
	actionDeleteUser = "delete_user"
)

var webhookActions = []string{actionCreateUser, actionDeleteUser, "update_user_status",
	"create_user_permission", "delete_user_permission", "create_group_permission", "delete_group_permission"}

var formatTypes = map[string]string{"json": "application/json", "html": "text/html",
	"text": "text/plain", "plain": "text/plain", "xml": "text/xml"}

// Webhook is one entry of Magpie's webhooks configuration (spec A.1.1).
type Webhook struct {
	Name   string `yaml:"name"`
	Action string `yaml:"action"`
	Method string `yaml:"method"`
	URL    string `yaml:"url"`
	// Format is json (default), html, text, plain, xml or a MIME type.
	Format string `yaml:"format"`
	// Payload is templated (spec A.1.3) and sent as the body; nil sends none.
	Payload any `yaml:"payload"`
}

// validate checks a webhook the way Magpie does at startup.
func (h Webhook) validate() error {
	switch {
	case h.Name == "":
		return errors.New("name: empty")
	case !slices.Contains(webhookActions, h.Action):
		return fmt.Errorf("action: %q is not one of %s", h.Action, strings.Join(webhookActions, ", "))
	case !slices.Contains([]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}, h.Method):
		return fmt.Errorf("method: %q is not an HTTP method Magpie allows", h.Method)
	}
	if u, err := url.Parse(h.URL); err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("url: %q needs a scheme and a host", h.URL)
	}
	if h.Format != "" && formatTypes[h.Format] == "" && !strings.Contains(h.Format, "/") {
		return fmt.Errorf("format: %q is unknown", h.Format)
	}
	return nil
}

func (h Webhook) contentType() string {
	if h.Format == "" {
		return "application/json"
	}
	if t := formatTypes[h.Format]; t != "" {
		return t
	}
	return h.Format
}

// CowbirdWebhooks returns bird-house's webhook configuration for cowbird at
// cowbirdURL: create_user, delete_user, create_user_permission and
// delete_user_permission (spec A.1.1).
func CowbirdWebhooks(cowbirdURL string) []Webhook {
	base := strings.TrimRight(cowbirdURL, "/")
	return []Webhook{
		{Name: "cowbird_create_user", Action: "create_user", Method: "POST", URL: base + "/webhooks/users",
			Payload: map[string]any{"event": "created", "user_name": "{{user.name}}", "callback_url": "{{callback_url}}"}},
		{Name: "cowbird_remove_user", Action: "delete_user", Method: "POST", URL: base + "/webhooks/users",
			Payload: map[string]any{"event": "deleted", "user_name": "{{user.name}}"}},
		permissionWebhook(base, "cowbird_create_permission", "create_user_permission", "created", "user"),
		permissionWebhook(base, "cowbird_delete_permission", "delete_user_permission", "deleted", "user"),
	}
}

// CowbirdGroupWebhooks returns the group-permission webhooks bird-house does
// not configure but cowbird accepts: the permission payload with "group".
func CowbirdGroupWebhooks(cowbirdURL string) []Webhook {
	base := strings.TrimRight(cowbirdURL, "/")
	return []Webhook{
		permissionWebhook(base, "cowbird_create_group_permission", "create_group_permission", "created", "group"),
		permissionWebhook(base, "cowbird_delete_group_permission", "delete_group_permission", "deleted", "group"),
	}
}

func permissionWebhook(base, name, action, event, target string) Webhook {
	return Webhook{Name: name, Action: action, Method: "POST", URL: base + "/webhooks/permissions",
		Payload: map[string]any{"event": event, "service_name": "{{service.name}}", "service_type": "{{service.type}}",
			"resource_id": "{{resource.id}}", "resource_full_name": "{{resource.name}}",
			"name": "{{permission.name}}", "access": "{{permission.access}}", "scope": "{{permission.scope}}",
			target: "{{" + target + ".name}}"}}
}

// SetWebhooks replaces the configured webhooks. Like Magpie, one invalid
// entry rejects the whole list; the error names each bad field.
func (s *Server) SetWebhooks(hooks []Webhook) error {
	var errs error
	byAction := map[string][]Webhook{}
	for i, h := range hooks {
		if err := h.validate(); err != nil {
			errs = errors.Join(errs, fmt.Errorf("webhooks[%d].%w", i, err))
		}
		byAction[h.Action] = append(byAction[h.Action], h)
	}
	if errs != nil {
		return errs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = byAction
	return nil
}

var (
	tmplParam  = regexp.MustCompile(`\{\{([A-Za-z_.]+)\}\}`)
	tmplExact  = regexp.MustCompile(`^\{\{([A-Za-z_.]+)\}\}$`)
	tmplQuoted = regexp.MustCompile(`^(?:'\{\{([A-Za-z_.]+)\}\}'|"\{\{([A-Za-z_.]+)\}\}")$`)
)

// render templates a payload (spec A.1.3): keys and values are walked, an
// exact "{{p}}" keeps p's type, a quoted one gives its string form, and
// other occurrences are replaced by the string form. Unknown parameters stay.
func render(v any, params map[string]any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[pyStr(render(k, params))] = render(x, params)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[pyStr(render(pyStr(k), params))] = render(x, params)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = render(x, params)
		}
		return out
	case string:
		if m := tmplExact.FindStringSubmatch(t); m != nil {
			if val, ok := params[m[1]]; ok {
				return val
			}
		}
		if m := tmplQuoted.FindStringSubmatch(t); m != nil {
			if val, ok := params[m[1]+m[2]]; ok {
				return pyStr(val)
			}
		}
		return tmplParam.ReplaceAllStringFunc(t, func(p string) string {
			if val, ok := params[p[2:len(p)-2]]; ok {
				return pyStr(val)
			}
			return p
		})
	}
	return v
}

// pyStr is Python's str() for the parameter values Magpie provides.
func pyStr(v any) string {
	switch t := v.(type) {
	case nil:
		return "None"
	case string:
		return t
	case bool:
		if t {
			return "True"
		}
		return "False"
	case int:
		return strconv.Itoa(t)
	}
	return fmt.Sprint(v)
}

// fire renders and queues the webhooks configured for action; callers hold s.mu.
func (s *Server) fire(action string, params map[string]any) {
	for _, h := range s.hooks[action] {
		j := job{hook: h}
		if h.Payload != nil {
			j.body = render(h.Payload, params)
		}
		if action == actionCreateUser {
			j.userID, _ = params["user.id"].(int)
		}
		s.wh.enqueue(j)
	}
}

// Delivery records one fired webhook.
type Delivery struct {
	Name, Action, Method, URL string
	// Body is the rendered payload as sent (JSON for the json format).
	Body []byte
	// Status is the receiver's answer; 0 with Err set on a transport error.
	Status int
	Err    string
	// Dropped is set when a DropWebhooks fault suppressed the request.
	Dropped bool
}

// WebhookFault is a delivery fault injected with FaultWebhooks.
type WebhookFault int

// The delivery faults.
const (
	// DropWebhooks records the webhooks but never sends them.
	DropWebhooks WebhookFault = iota + 1
	// DuplicateWebhooks sends each webhook twice.
	DuplicateWebhooks
	// ReorderWebhooks holds a webhook back until the next one is sent.
	ReorderWebhooks
)

type job struct {
	hook    Webhook
	body    any
	userID  int // create_user: the user to flag on failure
	dropped bool
}

// deliverer sends queued webhooks one at a time, in firing order (unless a
// ReorderWebhooks fault swaps them), with one attempt each.
type deliverer struct {
	s       *Server
	mu      sync.Mutex
	queue   []job
	held    *job
	faults  []WebhookFault
	pending int
	idle    chan struct{} // closed while nothing is pending
	wake    chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	started bool
	log     []Delivery
}

func newDeliverer(s *Server) *deliverer {
	ctx, cancel := context.WithCancel(context.Background())
	idle := make(chan struct{})
	close(idle)
	return &deliverer{s: s, idle: idle, wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
}

// FaultWebhooks applies f to the next n fired webhooks.
func (s *Server) FaultWebhooks(f WebhookFault, n int) {
	s.wh.mu.Lock()
	defer s.wh.mu.Unlock()
	for range n {
		s.wh.faults = append(s.wh.faults, f)
	}
}

// enqueue queues a job without blocking, applying any pending fault.
func (d *deliverer) enqueue(j job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var f WebhookFault
	if len(d.faults) > 0 {
		f, d.faults = d.faults[0], d.faults[1:]
	}
	d.add(1)
	switch f {
	case DropWebhooks:
		j.dropped = true
	case DuplicateWebhooks:
		d.add(1)
		d.queue = append(d.queue, j)
	case ReorderWebhooks:
		if d.held == nil {
			d.held = &j
			return
		}
	}
	d.queue = append(d.queue, j)
	if d.held != nil {
		d.queue = append(d.queue, *d.held)
		d.held = nil
	}
	if !d.started {
		d.started = true
		go d.run()
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// add changes the pending count; callers hold d.mu.
func (d *deliverer) add(n int) {
	if d.pending == 0 && n > 0 {
		d.idle = make(chan struct{})
	}
	d.pending += n
	if d.pending == 0 {
		close(d.idle)
	}
}

func (d *deliverer) run() {
	for {
		d.mu.Lock()
		if len(d.queue) == 0 {
			d.mu.Unlock()
			select {
			case <-d.wake:
				continue
			case <-d.ctx.Done():
				return
			}
		}
		j := d.queue[0]
		d.queue = d.queue[1:]
		d.mu.Unlock()

		rec := d.send(j)
		if j.userID != 0 && !rec.Dropped && (rec.Err != "" || rec.Status >= 400) {
			d.s.markWebhookError(j.userID)
		}
		d.mu.Lock()
		d.log = append(d.log, rec)
		d.add(-1)
		d.mu.Unlock()
	}
}

// send makes the one attempt for a job.
func (d *deliverer) send(j job) Delivery {
	h := j.hook
	rec := Delivery{Name: h.Name, Action: h.Action, Method: h.Method, URL: h.URL, Dropped: j.dropped}
	if j.body != nil {
		if s, ok := j.body.(string); ok && h.contentType() != "application/json" {
			rec.Body = []byte(s)
		} else {
			rec.Body, _ = json.Marshal(j.body)
		}
	}
	if j.dropped {
		return rec
	}
	req, err := http.NewRequestWithContext(d.ctx, h.Method, h.URL, bytes.NewReader(rec.Body))
	if err != nil {
		rec.Err = err.Error()
		return rec
	}
	req.Header.Set("Content-Type", h.contentType())
	resp, err := d.s.opts.WebhookClient.Do(req)
	if err != nil {
		rec.Err = err.Error()
		d.s.log.WithError(err).WithField("webhook", h.Name).Warn("webhook delivery")
		return rec
	}
	_ = resp.Body.Close()
	rec.Status = resp.StatusCode
	return rec
}

func (d *deliverer) stop() { d.cancel() }

// markWebhookError sets a user's status to WebhookError (2) without firing
// any webhook, as Magpie does when create_user delivery fails.
func (s *Server) markWebhookError(userID int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[userID]; u != nil {
		u.status = statusWebhookError
	}
}

// WaitWebhooks blocks until every fired webhook has been attempted (a held
// ReorderWebhooks one counts as pending), or ctx is done.
func (s *Server) WaitWebhooks(ctx context.Context) error {
	s.wh.mu.Lock()
	idle := s.wh.idle
	s.wh.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for webhooks: %w", ctx.Err())
	}
}

// Deliveries returns the attempted and dropped webhooks in delivery order.
func (s *Server) Deliveries() []Delivery {
	s.wh.mu.Lock()
	defer s.wh.mu.Unlock()
	return slices.Clone(s.wh.log)
}

// Delivered counts the webhook requests actually sent (dropped ones excluded).
func (s *Server) Delivered() int {
	n := 0
	for _, d := range s.Deliveries() {
		if !d.Dropped {
			n++
		}
	}
	return n
}
