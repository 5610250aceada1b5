package main

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// seedTestRepo makes a local repository with 1 MiB packs (so a small image
// fills several) and an image of n MiB of random bytes after a hole.
func seedTestRepo(t *testing.T, mib int) (dir, img string) {
	t.Helper()
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	dir = filepath.Join(t.TempDir(), "repo")
	st, err := store.OpenLocal(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	cfg := repo.DefaultConfig()
	cfg.PackSize = 1 << 20
	if _, err := repo.Init(t.Context(), st, []byte("pw"), cfg); err != nil {
		t.Fatal(err)
	}
	img = filepath.Join(t.TempDir(), "web.img")
	rng := rand.New(rand.NewPCG(uint64(mib), 3))
	data := make([]byte, (mib+1)<<20)
	for i := 1 << 20; i < len(data); i++ {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, img
}

// listFiles returns the files under dir by path, with their inode and
// modification time.
func listFiles(t *testing.T, dir string) map[string][2]int64 {
	t.Helper()
	out := map[string][2]int64{}
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && !strings.HasPrefix(fi.Name(), ".") {
			out[p] = [2]int64{int64(fi.Sys().(*syscall.Stat_t).Ino), fi.ModTime().UnixNano()}
		}
		return nil
	})
	return out
}

// checkSeed opens the seed in dir, verifies it against the repository's
// key, hashes every file, and checks that it holds every object the
// export wrote and nothing went into the repository itself; it returns
// the manifest.
func checkSeed(t *testing.T, dir, repoDir string, repoBefore map[string][2]int64) *seed.Manifest {
	t.Helper()
	s, err := seed.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := store.OpenLocal(repoDir, false)
	r, err := repo.Open(t.Context(), st, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(r.Keys().SigningKey().Public()); err != nil {
		t.Fatalf("the seed does not verify with the repository's key: %v", err)
	}
	if d, err := s.Check(t.Context(), seed.CheckOptions{}); err != nil || len(d) != 0 {
		t.Fatalf("Check: %v %v", d, err)
	}
	var onDisk []string
	objs := filepath.Join(s.Root, seed.ObjectsDir)
	for p := range listFiles(t, objs) {
		rel, _ := filepath.Rel(objs, p)
		onDisk = append(onDisk, filepath.ToSlash(rel))
	}
	slices.Sort(onDisk)
	var listed []string
	for _, f := range s.Manifest.Objects {
		listed = append(listed, f.Name)
	}
	if !slices.Equal(onDisk, listed) {
		t.Fatalf("the manifest lists %d objects, the seed holds %d", len(listed), len(onDisk))
	}
	if after := listFiles(t, repoDir); len(after) != len(repoBefore) {
		t.Fatalf("the export wrote into the repository: %d files before, %d after", len(repoBefore), len(after))
	}
	for _, f := range s.Manifest.Objects {
		if strings.HasPrefix(f.Name, repo.ReceiptsPrefix) {
			b, _ := os.ReadFile(seed.FilePath(s.Root, f))
			rc, err := vaultapi.ParseReceipt(b)
			if err != nil || rc.Seed != s.Manifest.ID {
				t.Fatalf("receipt %s: Seed %q, %v; want the seed's ID", f.Name, rc.Seed, err)
			}
		}
	}
	return s.Manifest
}

// coffer seed export of an image into a local repository: the seed holds
// every new object and verifies, the repository is untouched, the notice
// says nothing was registered, and the output names the seed, what to
// ship and the WAN estimate at --uplink.
func TestSeedExportImage(t *testing.T) {
	repoDir, img := seedTestRepo(t, 3)
	before := listFiles(t, repoDir)
	to := filepath.Join(t.TempDir(), "usb")
	conf := filepath.Join(t.TempDir(), "coffer.yaml")
	r := runCoffer(t, "--config", conf, "--repo", repoDir, "seed", "export", "--to", to, "--image", img, "--uplink", "20Mbit")
	if r.code != 0 {
		t.Fatalf("seed export: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	m := checkSeed(t, to, repoDir, before)
	if len(m.Snapshots) != 1 || len(m.Packs()) < 3 {
		t.Fatalf("the seed holds %d snapshots and %d packs; want 1 and several", len(m.Snapshots), len(m.Packs()))
	}
	for _, want := range []string{"seed " + m.ID, "ship " + to, "over the WAN at 20 Mbit/s this would take " + durationText(wanTime(m.Bytes(), 2_500_000))} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "not in a vault") || !strings.Contains(r.stderr, "not registered") {
		t.Errorf("no notice that the seed was not registered:\n%s", r.stderr)
	}
	// The seed's snapshot is not in the repository, and is not taken for
	// one the repository lost.
	if r := runCoffer(t, "--config", conf, "--repo", repoDir, "snapshots"); r.code != 0 || strings.Contains(r.stderr, "coffer: warning") {
		t.Errorf("snapshots after the export: exit %d\n%s", r.code, r.stderr)
	}

	// Run again once finished: nothing is rewritten, the same seed.
	files := listFiles(t, to)
	r = runCoffer(t, "--config", conf, "--repo", repoDir, "--json", "seed", "export", "--to", to, "--image", img, "--uplink", "100Mbit")
	var out seedExportJSON
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil {
		t.Fatalf("second export: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if out.Seed != m.ID || !out.Resumed || out.Registered || out.Uplink != 100_000_000 || out.Bytes != m.Bytes() ||
		math.Abs(out.WANSeconds-float64(m.Bytes())/12_500_000) > 1e-6 {
		t.Fatalf("second export said %+v", out)
	}
	if after := listFiles(t, to); !mapsEqual(files, after) {
		t.Fatal("the second run rewrote files of the finished seed")
	}
}

func mapsEqual(a, b map[string][2]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// An export killed after its first packs resumes: the packs written are
// not written again, the seed keeps its ID, and the finished manifest
// lists every pack.
func TestSeedExportResumes(t *testing.T) {
	repoDir, img := seedTestRepo(t, 12)
	before := listFiles(t, repoDir)
	to := filepath.Join(t.TempDir(), "usb")
	conf := filepath.Join(t.TempDir(), "coffer.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data := filepath.Join(to, seed.RootDir, seed.ObjectsDir, "data")
	go func() {
		for ctx.Err() == nil {
			n := 0
			_ = filepath.Walk(data, func(_ string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().IsRegular() && !strings.HasPrefix(fi.Name(), ".") {
					n++
				}
				return nil
			})
			if n >= 2 {
				cancel()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var outb, errb strings.Builder
	code := run(ctx, []string{"--config", conf, "--repo", repoDir, "seed", "export", "--to", to, "--image", img}, &outb, &errb)
	if code != 130 {
		t.Fatalf("the killed export: exit %d; want 130\n%s%s", code, outb.String(), errb.String())
	}
	id, err := os.ReadFile(filepath.Join(to, seed.RootDir, seed.StateDir, "seed-id"))
	if err != nil {
		t.Fatal(err)
	}
	first := listFiles(t, data)
	if len(first) < 2 {
		t.Fatalf("the killed export left %d packs; want some", len(first))
	}
	if _, err := os.Stat(filepath.Join(to, seed.RootDir, seed.ManifestFile)); err == nil {
		t.Fatal("the killed export wrote a manifest")
	}
	r := runCoffer(t, "--config", conf, "--repo", repoDir, "seed", "export", "--to", to, "--image", img)
	if r.code != 0 {
		t.Fatalf("the resumed export: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	m := checkSeed(t, to, repoDir, before)
	if m.ID != strings.TrimSpace(string(id)) {
		t.Fatalf("the resumed export made seed %s; want %s", m.ID, id)
	}
	after := listFiles(t, data)
	for p, v := range first {
		if after[p] != v {
			t.Errorf("%s was written again (or removed)", p)
		}
	}
	if len(m.Packs()) != len(after) {
		t.Fatalf("the manifest lists %d packs, the seed holds %d", len(m.Packs()), len(after))
	}
}

// The small helpers: parity shares, the WAN estimate's text.
func TestSeedExportFlags(t *testing.T) {
	for in, want := range map[string]float64{"5%": 0.05, "10": 0.10, "0.2": 0.2, " 50 % ": 0.5} {
		if got, err := parseParity(in); err != nil || got != want {
			t.Errorf("parseParity(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "0%", "51%", "-5%", "x", "NaN"} {
		if _, err := parseParity(bad); err == nil {
			t.Errorf("parseParity(%q) accepted", bad)
		}
	}
	fiveTB := int64(5e12)
	if got := durationText(wanTime(fiveTB, 2_500_000)); got != "23 d 4 h" {
		t.Errorf("5 TB at 20 Mbit/s: %q; want 23 d 4 h", got)
	}
	for d, want := range map[time.Duration]string{90 * time.Minute: "1 h 30 min", 200 * time.Second: "3 min 20 s", 12 * time.Second: "12 s"} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%s) = %q; want %q", d, got, want)
		}
	}
	if got := bitRateText(2_500_000); got != "20 Mbit/s" {
		t.Errorf("bitRateText = %q", got)
	}
	r := runCoffer(t, "--config", filepath.Join(t.TempDir(), "c.yaml"), "--repo", t.TempDir(), "seed", "export", "--image", "x")
	if r.code != 2 || !strings.Contains(r.stderr, "--to DIR") {
		t.Errorf("export without --to: exit %d\n%s", r.code, r.stderr)
	}
}
