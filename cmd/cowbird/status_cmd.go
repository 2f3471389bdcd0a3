package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cowbird-go/cowbird/actions"
	"github.com/cowbird-go/cowbird/api"
)

// errNotReady is the error (exit code 1) of cowbird status when the daemon
// answers but is not ready.
var errNotReady = errors.New("the daemon is not ready")

func newStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running daemon's state on one screen",
		Long: "Asks the running daemon (GET /status) for its state now: its version and uptime, whether it\n" +
			"is ready and why not, each handler's state, the event journal's backlog and failed events,\n" +
			"the reconciles since start and the last reconcile action with its figures, the inotify\n" +
			"watches used against fs.inotify.max_user_watches and the degraded ones, and the actions\n" +
			"running. Where something needs a look, it names the command that shows more.\n" +
			"It needs an admin token (--token or $COWBIRD_TOKEN); --json prints the daemon's answer.\n" +
			"Exit code 0 when the daemon is ready, 1 when it is not (the status is printed first) or\n" +
			"cannot be asked, 2 for a usage error.",
		Args: cobra.NoArgs,
	}
	d := addDaemonFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		raw, err := fetchStatus(cmd.Context(), d)
		if err != nil {
			return err
		}
		var st api.DaemonStatus
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("GET %s: decode answer: %w", api.StatusPath, err)
		}
		out := cmd.OutOrStdout()
		if d.asJSON {
			var buf bytes.Buffer
			if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "    "); err != nil {
				return fmt.Errorf("GET %s: decode answer: %w", api.StatusPath, err)
			}
			buf.WriteByte('\n')
			if _, err := out.Write(buf.Bytes()); err != nil {
				return err
			}
		} else {
			urlFlag := ""
			if cmd.Flags().Changed("url") {
				urlFlag = " --url " + shellQuote(d.url)
			}
			printDaemonStatus(out, st, urlFlag)
		}
		if !st.Ready {
			return errNotReady
		}
		return nil
	}
	return cmd
}

// fetchStatus GETs the daemon's status.
func fetchStatus(ctx context.Context, d *daemonFlags) ([]byte, error) {
	body, code, err := d.get(ctx, api.StatusPath, nil)
	switch {
	case err != nil:
		return nil, err
	case code == http.StatusUnauthorized:
		return nil, fmt.Errorf("GET %s: 401: %s (give an admin token with --token or $COWBIRD_TOKEN)", api.StatusPath, body)
	case code == http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: 404: this daemon has no status route (a version before cowbird status?)", api.StatusPath)
	case code != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %d: %s", api.StatusPath, code, body)
	}
	return body, nil
}

// statusIndent is the width of the labels of printDaemonStatus.
const statusIndent = 12

// printDaemonStatus prints st on one screen: a line per topic, details
// indented under it, and the command to run where something needs a look
// (urlFlag is appended to those commands).
func printDaemonStatus(w io.Writer, st api.DaemonStatus, urlFlag string) {
	p := statusPrinter{w: w, urlFlag: urlFlag}
	p.head(st)
	p.ready(st)
	p.handlers(st.Handlers)
	p.journal(st.Journal)
	p.reconcile(st.Reconcile)
	p.watches(st.Watches)
	p.running(st.Actions)
}

// statusPrinter prints the topics of printDaemonStatus to w.
type statusPrinter struct {
	w       io.Writer
	urlFlag string // appended to the commands it names
}

// line prints a topic's line: label, padded to statusIndent, then the text.
func (p statusPrinter) line(label, format string, args ...any) {
	fmt.Fprintf(p.w, "%-*s%s\n", statusIndent, label, fmt.Sprintf(format, args...))
}

// more prints a detail line, indented under the topic's.
func (p statusPrinter) more(format string, args ...any) { p.line("", "  "+format, args...) }

// head prints the first line: the versions, the uptime and when st was
// checked.
func (p statusPrinter) head(st api.DaemonStatus) {
	head := fmt.Sprintf("cowbird %s (Cowbird API %s)", cmp.Or(st.Version, "unknown"), cmp.Or(st.APIVersion, "unknown"))
	if !st.Started.IsZero() {
		head += fmt.Sprintf(", up %s since %s", st.CheckedAt.Sub(st.Started).Round(time.Second), st.Started.Format(time.RFC3339))
	}
	fmt.Fprintf(p.w, "%s, checked %s\n", head, st.CheckedAt.Format(time.RFC3339))
}

// ready prints whether the daemon is ready, and why not.
func (p statusPrinter) ready(st api.DaemonStatus) {
	if st.Ready {
		p.line("ready:", "yes")
		return
	}
	p.line("ready:", "NO")
	for _, r := range st.NotReady {
		p.more("%s", r)
	}
}

