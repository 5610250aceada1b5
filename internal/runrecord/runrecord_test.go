package runrecord

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

const snap = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func goodRecord(i int) Record {
	s := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC).Add(time.Duration(i) * 24 * time.Hour)
	return Record{Version: Version, AgentVersion: "v1", Scheduled: s, Started: s, Finished: s.Add(time.Minute),
		Result: ResultOK, Attempts: 1, Bytes: int64(i), Snapshots: []string{snap}, NextRun: s.Add(24 * time.Hour)}
}

func TestRecordRoundTrip(t *testing.T) {
	r := goodRecord(1)
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
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

func TestParseRejects(t *testing.T) {
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
		"control chars":  edit(func(m map[string]any) { m["result"] = "failed"; m["error"] = "a\x1b[2Jb" }),
		"ok with error":  edit(func(m map[string]any) { m["error"] = "x" }),
		"failed, no why": edit(func(m map[string]any) { m["result"] = "failed" }),
		"trailing":       string(good) + "{}",
		"not json":       "{",
		"too large":      `{"error":"` + strings.Repeat("x", MaxRecordSize) + `"}`,
	}
	for name, in := range cases {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
