package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/runrecord"
	"github.com/cofferhq/coffer/internal/store"
)

func goodRecord(i int) Record {
	s := monday.Add(time.Duration(i) * 24 * time.Hour)
	return Record{Version: runrecord.Version, AgentVersion: "v1", Scheduled: s, Started: s, Finished: s.Add(time.Minute),
		Result: ResultOK, Attempts: 1, Bytes: int64(i), Snapshots: []string{snap}, NextRun: s.Add(24 * time.Hour)}
}

func TestHistoryKeepsLast(t *testing.T) {
	h := History{Dir: filepath.Join(t.TempDir(), "state"), Keep: 3}
	if recs, err := h.Load(); err != nil || recs != nil {
		t.Fatalf("no history yet: %v, %v", recs, err)
	}
	for i := range 5 {
		if err := h.Add(goodRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := h.Load()
	if err != nil || len(recs) != 3 || recs[0].Bytes != 2 || recs[2].Bytes != 4 {
		t.Fatalf("history %+v, %v; want the last three", recs, err)
	}
	if !LastScheduled(recs).Equal(goodRecord(4).Scheduled) {
		t.Errorf("LastScheduled %s", LastScheduled(recs))
	}
	os.WriteFile(filepath.Join(h.Dir, HistoryFile), []byte(`[{"version":1}]`), 0o600)
	if _, err := h.Load(); err == nil || !strings.Contains(err.Error(), "move it aside") {
		t.Fatalf("a damaged history: %v", err)
	}
}

func TestPublish(t *testing.T) {
	st, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	r := goodRecord(1)
	for range 2 { // the same record twice is stored once
		if err := Publish(context.Background(), st, r); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	st.List(context.Background(), runrecord.Prefix, func(i store.Info) error { names = append(names, i.Name); return nil })
	if len(names) != 1 {
		t.Fatalf("runs/ holds %v", names)
	}
	var got []byte
	st.Get(context.Background(), names[0], 0, -1, func(rd io.Reader) error { got, err = io.ReadAll(rd); return err })
	if back, err := runrecord.Parse(got); err != nil || back.Bytes != 1 {
		t.Fatalf("stored record: %+v, %v", back, err)
	}
	if err := Publish(context.Background(), st, Record{}); err == nil {
		t.Fatal("an invalid record was published")
	}
}

// Two agents never hold the lock at once; it is free again once released.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	release, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("a second Lock while held: %v, want ErrLocked", err)
	}
	release()
	release2, err := Lock(dir)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	release2()
}
