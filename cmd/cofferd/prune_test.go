package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/repo"
)

// Retention and garbage collection end to end, without keys: four nights
// of web01, keep-last 2; prune forgets the two oldest; gc marks the packs
// only they needed and deletes them after the grace; both kept snapshots
// still restore byte-identical with the escrow identity, and check finds
// nothing wrong.
func TestPruneAndGCKeepRestorable(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	dir := t.TempDir()
	var imgs []string
	for i := range 4 {
		img := filepath.Join(t.TempDir(), fmt.Sprintf("night%d.img", i))
		if err := diskgen.Generate(img, 8<<20, uint64(10+i), diskgen.Options{}); err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	idFile := escrowTenantWith(t, dir, "acme", true, func(r *repo.Repo) {
		for _, img := range imgs {
			backupImage(t, r, img)
			time.Sleep(2 * time.Millisecond) // distinct snapshot times
		}
	})
	if r := cofferd(t, dir, "tenant", "set-retention", "acme", "--keep-last", "2"); r.code != 0 || !strings.Contains(r.stdout, "last 2") {
		t.Fatalf("set-retention: %+v", r)
	}
	var dry pruneOut
	r := cofferd(t, dir, "--json", "prune", "--dry-run")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &dry) != nil || len(dry.Tenants) != 1 || dry.Tenants[0].Removed != 2 {
		t.Fatalf("prune --dry-run: %+v", r)
	}
	tdir := tenantRepoDir(t, dir)
	packsBefore := countFiles(t, filepath.Join(tdir, "data"))
	if r := cofferd(t, dir, "prune"); r.code != 0 || !strings.Contains(r.stdout, "removed 2 snapshots") {
		t.Fatalf("prune: %+v", r)
	}
	if n := countFiles(t, filepath.Join(tdir, "snapshots")); n != 2 {
		t.Fatalf("%d snapshots after prune, want 2", n)
	}
	later := &stepClock{now: time.Now().Add(25 * time.Hour)}
	if r := cofferdAt(t, dir, later, "gc"); r.code != 0 || !strings.Contains(r.stdout, "deleted 0 packs") {
		t.Fatalf("gc (marking): %+v", r)
	}
	later.now = later.now.Add(25 * time.Hour)
	r = cofferdAt(t, dir, later, "--json", "gc")
	var out gcOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Tenants) != 1 || len(out.Tenants[0].Deleted) == 0 {
		t.Fatalf("gc (deleting): %+v", r)
	}
	if after := countFiles(t, filepath.Join(tdir, "data")); after != packsBefore-len(out.Tenants[0].Deleted) {
		t.Fatalf("%d packs before, %d deleted, %d after", packsBefore, len(out.Tenants[0].Deleted), after)
	}
	for i, img := range imgs[2:] {
		rest := filepath.Join(t.TempDir(), "r.img")
		snap := "latest"
		if i == 0 {
			snap = oldestSnapshot(t, dir)
		}
		if r := cofferd(t, dir, "restore", "--tenant", "acme", snap, "--name", "web01", "--to", rest, "--escrow-key", idFile); r.code != 0 {
			t.Fatalf("restore of night %d after gc: %+v", i+2, r)
		}
		want, _ := os.ReadFile(img)
		if got, _ := os.ReadFile(rest); !bytes.Equal(got, want) {
			t.Fatalf("night %d restores differently after gc", i+2)
		}
	}
	if r := cofferd(t, dir, "check", "--read-data"); r.code != 0 {
		t.Fatalf("check after gc: %+v", r)
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// oldestSnapshot is the ID of the oldest snapshot the vault's receipts name.
func oldestSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var dry pruneOut
	r := cofferd(t, dir, "--json", "prune", "--dry-run")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &dry) != nil || len(dry.Tenants) != 1 {
		t.Fatalf("prune --dry-run: %+v", r)
	}
	ds := dry.Tenants[0].Decisions
	b, err := os.ReadFile(filepath.Join(tenantRepoDir(t, dir), ds[len(ds)-1].ID))
	if err != nil {
		t.Fatal(err)
	}
	var rc struct{ Snapshot string }
	if err := json.Unmarshal(b, &rc); err != nil {
		t.Fatal(err)
	}
	return rc.Snapshot[:12]
}

// cofferd serve's maintenance loop prunes and collects on its own, round
// after round, holding the lease: with a clock that moves an hour a round,
// the pruned nights' packs are gone after the grace, and the kept nights
// restore.
func TestServeMaintenanceLoop(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	dir := t.TempDir()
	var imgs []string
	for i := range 3 {
		img := filepath.Join(t.TempDir(), fmt.Sprintf("night%d.img", i))
		if err := diskgen.Generate(img, 4<<20, uint64(20+i), diskgen.Options{}); err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	idFile := escrowTenantWith(t, dir, "acme", true, func(r *repo.Repo) {
		for _, img := range imgs {
			backupImage(t, r, img)
			time.Sleep(2 * time.Millisecond)
		}
	})
	if r := cofferd(t, dir, "tenant", "set-retention", "acme", "--keep-last", "1"); r.code != 0 {
		t.Fatalf("set-retention: %+v", r)
	}
	tdir := tenantRepoDir(t, dir)
	before := countFiles(t, filepath.Join(tdir, "data"))
	g := &globals{storeURL: "file://" + dir, clock: clocktest.New(time.Now()), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	data, reg, led, err := g.openState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		g.maintainLoop(ctx, data, reg, led, &serveMaintenance{every: time.Hour, grace: 24 * time.Hour})
		close(done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for countFiles(t, filepath.Join(tdir, "data")) == before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if n := countFiles(t, filepath.Join(tdir, "snapshots")); n != 1 {
		t.Fatalf("%d snapshots after the loop, want 1", n)
	}
	if after := countFiles(t, filepath.Join(tdir, "data")); after >= before {
		t.Fatalf("no pack collected: %d before, %d after", before, after)
	}
	rest := filepath.Join(t.TempDir(), "r.img")
	if r := cofferd(t, dir, "restore", "--tenant", "acme", "latest", "--name", "web01", "--to", rest, "--escrow-key", idFile); r.code != 0 {
		t.Fatalf("restore: %+v", r)
	}
	want, _ := os.ReadFile(imgs[2])
	if got, _ := os.ReadFile(rest); !bytes.Equal(got, want) {
		t.Fatal("the kept night restores differently")
	}
}
