package main

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cowbird-go/cowbird/actions"
)

func newEventsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Inspect the event journal of a running daemon and replay failed events",
		Long: "Shows the webhook events the daemon journaled: when each was received, its payload (secrets\n" +
			"masked), what each handler did with it (pending with its next retry, or failed with its\n" +
			"error), and the events.replay action that runs the failed handlers again.\n" +
			"It needs an admin token (--token or $COWBIRD_TOKEN).",
	}
	d := addDaemonFlags(cmd)
	cmd.AddCommand(newEventsListCmd(d), newEventsShowCmd(d), newEventsReplayCmd(d))
	return cmd
}

func newEventsListCmd(d *daemonFlags) *cobra.Command {
	var failed, pending bool
	f := actions.EventFilter{}
	list := &cobra.Command{
		Use:   "list",
		Short: "List journaled events, newest first",
		Long: "Lists journaled events, newest first. --failed keeps those with a handler that failed for\n" +
			"good, --pending those with a handler still to run; --user those about a Magpie user (its\n" +
			"user events and its user permissions). When older events match too, the last line gives\n" +
			"the --before of the next page.",
		Args: cobra.NoArgs,
		RunE: d.runE(func(cmd *cobra.Command, _ []string, c *actions.Client) error {
			switch {
			case failed && pending:
				return usageError{Err: fmt.Errorf("--failed and --pending exclude each other")}
			case failed:
				f.Status = actions.EventFailed
			case pending:
				f.Status = actions.EventPending
			}
			if f.Limit < 1 || f.Limit > 1000 {
				return usageError{Err: fmt.Errorf("--limit must be from 1 to 1000, got %d", f.Limit)}
			}
			if f.Marker != "" {
				if _, err := parseEventID(f.Marker); err != nil {
					return err
				}
			}
			page, err := c.Events(cmd.Context(), f)
			return show(d, cmd.OutOrStdout(), page, err, printEventPage)
		}),
	}
	list.Flags().BoolVar(&failed, "failed", false, "only events with a handler that failed for good")
	list.Flags().BoolVar(&pending, "pending", false, "only events with a handler still to run")
	list.Flags().StringVar(&f.User, "user", "", "only events about this Magpie user")
	list.Flags().IntVar(&f.Limit, "limit", 20, "list at most this many events (1 to 1000)")
	list.Flags().StringVar(&f.Marker, "before", "", "list events older than this event ID (the next page)")
	return list
}

func newEventsShowCmd(d *daemonFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one journaled event, its handlers' outcomes and how to replay its failed handlers",
		Args:  cobra.ExactArgs(1),
		RunE: d.runE(func(cmd *cobra.Command, args []string, c *actions.Client) error {
			id, err := parseEventID(args[0])
			if err != nil {
				return err
			}
			ev, err := c.Event(cmd.Context(), id)
			return show(d, cmd.OutOrStdout(), ev, err, func(w io.Writer, ev actions.JournalEvent) {
				printEvent(w, ev, d.url, cmd.Flags().Changed("url"))
			})
		}),
	}
}

func newEventsReplayCmd(d *daemonFlags) *cobra.Command {
	var names []string
	var wait bool
	var interval time.Duration
	replay := &cobra.Command{
		Use:   "replay ID",
		Short: "Run the events.replay action for an event's failed handlers (or those named)",
		Long: "Starts an events.replay action that dispatches the journaled event again to the handlers\n" +
			"that failed it for good, or to those named with --handler. With --wait, follows the action\n" +
			"until it ends and exits 1 if it FAILED.",
		Args: cobra.ExactArgs(1),
		RunE: d.runE(func(cmd *cobra.Command, args []string, c *actions.Client) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			id, err := parseEventID(args[0])
			if err != nil {
				return err
			}
			body := actions.ReplayBody{EventID: id, Handlers: names}
			if len(names) == 0 {
				ev, err := c.Event(ctx, id)
				if err != nil {
					return err
				}
				if ev.Replay == nil {
					return fmt.Errorf("event %d: no handler failed for good (status %s); name handlers with --handler to replay anyway", id, ev.Status)
				}
				body = ev.Replay.Body
			}
			data, _ := json.Marshal(body) // a number and strings
			st, err := c.Run(ctx, actions.ReplayType, actions.RunRequest{Label: fmt.Sprintf("replay event %d", id), Body: data})
			if err != nil || !wait {
				return show(d, out, st, err, printStatus)
			}
			end, err := c.Follow(ctx, st, interval, nil)
			if err := show(d, out, end, err, printStatus); err != nil {
				return err
			}
			if end.Status == actions.Failed {
				desc, _ := end.Details["description"].(string)
				return fmt.Errorf("replay of event %d failed: %s", id, desc)
			}
			return nil
		}),
	}
	replay.Flags().StringSliceVar(&names, "handler", nil, "replay for this handler (repeatable; default: the failed ones)")
	replay.Flags().BoolVar(&wait, "wait", false, "wait until the action ends; exit 1 if it failed")
	replay.Flags().DurationVar(&interval, "interval", time.Second, "how often --wait polls the status")
	return replay
}

