package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

// explainPath is the daemon route of cowbird explain (GET, admin only).
const explainPath = "/explain"

// explanation is the daemon's answer to GET /explain.
type explanation struct {
	Path      string    `json:"path"`
	User      string    `json:"user"`
	OK        bool      `json:"ok"`
	Fix       string    `json:"fix"`
	Facts     []fact    `json:"facts"`
	CheckedAt time.Time `json:"checked_at"`
}

// fact is one fact of an explanation.
type fact struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

func newExplainCmd() *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "explain PATH | --user NAME",
		Short: "Explain why a WPS output is or is not in a workspace, or how a user's workspace stands",
		Long: "Asks the running daemon for the facts it checks now, each ok or not, with the command\n" +
			"that fixes what is not. For a WPS output PATH (absolute, under wps_outputs_dir, as the\n" +
			"daemon sees it): public or user data, the Magpie user and their workspace, the\n" +
			"secure-data-proxy route that applies, the effective read permission and Magpie's reason,\n" +
			"the expected and actual others bits, the link with its inode, the watch its file events\n" +
			"go through, the pending or failed events that touch it and the last reconcile that\n" +
			"covered it. For --user NAME: the workspace, the notebooks symlink, the link root and the\n" +
			"counts of the user's outputs linked, missing, denied and stale; the datastore directory,\n" +
			"the GeoServer workspace, datastore and layers, the others bits of the directory and of\n" +
			"each .shp against the user's Magpie permissions, the GeoServer jobs; the watches of the\n" +
			"user's directories, the user's pending or failed events and the last reconcile that\n" +
			"covered them. Facts come from the active handlers only. It changes nothing. It needs an\n" +
			"admin token (--token or $COWBIRD_TOKEN); --json prints the daemon's answer as it is.",
		Args: cobra.MaximumNArgs(1),
	}
	d := addDaemonFlags(cmd)
	cmd.Flags().StringVar(&user, "user", "", "explain this user instead of a path")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		path := ""
		if len(args) == 1 {
			path = args[0]
		}
		if (path == "") == (user == "") {
			return usageError{Err: errors.New("explain: give a WPS output PATH or --user NAME (one of them)")}
		}
		q := url.Values{}
		if path != "" {
			q.Set("path", path)
		} else {
			q.Set("user", user)
		}
		raw, err := fetchExplanation(cmd.Context(), d, q)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if d.asJSON {
			var buf bytes.Buffer
			if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "    "); err != nil {
				return fmt.Errorf("GET %s: decode answer: %w", explainPath, err)
			}
			buf.WriteByte('\n')
			_, err := out.Write(buf.Bytes())
			return err
		}
		var x explanation
		if err := json.Unmarshal(raw, &x); err != nil {
			return fmt.Errorf("GET %s: decode answer: %w", explainPath, err)
		}
		printExplanation(out, x)
		return nil
	}
	return cmd
}

// fetchExplanation GETs the daemon's explanation for the query q.
func fetchExplanation(ctx context.Context, d *daemonFlags, q url.Values) ([]byte, error) {
	body, code, err := d.get(ctx, explainPath, q)
	switch {
	case err != nil:
		return nil, err
	case code == http.StatusBadRequest:
		return nil, usageError{Err: fmt.Errorf("explain: %s", body)}
	case code == http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: 404: this daemon has no %[1]s route (an older cowbird serves it only with an active FileSystem handler)", explainPath)
	case code != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %d: %s", explainPath, code, body)
	}
	return body, nil
}

// printExplanation prints one fact a line, a fix under each fact that is
// not ok, and the fix of the first at the end.
func printExplanation(w io.Writer, x explanation) {
	subject := x.Path
	if x.User != "" {
		subject = "user " + x.User
	}
	fmt.Fprintf(w, "%s (checked %s)\n", subject, x.CheckedAt.Format(time.RFC3339))
	width := 0
	for _, f := range x.Facts {
		width = max(width, len(f.Check))
	}
	for _, f := range x.Facts {
		status := "ok"
		if !f.OK {
			status = "FAIL"
		}
		fmt.Fprintf(w, "  %-4s  %-*s  %s\n", status, width, f.Check, f.Detail)
		if !f.OK && f.Fix != "" {
			fmt.Fprintf(w, "        %-*s  fix: %s\n", width, "", f.Fix)
		}
	}
	switch {
	case x.OK:
		fmt.Fprintln(w, "Everything is as it should be.")
	case x.Fix != "":
		fmt.Fprintf(w, "Fix: %s\n", x.Fix)
	}
}