// handlers prints a line per handler, its name and state, names aligned.
func (p statusPrinter) handlers(hs []api.HandlerState) {
	nameWidth := 0
	for _, h := range hs {
		nameWidth = max(nameWidth, len(h.Name))
	}
	for i, h := range hs {
		label := ""
		if i == 0 {
			label = "handlers:"
		}
		state := h.State
		if h.Error != "" {
			state += ": " + h.Error
		}
		if h.Detail != "" {
			state += "; " + h.Detail
		}
		p.line(label, "%-*s  %s", nameWidth, h.Name, state)
	}
	if len(hs) == 0 {
		p.line("handlers:", "none configured")
	}
}

// journal prints the event journal's backlog and failed events.
func (p statusPrinter) journal(j api.JournalState) {
	p.line("journal:", "%s kept, %d pending, %d failed", plural(j.Events, "event"), j.Pending, j.Failed)
	if j.Pending > 0 {
		detail := ""
		if j.OldestPending != nil {
			detail = "oldest received " + j.OldestPending.Format(time.RFC3339)
		}
		if j.NextRetry != nil {
			detail = strings.TrimPrefix(detail+", next retry "+j.NextRetry.Format(time.RFC3339), ", ")
		}
		if detail != "" {
			p.more("pending: %s", detail)
		}
		p.more("see: cowbird events list --pending%s", p.urlFlag)
	}
	if j.Failed > 0 {
		p.more("newest failed: event %d; see: cowbird events list --failed%s, cowbird events show %d%s",
			j.LastFailed, p.urlFlag, j.LastFailed, p.urlFlag)
	}
}

// reconcile prints the reconciles since start and the last reconcile
// action with its figures.
func (p statusPrinter) reconcile(r api.ReconcileState) {
	switch {
	case r.RunsOK < 0:
		p.line("reconcile:", "no FileSystem handler")
	default:
		p.line("reconcile:", "%d ok, %d failed since start (start-up, overflow, resync, periodic)", r.RunsOK, r.RunsFailed)
	}
	l := r.Last
	if l == nil {
		if r.RunsOK >= 0 {
			p.more("last action: none kept")
		}
		return
	}
	who := l.Type
	if l.Type == resyncType {
		who += " " + l.Handler
	}
	if l.Label != "" {
		who += " " + strconv.Quote(l.Label)
	}
	p.more("last action: %s %s %s, in %s, id %s", who, l.Status, l.Completed.Format(time.RFC3339),
		l.Completed.Sub(l.Started).Round(time.Millisecond), l.ActionID)
	if f := l.Figures; f != nil {
		p.more("  %s; links %d created, %d replaced, %d removed; %d modes fixed; dirs %d created, %d removed; %d skipped, %d failed",
			plural(f.Sources, "source"), f.LinksCreated, f.LinksReplaced, f.LinksRemoved, f.ModesFixed, f.DirsCreated, f.DirsRemoved, f.Skipped, f.Failed)
	}
	if l.Status == actions.Failed {
		p.more("  %s; see: cowbird actions log %s%s", cmp.Or(l.Error, "failed"), l.ActionID, p.urlFlag)
	}
}

// watches prints the inotify watches used against the limit, and the
// degraded ones.
func (p statusPrinter) watches(ws api.WatchState) {
	budget := "limit unknown"
	if ws.MaxWatches > 0 {
		pct := 100 * float64(ws.Watches) / float64(ws.MaxWatches)
		budget = fmt.Sprintf("of %d (%.1f %%", ws.MaxWatches, pct)
		if pct >= 80 {
			budget += ", above 80 %: raise fs.inotify.max_user_watches, see docs/operations.md"
		}
		budget += ")"
	}
	p.line("watches:", "%d %s, %d degraded, %d overflows, %d refused at the limit",
		ws.Watches, budget, len(ws.Degraded), ws.Overflows, ws.LimitErrors)
	for _, dg := range ws.Degraded {
		p.more("%s %s: %s (since %s, %s; retried every 30 s)", dg.Handler, dg.Path, dg.Error,
			dg.Since.Format(time.RFC3339), plural(dg.Failures, "failure"))
	}
}

// running prints the actions running or waiting.
func (p statusPrinter) running(as []api.RunningAction) {
	if len(as) == 0 {
		p.line("actions:", "none running")
		return
	}
	p.line("actions:", "%d running or waiting", len(as))
	for _, a := range as {
		what := a.Type
		if a.Label != "" {
			what += " " + strconv.Quote(a.Label)
		}
		p.more("%s  %s  %s  %s, started %s by %s", a.ActionID, what, a.Status, cmp.Or(a.DisplayStatus, "-"),
			a.Started.Format(time.RFC3339), a.Creator)
	}
}

// plural is n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
