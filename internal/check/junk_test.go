package check

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

// plant stores b under the name Coffer would give it (prefix + SHA-256, or
// a pack name), as anyone holding an agent credential can through a vault.
func plant(t *testing.T, st store.Store, prefix string, b []byte) string {
	t.Helper()
	sum := sha256.Sum256(b)
	name := prefix + hex.EncodeToString(sum[:])
	if prefix == repo.DataPrefix {
		name = repo.PackName(sum)
	}
	if err := st.Put(ctx, name, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	return name
}

func junk(n int, seed uint64) []byte {
	return repofixture.RandBytes(rand.New(rand.NewPCG(seed, 2)), n)
}

// TestCheckJunkIsForeignNotCorruption: junk planted in every kind of
// object is reported once per object as a foreign warning that says who
// can remove it, the check passes, and nothing is changed or removed.
func TestCheckJunkIsForeignNotCorruption(t *testing.T) {
	f, _ := setup(t, nil)
	// A pack of another repository: a real pack's shape, another key.
	other := repofixture.New(t, "another repository")
	other.Blob(pack.TypeData, junk(5000, 9))
	other.Commit()
	otherPack := names(t, other, repo.DataPrefix)[0]
	otherBytes, err := store.ReadAll(ctx, other.Store, otherPack)
	if err != nil {
		t.Fatal(err)
	}
	planted := []string{
		plant(t, f.Store, repo.SnapshotsPrefix, junk(500, 1)),
		plant(t, f.Store, repo.IndexPrefix, junk(500, 2)),
		plant(t, f.Store, repo.DataPrefix, junk(500, 3)),
		plant(t, f.Store, repo.DataPrefix, otherBytes),
		plant(t, f.Store, repo.KeysPrefix, junk(500, 4)),
	}
	before := append(names(t, f, ""), "")
	for _, readData := range []bool{false, true} {
		rep := run(t, f, readData)
		var warns [][2]string
		for _, n := range planted {
			warns = append(warns, [2]string{n, "not an object of this repository"})
		}
		expect(t, rep, nil, warns)
		for _, p := range rep.Problems {
			if !p.Foreign || !strings.Contains(p.Message, "delete "+p.Object+" from file://") {
				t.Errorf("read-data %v: %+v; want foreign, saying how to remove it", readData, p)
			}
		}
		if rep.Snapshots != 1 || rep.IndexFiles != 1 || rep.Keys != 2 {
			t.Errorf("report %+v: want the real snapshot and index counted", rep)
		}
	}
	if after := append(names(t, f, ""), ""); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("check changed the store: %v -> %v", before, after)
	}
}

// TestCheckDamagedUnindexedPackIsError: a pack of this repository that is
// damaged stays an error although it is in no index, in both modes.
func TestCheckDamagedUnindexedPackIsError(t *testing.T) {
	f, _ := setup(t, nil)
	p := dataPack(t, f)
	for _, n := range names(t, f, repo.IndexPrefix) {
		if err := f.Store.Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	flip(t, f, p.name, -pack.TrailerSize-10)
	for _, readData := range []bool{false, true} {
		rep := run(t, f, readData)
		found := false
		for _, pr := range rep.Problems {
			if pr.Object == p.name && pr.Foreign {
				t.Errorf("read-data %v: damaged pack reported as foreign: %+v", readData, pr)
			}
			if pr.Object == p.name && !pr.Warning && strings.Contains(pr.Message, "damaged") {
				found = true
			}
		}
		if !found || rep.Errors() == 0 {
			t.Errorf("read-data %v: damaged unindexed pack not an error: %+v", readData, rep.Problems)
		}
	}
}

// TestCheckBackupRunning: with a backup running on this machine, packs in
// no index are its packs in flight: counted, not warned about.
func TestCheckBackupRunning(t *testing.T) {
	f, _ := setup(t, nil)
	for _, n := range names(t, f, repo.IndexPrefix) {
		if err := f.Store.Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	n := len(packs(t, f))
	for _, readData := range []bool{false, true} {
		rep, err := Run(ctx, f.Open(), Options{ReadData: readData, BackupRunning: true})
		if err != nil {
			t.Fatal(err)
		}
		expect(t, rep, nil, nil)
		if rep.Unindexed != n {
			t.Errorf("read-data %v: Unindexed = %d, want %d", readData, rep.Unindexed, n)
		}
	}
}

// TestCheckReportsSymlinks: symbolic links planted in a directory
// repository are ignored by every listing and reported by check, once
// each, as warnings; the objects beside them check clean.
func TestCheckReportsSymlinks(t *testing.T) {
	f, _ := setup(t, nil)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A pack prefix directory no pack of this (random) repository uses.
	dataLink := ""
	for i := 255; i >= 0 && dataLink == ""; i-- {
		l := fmt.Sprintf("data/%02x", i)
		if _, err := os.Lstat(filepath.Join(f.Dir, filepath.FromSlash(l))); errors.Is(err, os.ErrNotExist) {
			dataLink = l
		}
	}
	for _, l := range []string{"snapshots/" + strings.Repeat("ab", 32), dataLink} {
		if err := os.Symlink(secret, filepath.Join(f.Dir, filepath.FromSlash(l))); err != nil {
			t.Fatal(err)
		}
	}
	rep := run(t, f, false)
	expect(t, rep, nil, [][2]string{
		{dataLink, "symbolic link"},
		{"snapshots/" + strings.Repeat("ab", 32), "symbolic link"},
	})
	if rep.Snapshots != 1 {
		t.Errorf("report %+v", rep)
	}
}
