package jobs

import (
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/runrecord"
	"github.com/cofferhq/coffer/internal/store"
)

// TestAgentRuns reads the agents' run records of a tenant; one that does
// not parse is skipped.
func TestAgentRuns(t *testing.T) {
	d, _ := vaultStore(t)
	t0 := time.Date(2026, 12, 4, 1, 0, 0, 0, time.UTC)
	put := func(b []byte, name string) {
		t.Helper()
		if err := d.Data.Put(ctx, "repos/"+tid+"/"+name, store.Bytes(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	for i, res := range []string{runrecord.ResultOK, runrecord.ResultFailed} {
		rec := runrecord.Record{Version: runrecord.Version, AgentVersion: "t", Scheduled: t0, Started: t0.Add(time.Duration(i) * 24 * time.Hour),
			Finished: t0.Add(time.Duration(i)*24*time.Hour + time.Minute), Result: res, Attempts: 1, Snapshots: []string{}}
		if res != runrecord.ResultOK {
			rec.Error = "the vault refused the upload"
		}
		b, err := rec.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		put(b, runrecord.Name(b))
	}
	junk := []byte(`{"version":9}`)
	put(junk, runrecord.Name(junk))
	runs, err := AgentRuns(d.Data, nil)(ctx, tid)
	if err != nil || len(runs) != 2 {
		t.Fatalf("runs %+v, %v; want the two that parse", runs, err)
	}
	last, failed := agentRuns(runs)
	if failed != 1 || last.Error != "the vault refused the upload" || last.VM != "" {
		t.Fatalf("last %+v, failed %d", last, failed)
	}
}
