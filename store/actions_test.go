package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cowbird-go/cowbird/actions"
)

func actionRecord(id, creator, requestID string) actions.Record {
	return actions.Record{
		Status: actions.Status{
			ActionID: id, Status: actions.Active, CreatorID: creator,
			MonitorBy: []string{creator}, ManageBy: []string{creator},
			StartTime: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), ReleaseAfter: "P7D",
			DisplayStatus: "Running", Details: map[string]any{},
		},
		Type: "handler.resync", RequestID: requestID, RequestHash: "h-" + requestID,
		Input: []byte(`{"handler":"FileSystem"}`), Lock: "handler:FileSystem", Retention: 7 * 24 * time.Hour,
	}
}

func mustCreate(t *testing.T, db *DB, r actions.Record) {
	t.Helper()
	if _, created, err := db.CreateAction(context.Background(), r); err != nil || !created {
		t.Fatalf("CreateAction(%s) = created %v, %v; want created", r.Status.ActionID, created, err)
	}
}

func mustLog(t *testing.T, db *DB, id string, n int) {
	t.Helper()
	for i := range n {
		e := actions.LogEntry{Time: time.Date(2026, 5, 1, 12, 0, i, 0, time.UTC), Code: "STEP", Description: fmt.Sprint(id, i)}
		if err := db.AppendActionLog(context.Background(), id, e); err != nil {
			t.Fatal(err)
		}
	}
}

func logDescriptions(t *testing.T, db *DB, id string, offset, limit int) ([]string, bool) {
	t.Helper()
	entries, more, err := db.ActionLog(context.Background(), id, offset, limit)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Description)
	}
	return out, more
}

func TestCreateActionDeduplicatesPerCreator(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir)
	first := actionRecord("a1", "magpie:user:alice", "req-1")
	mustCreate(t, db, first)

	again := actionRecord("a2", "magpie:user:alice", "req-1")
	again.RequestHash = "other"
	got, created, err := db.CreateAction(ctx, again)
	if err != nil || created || !reflect.DeepEqual(got, first) {
		t.Fatalf("CreateAction(same creator and request) = %+v, %v, %v; want the first action, false", got, created, err)
	}
	if _, err := db.Action(ctx, "a2"); !errors.Is(err, actions.ErrNotFound) {
		t.Errorf("Action(a2) err = %v, want ErrNotFound: a duplicate must not be stored", err)
	}
	mustCreate(t, db, actionRecord("b1", "magpie:user:bob", "req-1")) // another creator's namespace

	if _, _, err := db.CreateAction(ctx, actionRecord("a1", "magpie:user:carol", "req-9")); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Errorf("CreateAction(reused ID) err = %v, want one saying the ID is in use", err)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir)
	recs, err := db.Actions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || !reflect.DeepEqual(recs[0], first) || recs[1].Status.ActionID != "b1" {
		t.Errorf("Actions() after reopen = %+v, want a1 then b1", recs)
	}
}

