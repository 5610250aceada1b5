package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cofferhq/coffer/internal/diskgen"
)

// roundTrip backs up two nights into repoURL, restores both, and checks.
// roundTrip runs the main job through agent a on a new repository at
// repoURL: two nights, both restored byte-identical, and a full check.
func roundTrip(t *testing.T, a *agent, repoURL string) {
	a.ok("init", "--repo", repoURL)
	n1 := filepath.Join(a.dir, "night1.img")
	n2 := filepath.Join(a.dir, "night2.img")
	const size = 256 << 20
	if err := diskgen.Generate(n1, size, 1, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	// A 1%-changed image, without the shifting insert.
	if _, err := diskgen.Mutate(n1, n2, 2, diskgen.MutateOptions{ChangedFraction: 0.01}); err != nil {
		t.Fatal(err)
	}
	s1 := summary(t, a.ok("backup", "--image", n1, "--name", "vm", "--json"))
	s2 := summary(t, a.ok("backup", "--image", n2, "--name", "vm", "--json"))
	if got := num(t, s2, "bytes_stored_new"); got >= size*4/100 {
		t.Errorf("second backup of a 1%%-changed image stored %d bytes, want < 4%% of %d", got, size)
	}
	if num(t, s1, "bytes_stored_new") == 0 {
		t.Error("first backup stored nothing")
	}
	id1 := s1["snapshot_id"].(string)

	out1 := filepath.Join(a.dir, "out1.img")
	out2 := filepath.Join(a.dir, "out2.img")
	r1 := summary(t, a.ok("restore", id1[:8], "--to", out1, "--json"))
	if r1["verified"] != true {
		t.Errorf("restore not verified: %v", r1)
	}
	// --read-back verifies by reading every block back instead.
	if r2 := summary(t, a.ok("restore", "latest", "--name", "vm", "--to", out2, "--read-back", "--json")); r2["verified"] != true {
		t.Errorf("restore --read-back not verified: %v", r2)
	}
	sameFile(t, n1, out1)
	sameFile(t, n2, out2)

	// The restored image is sparse where the disk is empty.
	var st syscall.Stat_t
	if err := syscall.Stat(out1, &st); err != nil {
		t.Fatal(err)
	}
	if alloc := st.Blocks * 512; alloc > size*3/4 {
		t.Errorf("restored image allocates %d bytes of %d: not sparse", alloc, size)
	}

	var list []map[string]any
	if err := json.Unmarshal([]byte(a.ok("snapshots", "--json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0]["id"] != id1 || list[1]["id"] != s2["snapshot_id"] {
		t.Errorf("snapshots lists %v, want %s then %s", list, id1, s2["snapshot_id"])
	}
	if txt := a.ok("snapshots").stdout; !strings.Contains(txt, id1[:12]) {
		t.Errorf("snapshots table lacks %s:\n%s", id1[:12], txt)
	}
	a.ok("check", "--read-data")
}

func TestRoundTripLocal(t *testing.T) {
	roundTrip(t, newAgent(t), "file://"+filepath.Join(t.TempDir(), "repo"))
}

func TestRoundTripS3(t *testing.T) {
	minio.Require(t)
	roundTrip(t, newAgent(t), minio.NewBucket(t))
}

func TestSparseImageHolesAreNotRead(t *testing.T) {
	a := newAgent(t)
	a.ok("init", "--repo", filepath.Join(a.dir, "repo"))
	img := filepath.Join(a.dir, "sparse.img")
	const size, data = 4 << 30, 200 << 20
	if err := diskgen.GenerateSparse(img, size, data, 3); err != nil {
		t.Fatal(err)
	}
	s := summary(t, a.ok("backup", "--image", img, "--json"))
	// Only data is read; a little more where a 64 KiB block straddles the
	// edge of a data range.
	if got := num(t, s, "bytes_read"); got > data+data/20 {
		t.Errorf("read %d bytes of a %d-byte image holding %d bytes of data", got, int64(size), int64(data))
	}
	out := filepath.Join(a.dir, "out.img")
	a.ok("restore", "latest", "--to", out)
	sameFile(t, img, out)
}

func TestExitCodes(t *testing.T) {
	a := newAgent(t)
	repo := filepath.Join(a.dir, "repo")

	// No repository: 10.
	if r := a.run("snapshots", "--repo", repo); r.code != 10 {
		t.Errorf("snapshots on a missing repository exited %d, want 10: %s", r.code, r.stderr)
	}
	a.ok("init", "--repo", repo)
	if r := a.run("init", "--repo", repo); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("second init exited %d: %s", r.code, r.stderr)
	}

	// Wrong passphrase: 12, with a clear message (without the key the
	// agent kept at init, which needs no passphrase).
	bad := *a
	bad.password = "wrong"
	if r := bad.run("--no-key-cache", "snapshots"); r.code != 12 || !strings.Contains(r.stderr, "wrong passphrase") {
		t.Errorf("wrong passphrase exited %d (%q), want 12", r.code, r.stderr)
	}

	// Usage: 2.
	if r := a.run("restore"); r.code != 2 {
		t.Errorf("restore without a snapshot exited %d, want 2", r.code)
	}
	if r := a.run("backup", "--no-such-flag"); r.code != 2 {
		t.Errorf("unknown flag exited %d, want 2", r.code)
	}
	if r := a.run("frobnicate"); r.code != 2 {
		t.Errorf("unknown command exited %d, want 2", r.code)
	}

	// A missing snapshot is a failure (1) that says so.
	if r := a.run("restore", "deadbeef", "--to", filepath.Join(a.dir, "x")); r.code != 1 || !strings.Contains(r.stderr, "no snapshot") {
		t.Errorf("restore of a missing snapshot exited %d: %s", r.code, r.stderr)
	}

	// The config file is private.
	st, err := os.Stat(a.config)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("config file mode %v, want 0600", st.Mode().Perm())
	}
	// The passphrase is nowhere in it.
	b, _ := os.ReadFile(a.config)
	if strings.Contains(string(b), a.password) {
		t.Error("config file holds the passphrase")
	}
}

func TestChangePassphrase(t *testing.T) {
	a := newAgent(t)
	a.ok("init", "--repo", filepath.Join(a.dir, "repo"))
	img := filepath.Join(a.dir, "d.img")
	if err := diskgen.Generate(img, 8<<20, 5, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	a.ok("backup", "--image", img)
	cmd := append([]string{}, "key", "passwd")
	r := a.runEnv([]string{"COFFER_NEW_PASSWORD=new secret"}, cmd...)
	if r.code != 0 {
		t.Fatalf("key passwd exited %d: %s", r.code, r.stderr)
	}
	if r := a.run("--no-key-cache", "snapshots"); r.code != 12 {
		t.Errorf("old passphrase still works (exit %d)", r.code)
	}
	a.password = "new secret"
	a.ok("restore", "latest", "--to", filepath.Join(a.dir, "out.img"))
	sameFile(t, img, filepath.Join(a.dir, "out.img"))
}
