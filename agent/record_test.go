package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

func goodRecord(i int) Record {
	s := monday.Add(time.Duration(i) * 24 * time.Hour)
	return Record{Version: RecordVersion, AgentVersion: "v1", Scheduled: s, Started: s, Finished: s.Add(time.Minute),
		Result: ResultOK, Attempts: 1, Bytes: int64(i), Snapshots: []string{snap}, NextRun: s.Add(24 * time.Hour)}
}

func TestRecordRoundTrip(t *testing.T) {
	r := goodRecord(1)
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := back.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip changed the record:\n%s\n%s", b, b2)
	}
	if k, err := vaultapi.ParseRepoName(Name(b)); err != nil || k != vaultapi.KindRun {
		t.Fatalf("record name %s: kind %v, %v; want a run", Name(b), k, err)
	}
}

func TestParseRecordRejects(t *testing.T) {
	good, _ := goodRecord(1).Marshal()
	edit := func(f func(m map[string]any)) string {
		var m map[string]any
		json.Unmarshal(good, &m)
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	cases := map[string]string{
		"unknown field":  edit(func(m map[string]any) { m["password"] = "x" }),
		"version":        edit(func(m map[string]any) { m["version"] = 2 }),
		"result":         edit(func(m map[string]any) { m["result"] = "fine" }),
		"time backwards": edit(func(m map[string]any) { m["finished"] = "2000-01-01T00:00:00Z" }),
		"attempts":       edit(func(m map[string]any) { m["attempts"] = 0 }),
		"bytes":          edit(func(m map[string]any) { m["bytes_stored_new"] = -1 }),
		"snapshot id":    edit(func(m map[string]any) { m["snapshots"] = []string{"../x"} }),
		"trailing":       string(good) + "{}",
		"not json":       "{",
		"too large":      `{"error":"` + strings.Repeat("x", MaxRecordSize) + `"}`,
	}
	for name, in := range cases {
		if _, err := ParseRecord([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
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
	st.List(context.Background(), RunsPrefix, func(i store.Info) error { names = append(names, i.Name); return nil })
	if len(names) != 1 {
		t.Fatalf("runs/ holds %v", names)
	}
	var got []byte
	st.Get(context.Background(), names[0], 0, -1, func(rd io.Reader) error { got, err = io.ReadAll(rd); return err })
	if back, err := ParseRecord(got); err != nil || back.Bytes != 1 {
		t.Fatalf("stored record: %+v, %v", back, err)
	}
	if err := Publish(context.Background(), st, Record{}); err == nil {
		t.Fatal("an invalid record was published")
	}
}
