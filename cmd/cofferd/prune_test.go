package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
