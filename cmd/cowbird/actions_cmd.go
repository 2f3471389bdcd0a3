package main

import (
	"cmp"
	"context"
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
)

// resyncType is the action type cowbird resync runs.
const resyncType = "handler.resync"

// daemonFlags are the flags of the commands that call a running daemon.
type daemonFlags struct {
	url, token string
	asJSON     bool
	timeout    time.Duration
}

// addDaemonFlags adds the flags of the commands that call a running daemon.
func addDaemonFlags(cmd *cobra.Command) *daemonFlags {
	d := &daemonFlags{}
	f := cmd.PersistentFlags()
	f.StringVar(&d.url, "url", "http://127.0.0.1:7000", "URL of the running daemon")
	f.StringVar(&d.token, "token", "", "admin bearer token (default $COWBIRD_TOKEN)")
	f.BoolVar(&d.asJSON, "json", false, "print JSON documents")
	f.DurationVar(&d.timeout, "timeout", 30*time.Second, "timeout of each request to the daemon")
	return d
}

// runE makes fn a RunE calling the daemon with a client; an invalid argument
// exits with the usage code.
func (d *daemonFlags) runE(fn func(*cobra.Command, []string, *actions.Client) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c := &actions.Client{URL: d.url, Token: cmp.Or(d.token, os.Getenv("COWBIRD_TOKEN")), Timeout: d.timeout}
		err := fn(cmd, args, c)
		if ae := (*actions.ArgumentError)(nil); errors.As(err, &ae) {
			return usageError{Err: err}
		}
		return err
	}
}

// get GETs path?q from the daemon with the token: the body (up to 16 MiB)
// of a 200, else the error detail of the answer, and the status code.
func (d *daemonFlags) get(ctx context.Context, path string, q url.Values) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	target := strings.TrimRight(d.url, "/") + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, 0, usageError{Err: fmt.Errorf("--url: %w", err)}
	}
	req.Header.Set("Accept", "application/json")
	if token := cmp.Or(d.token, os.Getenv("COWBIRD_TOKEN")); token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var ue *url.Error // it quotes the URL, which may hold credentials
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, 0, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return []byte(errorDetail(resp.Body)), resp.StatusCode, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: read answer: %w", path, err)
	}
	return body, resp.StatusCode, nil
}

// show returns err, or prints v: as indented JSON with --json, else with
// human.
func show[T any](d *daemonFlags, w io.Writer, v T, err error, human func(io.Writer, T)) error {
	switch {
	case err != nil:
		return err
	case d.asJSON:
		return writeJSON(w, v)
	}
	human(w, v)
	return nil
}

func newActionsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "actions", Short: "List and manage the actions of a running daemon"}
	d := addDaemonFlags(cmd)
	var statuses, roles string
	list := &cobra.Command{
		Use: "list", Short: "List the actions visible to the token, of every type", Args: cobra.NoArgs,
		RunE: d.runE(func(cmd *cobra.Command, _ []string, c *actions.Client) error {
			sts, err := c.List(cmd.Context(), actions.Filter{Statuses: []string{statuses}, Roles: []string{roles}})
			return show(d, cmd.OutOrStdout(), sts, err, printStatuses)
		}),
	}
	list.Flags().StringVar(&statuses, "status", "active,inactive,succeeded,failed", "comma-separated statuses to list")
	list.Flags().StringVar(&roles, "roles", "creator_id,monitor_by,manage_by", "comma-separated roles of the token in the actions listed")
	cmd.AddCommand(list)

	for _, op := range []struct {
		use, short string
		do         func(*actions.Client, context.Context, string, string) (actions.Status, error)
	}{
		{"status ID", "Print the status of an action", (*actions.Client).Status},
		{"cancel ID", "Ask an action to stop", (*actions.Client).Cancel},
		{"release ID", "Release a finished action (its record and log are deleted)", (*actions.Client).Release},
	} {
		cmd.AddCommand(&cobra.Command{
			Use: op.use, Short: op.short, Args: cobra.ExactArgs(1),
			RunE: d.runE(func(cmd *cobra.Command, args []string, c *actions.Client) error {
				st, err := op.do(c, cmd.Context(), "", args[0]) // "": the client finds the type
				return show(d, cmd.OutOrStdout(), st, err, printStatus)
			}),
		})
	}
	cmd.AddCommand(&cobra.Command{
		Use: "log ID", Short: "Print the whole log of an action", Args: cobra.ExactArgs(1),
		RunE: d.runE(func(cmd *cobra.Command, args []string, c *actions.Client) error {
			entries, err := c.LogAll(cmd.Context(), "", args[0])
			return show(d, cmd.OutOrStdout(), entries, err, func(w io.Writer, entries []actions.LogEntry) {
				for _, e := range entries {
					fmt.Fprintf(w, "%s  %-18s %s\n", e.Time.Format(time.RFC3339), e.Code, e.Description)
				}
			})
		}),
	})
	return cmd
}

func newResyncCmd() *cobra.Command {
	var body struct {
		DryRun  bool     `json:"dry_run"`
		Handler string   `json:"handler"`
		Users   []string `json:"users,omitempty"`
	}
	var wait bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "resync [HANDLER...]",
		Short: "Run handler.resync actions on a running daemon (every active handler by default)",
		Long: "Runs one handler.resync action per handler. With --wait, follows them until they end\n" +
			"and exits 1 if one FAILED.",
	}
	d := addDaemonFlags(cmd)
	cmd.RunE = d.runE(func(cmd *cobra.Command, names []string, c *actions.Client) error {
		ctx, out := cmd.Context(), cmd.OutOrStdout()
		if len(names) == 0 {
			var err error
			if names, err = c.Handlers(ctx); err != nil {
				return err
			}
		}
		sts := make([]actions.Status, 0, len(names))
		for _, h := range names {
			body.Handler = h
			data, _ := json.Marshal(body) // strings and a bool
			st, err := c.Run(ctx, resyncType, actions.RunRequest{Label: "resync " + h, Body: data})
			if err != nil {
				return err
			}
			sts = append(sts, st)
		}
		if !wait {
			return show(d, out, sts, nil, printStatuses)
		}
		var failed []string
		for i, st := range sts {
			tty, last := isTerminal(out), ""
			end, err := c.Follow(ctx, st, interval, func(st actions.Status) {
				if d.asJSON {
					return
				}
				line := progressLine(st, tty) // a bar redrawn on a terminal, else a line per change
				if tty {
					fmt.Fprintf(out, "\r\033[K%s", line)
				} else if line != last {
					fmt.Fprintln(out, line)
				}
				last = line
			})
			if err != nil {
				return err
			}
			if tty && !d.asJSON {
				fmt.Fprintln(out)
			}
			if sts[i] = end; end.Status == actions.Failed {
				desc, _ := end.Details["description"].(string)
				failed = append(failed, fmt.Sprintf("%s (%s): %s", end.ActionID, names[i], desc))
			}
		}
		if err := show(d, out, sts, nil, func(io.Writer, []actions.Status) {}); err != nil || len(failed) == 0 {
			return err
		}
		return fmt.Errorf("resync failed: %s", strings.Join(failed, "; "))
	})
	cmd.Flags().StringSliceVar(&body.Users, "user", nil, "resync only these users (repeatable)")
	cmd.Flags().BoolVar(&body.DryRun, "dry-run", false, "report what would change without changing it")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the actions end; exit 1 if one failed")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often --wait polls the status")
	return cmd
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
