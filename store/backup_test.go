package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/cowbird-go/cowbird/monitor"
)

// seed gives db monitor registrations and n events, the first half done.
func seed(t *testing.T, db *DB, n int) []monitor.Registration {
	t.Helper()
	ctx := context.Background()
	regs := []monitor.Registration{
		{Path: "/data/wps_outputs", Handler: "FileSystem", Recursive: true},
		{Path: "/data/user_workspaces/alice/shapefile_datastore", Handler: "Geoserver"},
	}
	for _, r := range regs {
		if err := db.SaveRegistration(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		rec := mustAppend(t, db, userEvent(fmt.Sprintf("user%d", i)), "FileSystem", "Magpie")
		if i < n/2 {
			for _, h := range []string{"FileSystem", "Magpie"} {
				if err := db.Done(ctx, rec.ID, h); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return regs
}

// snapshotTo takes an online snapshot of db into dst and checks that the
// announced size is what was written.
func snapshotTo(t *testing.T, db *DB, dst string) Info {
	t.Helper()
	var announced, written int64 = -1, 0
	info, err := SaveBackup(dst, func(w io.Writer) error {
		var err error
		written, err = db.Snapshot(w, func(size int64) { announced = size })
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if announced != written || written != info.Size {
		t.Errorf("snapshot announced %d bytes, wrote %d, backup holds %d", announced, written, info.Size)
	}
	return info
}

// installed opens a backup as the database of a new data dir.
func installed(t *testing.T, backup string) *DB {
	t.Helper()
	dir := t.TempDir()
	if _, err := Restore(backup, dir); err != nil {
		t.Fatal(err)
	}
	return openDB(t, dir)
}

// TestSnapshotDuringWebhookBurst takes an online snapshot while events are
// appended and settled concurrently: the backup holds a consistent prefix
// of the journal (IDs 1..k, every record whole) and every registration.
func TestSnapshotDuringWebhookBurst(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	regs := seed(t, db, 10)

	const writers, each = 8, 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			<-start
			for i := range each {
				rec, err := db.Append(ctx, userEvent(fmt.Sprintf("burst-%d-%d", w, i)), []string{"FileSystem"})
				if err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if err := db.Done(ctx, rec.ID, "FileSystem"); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	backup := filepath.Join(t.TempDir(), "backups", "cowbird.db")
	close(start)
	info := snapshotTo(t, db, backup)
	wg.Wait()

	if info.Keys["monitors"] != len(regs) {
		t.Errorf("backup info %v: want %d monitors", info, len(regs))
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, mode %v, want 0600", err, fi.Mode())
	}
	if fi, err := os.Stat(filepath.Dir(backup)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("backup dir: %v, mode %v, want 0700", err, fi.Mode())
	}

	got := installed(t, backup)
	recs, err := got.Events(ctx, 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 10 || len(recs) > 10+writers*each {
		t.Fatalf("backup holds %d events, want between 10 and %d", len(recs), 10+writers*each)
	}
	for i, r := range recs {
		if r.ID != uint64(i+1) || r.Event == nil {
			t.Fatalf("event %d of the backup: ID %d, event %v: not a whole prefix of the journal", i, r.ID, r.Event)
		}
	}
	if info.Keys["events"] != len(recs) {
		t.Errorf("Info counts %d events, the backup holds %d", info.Keys["events"], len(recs))
	}
	pending, err := got.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pending {
		if src := mustEvent(t, got, p.ID); !slices.Equal(src.Pending, p.Pending) || len(p.Pending) == 0 {
			t.Errorf("pending event %d: %v, record says %v", p.ID, p.Pending, src.Pending)
		}
	}
	if n := len(pending); n < 5 || info.Keys["pending"] != n {
		t.Errorf("%d pending events in the backup (Info says %d), want at least the 5 of the seed", n, info.Keys["pending"])
	}
	gotRegs, err := got.Registrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotRegs) != len(regs) {
		t.Errorf("registrations %v, want %v", gotRegs, regs)
	}
	// The live database goes on after the snapshot.
	if _, err := db.Append(ctx, userEvent("after"), nil); err != nil {
		t.Errorf("append after the snapshot: %v", err)
	}
}

func TestBackupFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	seed(t, db, 4)
	backup := filepath.Join(t.TempDir(), "cowbird.db")
	path := db.Path() // "" once closed

	if _, err := BackupFile(path, backup); !errors.Is(err, ErrInUse) {
		t.Fatalf("BackupFile of an open database: %v, want ErrInUse", err)
	}
	if _, err := os.Stat(backup); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed backup left %s: %v", backup, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := BackupFile(path, backup)
	if err != nil {
		t.Fatal(err)
	}
	if info.Keys["events"] != 4 || info.Keys["pending"] != 2 || info.Keys["monitors"] != 2 {
		t.Errorf("info %v, want 4 events, 2 pending, 2 monitors", info)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("BackupFile modified the database")
	}
	if _, err := BackupFile(path, path); err == nil {
		t.Error("BackupFile onto the database itself succeeded")
	}
	if _, err := BackupFile(filepath.Join(t.TempDir(), FileName), backup); err == nil {
		t.Error("BackupFile of a missing database succeeded")
	}
	got := installed(t, backup)
	if ids := pendingIDs(t, got); !slices.Equal(ids, []uint64{3, 4}) {
		t.Errorf("pending events of the backup %v, want [3 4]", ids)
	}
	if recs, err := got.Events(ctx, 0, 10); err != nil || len(recs) != 4 {
		t.Errorf("events of the backup: %d, %v", len(recs), err)
	}
}

func TestVerifyRejects(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	db := openDB(t, t.TempDir())
	seed(t, db, 3)
	snapshotTo(t, db, good)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A bbolt file of another program.
	other := filepath.Join(dir, "other.db")
	bdb, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("widgets")); return err }); err != nil {
		t.Fatal(err)
	}
	bdb.Close()
	// The meta pages intact, the data pages scrambled.
	scrambled := slices.Clone(data)
	for i := 2 * 4096; i < len(scrambled); i++ {
		scrambled[i] ^= 0x5a
	}

	for _, tc := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "nope.db"), "no such file"},
		{"directory", dir, "not a regular file"},
		{"empty", write("empty.db", nil), "empty"},
		{"text", write("text.db", bytes.Repeat([]byte("mongodump "), 2000)), "not a bbolt database"},
		{"truncated", write("truncated.db", data[:len(data)/2]), "truncated"},
		{"scrambled", write("scrambled.db", scrambled), ""},
		{"another program's bbolt file", other, "not a cowbird state database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if info, err := Verify(good); err != nil || info.Keys["events"] != 3 {
		t.Errorf("Verify of a good backup: %v, %v", info, err)
	}
}

func TestRestore(t *testing.T) {
	ctx := context.Background()
	// The backup: 6 events, 3 pending, 2 registrations.
	src := openDB(t, t.TempDir())
	seed(t, src, 6)
	backup := filepath.Join(t.TempDir(), "cowbird.db")
	snapshotTo(t, src, backup)

	// The database it replaces: one event.
	dataDir := t.TempDir()
	cur := openDB(t, dataDir)
	mustAppend(t, cur, userEvent("current"), "FileSystem")
	previous, err := os.ReadFile(cur.Path())
	if err != nil {
		t.Fatal(err)
	}

	if _, err := Restore(backup, dataDir); !errors.Is(err, ErrInUse) {
		t.Fatalf("Restore under a running daemon: %v, want ErrInUse", err)
	}
	if err := cur.Close(); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.db")
	if err := os.WriteFile(bad, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(bad, dataDir); err == nil {
		t.Fatal("Restore of an invalid file succeeded")
	}
	if now, _ := os.ReadFile(filepath.Join(dataDir, FileName)); !bytes.Equal(now, previous) {
		t.Fatal("a refused restore changed the database")
	}
	if _, err := Restore(filepath.Join(dataDir, FileName), dataDir); err == nil {
		t.Fatal("Restore of the database onto itself succeeded")
	}

	info, err := Restore(backup, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if info.Keys["events"] != 6 {
		t.Errorf("info %v, want 6 events", info)
	}
	if kept, err := os.ReadFile(filepath.Join(dataDir, FileName+restoredSuffix)); err != nil || !bytes.Equal(kept, previous) {
		t.Errorf("previous database not kept as %s%s: %v", FileName, restoredSuffix, err)
	}
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("data dir holds %v, want the database and the previous one only", entries)
	}
	fi, err := os.Stat(filepath.Join(dataDir, FileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("restored database: %v, mode %v, want 0600", err, fi.Mode())
	}

	// The daemon's Open takes it as it is: journal and registrations intact.
	db := openDB(t, dataDir)
	if ids := pendingIDs(t, db); !slices.Equal(ids, []uint64{4, 5, 6}) {
		t.Errorf("pending after restore %v, want [4 5 6]", ids)
	}
	regs, err := db.Registrations(ctx)
	if err != nil || len(regs) != 2 {
		t.Errorf("registrations after restore %v, %v", regs, err)
	}
	rec, err := db.Append(ctx, userEvent("next"), nil)
	if err != nil || rec.ID != 7 {
		t.Errorf("next event after restore: ID %d, %v; want 7 (the sequence is restored too)", rec.ID, err)
	}
	db.Close()

	// Into a data dir that does not exist yet.
	fresh := filepath.Join(t.TempDir(), "new", "state")
	if _, err := Restore(backup, fresh); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(fresh, FileName+restoredSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("restore into an empty dir kept a previous database: %v", err)
	}
}

func TestSaveBackupKeepsDestinationOnFailure(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "cowbird.db")
	if err := os.WriteFile(dst, []byte("previous"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, write := range map[string]func(io.Writer) error{
		"write error": func(io.Writer) error { return errors.New("connection reset") },
		"not a database": func(w io.Writer) error {
			_, err := w.Write([]byte("<html>404</html>"))
			return err
		},
	} {
		if _, err := SaveBackup(dst, write); err == nil {
			t.Errorf("%s: SaveBackup succeeded", name)
		}
	}
	if b, _ := os.ReadFile(dst); string(b) != "previous" {
		t.Errorf("destination now %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}
