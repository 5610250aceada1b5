package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/drill"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/vault/registry"
)

// FuzzStatusReader stores the fuzzer's bytes as a receipt, as the vault's
// drill evidence and as the agent's, and computes the status with the
// fuzzer's objective at the fuzzer's time. Whatever the bytes, the reader
// never fails or panics over them (it counts or skips them), and the
// report keeps its own rules: every VM in exactly one state, violated
// exactly when late, waiting or absent, counts that add up, no negative
// age.
func FuzzStatusReader(f *testing.F) {
	f.Add([]byte(`{"version":1,"snapshot":"`+hex64('a')+`","name":"web01","time":"2026-12-05T10:00:00Z","source":"image","disks":[{"size":10,"data_bytes":5}],"packs":[]}`), int64(time.Hour), int64(1796472000))
	f.Add([]byte(`{"version":1,"snapshot":"`+hex64('b')+`","name":"db","time":"2026-12-01T10:00:00Z","source":"xen","disks":[{"size":10,"data_bytes":5}],"packs":[],"seed":"`+hex64('c')+`"}`), int64(24*time.Hour), int64(1796472000))
	f.Add([]byte(`{"version":1,"run_by":"vault","tenant_id":"`+tid+`","vm":"web01","snapshot_id":"`+hex64('a')+`","snapshot_time":"2026-12-05T10:00:00Z","pick":"newest","target":"verify-only","disks":[],"bytes_size":0,"bytes_fetched":0,"started":"2026-12-05T11:00:00Z","finished":"2026-12-05T11:01:00Z","duration_seconds":60,"result":"failed","error":"x","rto_objective_seconds":0,"rto":"no objective"}`), int64(0), int64(0))
	f.Add([]byte("not json"), int64(-1), int64(-1<<62))
	meta, err := store.OpenLocal(f.TempDir(), true)
	if err != nil {
		f.Fatal(err)
	}
	sw, _ := store.As[store.Swapper](meta)
	f.Fuzz(func(t *testing.T, b []byte, rpo, unix int64) {
		sum := sha256.Sum256(b)
		name := hex.EncodeToString(sum[:])
		data := &mapStore{objs: map[string][]byte{
			"repos/" + tid + "/receipts/" + name: b,
			"repos/" + tid + "/drills/" + name:   b,
			drill.VaultTenantPrefix(tid) + "x":   b,
		}}
		ten := &registry.Tenant{ID: tid, Name: "acme", RPO: &registry.RPO{Default: time.Duration(rpo),
			PerVM: map[string]time.Duration{"declared": time.Duration(rpo)}}}
		r := &StatusReader{Data: data, Meta: sw}
		rep, err := r.Status(ctx, []*registry.Tenant{ten}, time.Unix(unix, 0))
		if err != nil {
			t.Fatalf("the status failed over an object's bytes: %v", err)
		}
		checkReport(t, rep)
	})
}

func hex64(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

// checkReport checks a report's invariants.
func checkReport(t *testing.T, rep *StatusReport) {
	t.Helper()
	var late, waiting, absent, failed int
	for _, ts := range rep.Tenants {
		for _, v := range ts.VMs {
			switch v.State {
			case StateLate:
				late++
			case StateWaiting:
				waiting++
			case StateAbsent:
				absent++
			case StateOK, StateNoRPO:
			default:
				t.Fatalf("%s: unknown state %q", v.VM, v.State)
			}
			if v.Violated != (v.State == StateLate || v.State == StateWaiting || v.State == StateAbsent) {
				t.Fatalf("%s: violated %v in state %s", v.VM, v.Violated, v.State)
			}
			if v.AgeSeconds < 0 || (v.RPOSeconds == 0) != (v.State == StateNoRPO) {
				t.Fatalf("%s: age %v, rpo %v, state %s", v.VM, v.AgeSeconds, v.RPOSeconds, v.State)
			}
		}
		if ts.DrillFailed {
			failed++
		}
	}
	if late != rep.Late || waiting != rep.Waiting || absent != rep.Absent || failed != rep.DrillsFailed {
		t.Fatalf("counts %d %d %d %d, report %+v", late, waiting, absent, failed, rep)
	}
}
