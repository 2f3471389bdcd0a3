package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/api"
)

// resyncType is the action type cowbird resync runs.
const resyncType = "handler.resync"

// errNotFound marks a 404 answer of the daemon.
var errNotFound = errors.New("not found")

// client talks to a running daemon's actions API.
type client struct {
	url     string
	token   string
	http    *http.Client
	asJSON  bool
	timeout time.Duration
}

// addClientFlags adds the flags of the commands that talk to the daemon.
func addClientFlags(cmd *cobra.Command) *client {
	c := &client{http: &http.Client{}}
	f := cmd.PersistentFlags()
	f.StringVar(&c.url, "url", "http://127.0.0.1:7000", "URL of the running daemon")
	f.StringVar(&c.token, "token", "", "admin bearer token (default $COWBIRD_TOKEN)")
	f.BoolVar(&c.asJSON, "json", false, "print JSON documents")
	f.DurationVar(&c.timeout, "timeout", 30*time.Second, "timeout of each request to the daemon")
	return c
}

// do sends one request and decodes a 2xx answer into out. Other answers
// become errors quoting the daemon's description; the token never appears.
func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.url, "/")+path, body)
	if err != nil {
		return usageError{fmt.Errorf("%s %s: %w", method, path, err)}
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	token := c.token
	if token == "" {
		token = os.Getenv("COWBIRD_TOKEN")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Code, Description, Detail string }
		_ = json.Unmarshal(data, &e)
		msg := strings.TrimSpace(e.Description + e.Detail)
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		err := fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, msg)
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", err, errNotFound)
		}
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// types lists the daemon's action types.
func (c *client) types(ctx context.Context) ([]string, error) {
	var doc struct {
		ActionTypes []struct{ Title string } `json:"action_types"`
	}
	if err := c.do(ctx, http.MethodGet, api.ActionsBase+"/", nil, &doc); err != nil {
		return nil, err
	}
	var out []string
	for _, t := range doc.ActionTypes {
		out = append(out, t.Title)
	}
	return out, nil
}

// actionPath is the path of action id, whose type is looked up when the
// caller does not give it: the daemon's routes include the type.
func (c *client) actionPath(ctx context.Context, id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/?#") {
		return "", usageError{fmt.Errorf("invalid action ID %q", id)}
	}
	types, err := c.types(ctx)
	if err != nil {
		return "", err
	}
	for _, t := range types {
		p := api.ActionsBase + "/" + url.PathEscape(t) + "/" + url.PathEscape(id)
		err := c.do(ctx, http.MethodGet, p, nil, nil)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, errNotFound) {
			return "", err
		}
	}
	return "", fmt.Errorf("action %s: %w", id, errNotFound)
}

// print writes v as indented JSON, or calls human.
func (c *client) print(w io.Writer, v any, human func()) error {
	if c.asJSON {
		return writeJSON(w, v)
	}
	human()
	return nil
}

func newActionsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "actions", Short: "List and manage the actions of a running daemon"}
	c := addClientFlags(cmd)
	var statuses, roles string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the actions visible to the token, of every type",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			types, err := c.types(cmd.Context())
			if err != nil {
				return err
			}
			all := []actions.Status{}
			q := url.Values{"status": {statuses}, "roles": {roles}}.Encode()
			for _, t := range types {
				var sts []actions.Status
				if err := c.do(cmd.Context(), http.MethodGet, api.ActionsBase+"/"+url.PathEscape(t)+"?"+q, nil, &sts); err != nil {
					return err
				}
				for i := range sts {
					sts[i].Type = t
				}
				all = append(all, sts...)
			}
			return c.print(cmd.OutOrStdout(), all, func() { printStatuses(cmd.OutOrStdout(), all) })
		},
	}
	list.Flags().StringVar(&statuses, "status", "active,inactive,succeeded,failed", "comma-separated statuses to list")
	list.Flags().StringVar(&roles, "roles", "creator_id,monitor_by,manage_by", "comma-separated roles of the token in the actions listed")
	cmd.AddCommand(list)

	// Commands on one action: method and path suffix.
	for _, op := range []struct{ use, short, method, suffix string }{
		{"status ID", "Print the status of an action", http.MethodGet, ""},
		{"cancel ID", "Ask an action to stop", http.MethodPost, "/cancel"},
		{"release ID", "Release a finished action (its record and log are deleted)", http.MethodDelete, ""},
	} {
		cmd.AddCommand(&cobra.Command{
			Use: op.use, Short: op.short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				p, err := c.actionPath(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				var st actions.Status
				if err := c.do(cmd.Context(), op.method, p+op.suffix, nil, &st); err != nil {
					return err
				}
				return c.print(cmd.OutOrStdout(), st, func() { printStatus(cmd.OutOrStdout(), st) })
			},
		})
	}
	cmd.AddCommand(&cobra.Command{
		Use: "log ID", Short: "Print the whole log of an action", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := c.actionPath(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			entries := []actions.LogEntry{}
			for marker := ""; ; {
				var page actions.LogPage
				q := url.Values{"limit": {"100"}, "marker": {marker}}.Encode()
				if err := c.do(cmd.Context(), http.MethodGet, p+"/log?"+q, nil, &page); err != nil {
					return err
				}
				entries = append(entries, page.Entries...)
				if !page.HasNextPage || page.Marker == "" {
					break
				}
				marker = page.Marker
			}
			return c.print(cmd.OutOrStdout(), entries, func() {
				for _, e := range entries {
					fmt.Fprintf(cmd.OutOrStdout(), "%s  %-18s %s\n", e.Time.Format(time.RFC3339), e.Code, e.Description)
				}
			})
		},
	})
	return cmd
}