// parseEventID reads an event ID argument; a bad one is a usage error.
func parseEventID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usageError{Err: fmt.Errorf("invalid event ID %q: want a positive integer", s)}
	}
	return id, nil
}

// printEventPage prints a page of events as a table.
func printEventPage(w io.Writer, page actions.EventPage) {
	if len(page.Events) == 0 {
		fmt.Fprintln(w, "No matching events.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIVED\tSOURCE\tEVENT\tKEY\tSTATUS\tATTEMPTS\tNEXT RETRY\tHANDLERS")
	for _, ev := range page.Events {
		var hs []string
		for _, h := range ev.Handlers {
			hs = append(hs, h.Handler+" "+h.Outcome)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", ev.ID, ev.Received.Format(time.RFC3339),
			ev.Source, ev.Event, ev.Key, ev.Status, ev.Attempts, nextRetry(ev), cmp.Or(strings.Join(hs, ", "), "-"))
	}
	tw.Flush()
	if page.HasNextPage {
		fmt.Fprintf(w, "Older events match too: add --before %s.\n", page.Marker)
	}
}

// nextRetry is when ev's pending handlers run again: a time, "now" or "-".
func nextRetry(ev actions.JournalEvent) string {
	for _, h := range ev.Handlers {
		if h.Outcome == actions.EventPending {
			return retryTime(h.RetryAt)
		}
	}
	return "-"
}

func retryTime(t *time.Time) string {
	if t == nil {
		return "now"
	}
	return t.Format(time.RFC3339)
}

// printEvent prints one event and, when handlers failed, the events.replay
// action to run: its body, the CLI line and the curl line for daemonURL
// (given to the CLI line only when it is not the default).
func printEvent(w io.Writer, ev actions.JournalEvent, daemonURL string, urlFlag bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	payload, _ := json.Marshal(ev.Payload)
	for _, f := range [][2]string{
		{"id", strconv.FormatUint(ev.ID, 10)},
		{"received", ev.Received.Format(time.RFC3339)},
		{"source", ev.Source},
		{"event", ev.Event},
		{"key", ev.Key},
		{"status", ev.Status},
		{"attempts", strconv.Itoa(ev.Attempts)},
		{"next retry", nextRetry(ev)},
		{"payload", string(payload)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], f[1])
	}
	tw.Flush()
	if len(ev.Handlers) == 0 {
		fmt.Fprintln(w, "handlers:    none pending, none failed")
	} else {
		fmt.Fprintln(w, "handlers:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, h := range ev.Handlers {
			state := h.Outcome
			switch {
			case h.Outcome == actions.EventPending && h.Error != "":
				state += ", next retry " + retryTime(h.RetryAt) + ", last error: " + h.Error
			case h.Outcome == actions.EventPending:
				state += ", next retry " + retryTime(h.RetryAt)
			case h.Error != "":
				state += ": " + h.Error
			}
			fmt.Fprintf(tw, "  %s\t%s\n", h.Handler, state)
		}
		tw.Flush()
	}
	if ev.Replay == nil {
		return
	}
	body, _ := json.Marshal(ev.Replay.Body)
	fmt.Fprintf(w, "\nReplay the failed handlers with the %s action, body %s:\n", ev.Replay.Type, body)
	line := []string{"cowbird", "events", "replay", strconv.FormatUint(ev.ID, 10)}
	for _, h := range ev.Replay.Body.Handlers {
		line = append(line, "--handler", h)
	}
	if urlFlag {
		line = append(line, "--url", daemonURL)
	}
	fmt.Fprintf(w, "  %s\n", shellJoin(line))
	req, _ := json.Marshal(map[string]any{"request_id": replayRequestID(ev.ID), "body": ev.Replay.Body})
	fmt.Fprintf(w, "  curl -s -H \"Authorization: Bearer $COWBIRD_TOKEN\" -H 'Content-Type: application/json' -X POST %s -d %s\n",
		shellQuote(strings.TrimRight(daemonURL, "/")+"/actions/v1/"+ev.Replay.Type), shellQuote(string(req)))
}

// replayRequestID is a fresh request_id for the printed curl line: the
// same line sent twice starts one action, a new show prints a new one.
func replayRequestID(id uint64) string {
	var b [4]byte
	rand.Read(b[:]) // never fails
	return fmt.Sprintf("replay-%d-%s", id, hex.EncodeToString(b[:]))
}

// shellJoin quotes each word that needs it for a POSIX shell.
func shellJoin(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = shellQuote(w)
	}
	return strings.Join(out, " ")
}

// shellQuote returns s as one POSIX shell word.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@%+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
