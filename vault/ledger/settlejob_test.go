package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
)

// A killed job leaves reservations; SettleJob settles its own at once
// (stored with the right size: committed; missing or short: dropped) and
// leaves an HTTP upload's reservation alone.
func TestSettleJob(t *testing.T) {
	e := setup(t, 0)
	ctx := context.Background()
	job := ledger.Meta{Job: "seed-import-" + e.tenant.ID}
	stored, b1 := packName(t)
	missing, _ := packName(t)
	short, b3 := packName(t)
	other, _ := packName(t)
	for _, n := range []string{stored, missing, short} {
		if _, err := e.l[0].Reserve(ctx, e.tenant, n, vaultapi.KindPack, 100, job, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.l[0].Reserve(ctx, e.tenant, other, vaultapi.KindPack, 100, ledger.Meta{}, time.Hour); err != nil {
		t.Fatal(err)
	}
	e.put(t, stored, b1)
	e.put(t, short, b3[:50])

	got, err := e.l[1].SettleJob(ctx, e.tenant.ID, job.Job)
	if err != nil {
		t.Fatal(err)
	}
	if got != (ledger.JobSettlement{Committed: 1, Dropped: 2}) {
		t.Fatalf("settled %+v, want 1 committed, 2 dropped", got)
	}
	u, _ := e.l[0].Usage(ctx, e.tenant.ID)
	if u.StoredBytes != 100 || u.Objects != 1 || u.Packs != 1 || len(u.Reserved) != 1 || u.Reserved[0].Name != other {
		t.Fatalf("usage after SettleJob: %+v", u)
	}
	again, err := e.l[0].SettleJob(ctx, e.tenant.ID, job.Job)
	if err != nil || again != (ledger.JobSettlement{}) {
		t.Fatalf("second SettleJob: %+v, %v", again, err)
	}
	if _, err := e.l[0].SettleJob(ctx, e.tenant.ID, ""); err == nil {
		t.Fatal("SettleJob without a job name succeeded")
	}
	if _, err := e.l[0].SettleJob(ctx, "../x", job.Job); err == nil {
		t.Fatal("SettleJob with a bad tenant id succeeded")
	}
}