func newResyncCmd() *cobra.Command {
	var users []string
	var dryRun, wait bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "resync [HANDLER...]",
		Short: "Run handler.resync actions on a running daemon (every active handler by default)",
		Long: "Runs one handler.resync action per handler. With --wait, follows them until they end\n" +
			"and exits 1 if one FAILED.",
	}
	c := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, names []string) error {
		ctx := cmd.Context()
		if len(names) == 0 {
			var ans struct{ Handlers []string }
			if err := c.do(ctx, http.MethodGet, "/handlers", nil, &ans); err != nil {
				return err
			}
			names = ans.Handlers
		}
		sts := make([]actions.Status, 0, len(names))
		for _, h := range names {
			body := map[string]any{"handler": h, "dry_run": dryRun}
			if len(users) > 0 {
				body["users"] = users
			}
			req := map[string]any{"request_id": newRequestID(), "label": "resync " + h, "body": body}
			var st actions.Status
			if err := c.do(ctx, http.MethodPost, api.ActionsBase+"/"+resyncType, req, &st); err != nil {
				return err
			}
			st.Type = resyncType
			sts = append(sts, st)
		}
		out := cmd.OutOrStdout()
		if !wait {
			return c.print(out, sts, func() { printStatuses(out, sts) })
		}
		var failed []string
		for i, st := range sts {
			end, err := c.follow(ctx, out, st, interval)
			if err != nil {
				return err
			}
			sts[i] = end
			if end.Status == actions.Failed {
				desc, _ := end.Details["description"].(string)
				failed = append(failed, fmt.Sprintf("%s (%s): %s", end.ActionID, names[i], desc))
			}
		}
		if err := c.print(out, sts, func() {}); err != nil {
			return err
		}
		if len(failed) > 0 {
			return fmt.Errorf("resync failed: %s", strings.Join(failed, "; "))
		}
		return nil
	}
	cmd.Flags().StringSliceVar(&users, "user", nil, "resync only these users (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would change without changing it")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the actions end; exit 1 if one failed")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often --wait polls the status")
	return cmd
}

// follow polls action st until it is terminal, showing a progress bar on a
// terminal and a line per change otherwise (nothing with --json).
func (c *client) follow(ctx context.Context, w io.Writer, st actions.Status, interval time.Duration) (actions.Status, error) {
	path := api.ActionsBase + "/" + resyncType + "/" + url.PathEscape(st.ActionID)
	tty := isTerminal(w)
	last := ""
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if !c.asJSON {
			line := progressLine(st, tty)
			switch {
			case tty:
				fmt.Fprintf(w, "\r\033[K%s", line)
			case line != last:
				fmt.Fprintln(w, line)
			}
			last = line
		}
		if st.Status.Terminal() {
			if tty && !c.asJSON {
				fmt.Fprintln(w)
			}
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("wait for action %s: %w", st.ActionID, ctx.Err())
		case <-tick.C:
		}
		if err := c.do(ctx, http.MethodGet, path, nil, &st); err != nil {
			return st, err
		}
	}
}

// progressLine describes a running action: with a bar on a terminal.
func progressLine(st actions.Status, bar bool) string {
	pct, _ := st.Details["progress"].(float64)
	if st.Status == actions.Succeeded {
		pct = 100
	}
	text := fmt.Sprintf("%s %-9s %3.0f%% %s", st.ActionID, st.Status, pct, st.DisplayStatus)
	if !bar {
		return text
	}
	const width = 30
	n := int(pct / 100 * width)
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", width-n) + "] " + text
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

func printStatuses(w io.Writer, sts []actions.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION ID\tTYPE\tSTATUS\tSTARTED\tDISPLAY STATUS")
	for _, st := range sts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", st.ActionID, st.Type, st.Status, st.StartTime.Format(time.RFC3339), st.DisplayStatus)
	}
	tw.Flush()
}

func printStatus(w io.Writer, st actions.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "action_id:\t%s\n", st.ActionID)
	fmt.Fprintf(tw, "status:\t%s\n", st.Status)
	fmt.Fprintf(tw, "display_status:\t%s\n", st.DisplayStatus)
	if st.Label != "" {
		fmt.Fprintf(tw, "label:\t%s\n", st.Label)
	}
	fmt.Fprintf(tw, "creator_id:\t%s\n", st.CreatorID)
	fmt.Fprintf(tw, "start_time:\t%s\n", st.StartTime.Format(time.RFC3339))
	if st.CompletionTime != nil {
		fmt.Fprintf(tw, "completion_time:\t%s\n", st.CompletionTime.Format(time.RFC3339))
	}
	details, _ := json.Marshal(st.Details)
	fmt.Fprintf(tw, "details:\t%s\n", details)
	tw.Flush()
}
