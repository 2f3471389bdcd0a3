package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cowbird-go/cowbird/store"
)

// snapshotPath is the daemon route that streams an online snapshot of the
// state database (GET, admin only; the body is the bbolt file).
const snapshotPath = "/state/snapshot"

// snapshotType is the media type of a snapshot; application/octet-stream
// is accepted too.
const snapshotType = "application/vnd.cowbird.bbolt"

// backupSummary is what backup and restore print with --json.
type backupSummary struct {
	File string         `json:"file"`
	Size int64          `json:"size"`
	TxID int            `json:"txid"`
	Keys map[string]int `json:"keys"`
}

func printSummary(cmd *cobra.Command, asJSON bool, verb, file string, info store.Info) error {
	if file == "-" {
		return nil // stdout holds the backup itself
	}
	out := cmd.OutOrStdout()
	if asJSON {
		return writeJSON(out, backupSummary{File: file, Size: info.Size, TxID: info.TxID, Keys: info.Keys})
	}
	_, err := fmt.Fprintf(out, "%s %s: %s\n", verb, file, info)
	return err
}

func newBackupCmd() *cobra.Command {
	var url, token, dataDir string
	var timeout time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent copy of the state database to FILE (- for standard output)",
		Long: "Without --data-dir, asks the running daemon at --url for an online snapshot (one read\n" +
			"transaction: the daemon keeps serving). With --data-dir, reads DIR/" + store.FileName + " of a\n" +
			"stopped daemon. Either way FILE is written through a temporary file, checked, then renamed,\n" +
			"so it is a complete, valid database or is left as it was.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir != "" && (cmd.Flags().Changed("url") || cmd.Flags().Changed("token")) {
				return usageError{Err: fmt.Errorf("--data-dir reads the file of a stopped daemon: give it or --url/--token, not both")}
			}
			file := args[0]
			var info store.Info
			err := toFile(cmd.OutOrStdout(), file, func(dst string) error {
				var err error
				if dataDir != "" {
					info, err = store.BackupFile(filepath.Join(dataDir, store.FileName), dst)
					return err
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				defer cancel()
				info, err = store.SaveBackup(dst, func(w io.Writer) error {
					return fetchSnapshot(ctx, url, cmp.Or(token, os.Getenv("COWBIRD_TOKEN")), w)
				})
				return err
			})
			if err != nil {
				return err
			}
			return printSummary(cmd, asJSON, "backed up to", file, info)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "read DIR/"+store.FileName+" directly (the daemon must be stopped)")
	f.StringVar(&url, "url", "http://127.0.0.1:7000", "URL of the running daemon")
	f.StringVar(&token, "token", "", "admin bearer token (default $COWBIRD_TOKEN)")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "how long the whole transfer may take")
	f.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	return cmd
}

func newRestoreCmd() *cobra.Command {
	var dataDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Install the backup FILE as the state database of a stopped daemon",
		Long: "Checks that FILE is a cowbird state database, copies it into --data-dir, checks the copy,\n" +
			"and renames it over " + store.FileName + " (the previous one is kept as " + store.FileName + ".before-restore).\n" +
			"Refuses while a daemon holds the database.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" {
				return usageError{Err: fmt.Errorf("restore needs --data-dir, the data directory of the stopped daemon")}
			}
			info, err := store.Restore(args[0], dataDir)
			if err != nil {
				return err
			}
			return printSummary(cmd, asJSON, "restored", filepath.Join(dataDir, store.FileName), info)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data directory of the daemon (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON")
	return cmd
}

// toFile runs save with the path to write: file itself, or for "-" a
// temporary file that is copied to stdout once complete and checked.
func toFile(stdout io.Writer, file string, save func(dst string) error) error {
	if file != "-" {
		return save(file)
	}
	dir, err := os.MkdirTemp("", "cowbird-backup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, store.FileName)
	if err := save(tmp); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(stdout, f)
	return err
}

// fetchSnapshot copies the daemon's snapshot at base+snapshotPath to w.
func fetchSnapshot(ctx context.Context, base, token string, w io.Writer) error {
	url := strings.TrimRight(base, "/") + snapshotPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return usageError{Err: fmt.Errorf("--url: %w", err)}
	}
	req.Header.Set("Accept", snapshotType+", application/octet-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("GET %s: 404: this daemon serves no online snapshot; stop it and run backup --data-dir", url)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("GET %s: %d: %s", url, resp.StatusCode, errorDetail(resp.Body))
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != snapshotType && mt != "application/octet-stream" {
		return fmt.Errorf("GET %s: answered %q, not a database snapshot", url, resp.Header.Get("Content-Type"))
	}
	n, err := io.Copy(w, resp.Body) // a short body fails: Content-Length is checked
	if err != nil {
		return fmt.Errorf("GET %s: after %d bytes: %w", url, n, err)
	}
	return nil
}

// errorDetail extracts the detail of a Cowbird JSON error envelope, or the
// start of any other body.
func errorDetail(r io.Reader) string {
	body, _ := io.ReadAll(io.LimitReader(r, 4096))
	var env struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &env) == nil && env.Detail != "" {
		return env.Detail
	}
	if s := strings.TrimSpace(string(body)); s != "" {
		return s
	}
	return "no detail"
}