func TestUpdateAction(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	r := actionRecord("a1", "magpie:user:alice", "req-1")
	mustCreate(t, db, r)

	refuse := errors.New("refused")
	if _, err := db.UpdateAction(ctx, "a1", func(r *actions.Record) error {
		r.Status.Status = actions.Failed
		return refuse
	}); !errors.Is(err, refuse) {
		t.Fatalf("refused update err = %v, want the change's error", err)
	}
	if got, _ := db.Action(ctx, "a1"); !reflect.DeepEqual(got, r) {
		t.Fatalf("after a refused update = %+v, want it unchanged", got)
	}

	got, err := db.UpdateAction(ctx, "a1", func(r *actions.Record) error {
		r.Status.Status = actions.Succeeded
		r.Status.Details = map[string]any{"users": 3.0}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := db.Action(ctx, "a1")
	if err != nil || !reflect.DeepEqual(stored, got) || stored.Status.Status != actions.Succeeded {
		t.Errorf("Action(a1) = %+v, %v; want the update %+v", stored, err, got)
	}

	if _, err := db.UpdateAction(ctx, "a1", func(r *actions.Record) error { r.Status.ActionID = "zz"; return nil }); err == nil {
		t.Error("an update that changes the ID succeeded")
	}
	if _, err := db.UpdateAction(ctx, "nope", func(*actions.Record) error { return nil }); !errors.Is(err, actions.ErrNotFound) {
		t.Errorf("UpdateAction(unknown) err = %v, want ErrNotFound", err)
	}
}

func TestDeleteActionForgetsRequestAndLog(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	r := actionRecord("a", "magpie:user:alice", "req-1")
	mustCreate(t, db, r)
	mustCreate(t, db, actionRecord("ab", "magpie:user:alice", "req-2")) // an ID that "a" prefixes
	mustLog(t, db, "a", 3)
	mustLog(t, db, "ab", 2)

	keep := errors.New("keep")
	if _, err := db.DeleteAction(ctx, "a", func(actions.Record) error { return keep }); !errors.Is(err, keep) {
		t.Fatalf("refused delete err = %v, want the check's error", err)
	}
	if got, _ := logDescriptions(t, db, "a", 0, 10); len(got) != 3 {
		t.Fatalf("log after a refused delete = %v, want 3 entries", got)
	}

	got, err := db.DeleteAction(ctx, "a", func(actions.Record) error { return nil })
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("DeleteAction = %+v, %v; want the deleted action", got, err)
	}
	if _, err := db.Action(ctx, "a"); !errors.Is(err, actions.ErrNotFound) {
		t.Errorf("Action after delete err = %v, want ErrNotFound", err)
	}
	if got, more := logDescriptions(t, db, "a", 0, 10); len(got) != 0 || more {
		t.Errorf("log after delete = %v, want none", got)
	}
	if got, _ := logDescriptions(t, db, "ab", 0, 10); !reflect.DeepEqual(got, []string{"ab0", "ab1"}) {
		t.Errorf("log of ab = %v, want it untouched", got)
	}
	if err := db.AppendActionLog(ctx, "a", actions.LogEntry{Code: "LATE"}); !errors.Is(err, actions.ErrNotFound) {
		t.Errorf("AppendActionLog(deleted) err = %v, want ErrNotFound", err)
	}
	mustCreate(t, db, actionRecord("a-new", "magpie:user:alice", "req-1")) // the request ID is free again
	if _, err := db.DeleteAction(ctx, "a", func(actions.Record) error { return nil }); !errors.Is(err, actions.ErrNotFound) {
		t.Errorf("second DeleteAction err = %v, want ErrNotFound", err)
	}
}

func TestActionLogPages(t *testing.T) {
	db := openDB(t, t.TempDir())
	mustCreate(t, db, actionRecord("a", "magpie:user:alice", "req-1"))
	mustLog(t, db, "a", 5)
	tests := []struct {
		offset, limit int
		want          []string
		more          bool
	}{
		{0, 2, []string{"a0", "a1"}, true},
		{2, 2, []string{"a2", "a3"}, true},
		{4, 2, []string{"a4"}, false},
		{0, 5, []string{"a0", "a1", "a2", "a3", "a4"}, false},
		{7, 2, nil, false},
	}
	for _, tt := range tests {
		got, more := logDescriptions(t, db, "a", tt.offset, tt.limit)
		if !reflect.DeepEqual(got, tt.want) || more != tt.more {
			t.Errorf("ActionLog(offset %d, limit %d) = %v, more %v; want %v, %v", tt.offset, tt.limit, got, more, tt.want, tt.more)
		}
	}
	if _, _, err := db.ActionLog(context.Background(), "a", 0, 0); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("ActionLog(limit 0) err = %v, want one naming the limit", err)
	}
}

func TestCreateActionBadInput(t *testing.T) {
	tests := []struct {
		name, id, creator, requestID, want string
	}{
		{"no ID", "", "magpie:user:alice", "r", "action ID is empty"},
		{"no creator", "a", "", "r", "creator is empty"},
		{"NUL in creator", "a", "x\x00y", "r", "contains NUL"},
		{"no request ID", "a", "magpie:user:alice", "", "request ID is empty"},
	}
	db := openDB(t, t.TempDir())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := db.CreateAction(context.Background(), actionRecord(tt.id, tt.creator, tt.requestID))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestActionsCanceledContext(t *testing.T) {
	db := openDB(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"CreateAction": func() error { _, _, err := db.CreateAction(ctx, actionRecord("a", "c", "r")); return err },
		"Action":       func() error { _, err := db.Action(ctx, "a"); return err },
		"Actions":      func() error { _, err := db.Actions(ctx); return err },
		"UpdateAction": func() error {
			_, err := db.UpdateAction(ctx, "a", func(*actions.Record) error { return nil })
			return err
		},
		"DeleteAction": func() error {
			_, err := db.DeleteAction(ctx, "a", func(actions.Record) error { return nil })
			return err
		},
		"AppendActionLog": func() error { return db.AppendActionLog(ctx, "a", actions.LogEntry{}) },
		"ActionLog":       func() error { _, _, err := db.ActionLog(ctx, "a", 0, 1); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
		})
	}
}
