package integration

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/seed"
)

// adminRun runs a cofferd command on the vault's store, whatever its exit.
func (v *vault) adminRun(args ...string) result {
	v.t.Helper()
	cmd := exec.Command(cofferdBin, append([]string{"--store", v.storeURL}, args...)...)
	r, err := runCmd(cmd)
	if err != nil {
		v.t.Fatal(err)
	}
	return r
}

// exportSeed runs coffer seed export and returns the seed's ID.
func exportSeed(t *testing.T, a *agent, usb string, args ...string) string {
	t.Helper()
	r := a.ok(append([]string{"seed", "export", "--to", usb, "--json"}, args...)...)
	var out struct {
		Type, Seed string
		Registered bool
	}
	if err := lastJSON(r.stdout, &out); err != nil || out.Type != "seed_export" || len(out.Seed) != 64 || !out.Registered {
		t.Fatalf("seed export printed %q (%v)", r.stdout, err)
	}
	return out.Seed
}

// lastJSON decodes the last JSON value of out into v.
func lastJSON(out string, v any) error {
	dec := json.NewDecoder(strings.NewReader(out))
	var last json.RawMessage
	for dec.More() {
		if err := dec.Decode(&last); err != nil {
			return err
		}
	}
	return json.Unmarshal(last, v)
}

// objectsOf lists the files under dir with their bytes' sizes.
func objectsOf(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// copyTree copies a seed directory.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// damageSeed spoils n files of the seed in dir (objects only, or parity
// files too), the largest first, in turn by deleting, truncating and
// overwriting bytes; it returns their names.
func damageSeed(t *testing.T, dir string, n int, objectsOnly bool) []string {
	t.Helper()
	s, err := seed.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := s.Manifest.Files()
	if objectsOnly {
		files = slices.Clone(s.Manifest.Objects)
	}
	slices.SortStableFunc(files, func(a, b seed.File) int { return int(b.Size - a.Size) })
	var names []string
	for i, f := range files[:n] {
		p := seed.FilePath(s.Root, f)
		switch i % 3 {
		case 0:
			err = os.Remove(p)
		case 1:
			err = os.Truncate(p, f.Size/3)
		default:
			var b []byte
			if b, err = os.ReadFile(p); err == nil {
				for j := 0; j < len(b); j += 4099 {
					b[j] ^= 0x5a
				}
				err = os.WriteFile(p, b, 0o644)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, f.Name)
	}
	return names
}

func seedFiles(t *testing.T, dir string) int {
	t.Helper()
	s, err := seed.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(s.Manifest.Files())
}

// ceilShare is the number of files that make share of n, at least one.
func ceilShare(n int, share float64) int { return max(1, int(share*float64(n)+0.999999)) }

// The seed of an image, end to end through the real binaries: exported,
// night 2 backed up through the vault while the disk travels (uploading at
// most the changed share plus 5%, its snapshot waiting and unrestorable),
// a copy damaged beyond the parity refused with the vault unchanged, the
// seed damaged within the parity repaired and imported, both nights
// restored byte-identical, usage exact, a second import refused, the
// report confirmed.
func TestSeedOfAnImageThroughTheVault(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vault")
	v := startVault(t, "file://"+dir)
	tid, token := v.createTenant("acme", "none")
	tdir := filepath.Join(dir, "repos", tid)
	ag := enrolledAgent(t, token)
	ag.ok("init", "--repo", v.url)

	n1, n2 := filepath.Join(ag.dir, "n1"), filepath.Join(ag.dir, "n2")
	if err := diskgen.Generate(n1, 96<<20, 11, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := diskgen.Mutate(n1, n2, 12, diskgen.MutateOptions{ChangedFraction: 0.04}); err != nil {
		t.Fatal(err)
	}
	// What night 2 stores when night 1 is in the repository: the changed
	// share, as the backup cuts and compresses it. Measured in a local
	// copy of the tenant's config and keys, so the chunk boundaries are
	// the tenant's own.
	ref := newAgent(t)
	refRepo := filepath.Join(ref.dir, "repo")
	copyTree(t, filepath.Join(tdir, "keys"), filepath.Join(refRepo, "keys"))
	cfg, err := os.ReadFile(filepath.Join(tdir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(refRepo, "config"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	ref.ok("--repo", refRepo, "backup", "--image", n1, "--name", "vm")
	changed := num(t, summary(t, ref.ok("--repo", refRepo, "backup", "--image", n2, "--name", "vm", "--json")), "bytes_stored_new")

	usb := filepath.Join(t.TempDir(), "usb")
	id := exportSeed(t, ag, usb, "--image", n1, "--name", "vm")
	v.admin("tenant", "set-rpo", "acme", "24h")

	if r := v.adminRun("status", "--tenant", "acme"); r.code != 1 || !strings.Contains(r.stdout, "waiting") {
		t.Fatalf("status while the seed travels: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	before, _ := v.usage("acme")
	night2 := summary(t, ag.ok("backup", "--image", n2, "--name", "vm", "--json"))
	after, _ := v.usage("acme")
	data := num(t, night2, "bytes_data")
	t.Logf("night 2 uploaded %d bytes while the seed travels; with night 1 in the repository it stores %d; data %d", after-before, changed, data)
	if up := after - before; float64(up) > float64(changed)+0.05*float64(data) {
		t.Fatalf("night 2 uploaded %d bytes while the seed travels; at most %d (what it stores with night 1 in the repository) plus 5%% of its %d bytes of data", up, changed, data)
	}
	snaps := snapshotIDs(t, ag, v.url, "vm")
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots, want 2", len(snaps))
	}
	out := filepath.Join(ag.dir, "restored")
	if r := ag.run("restore", snaps[1][:12], "--to", out); r.code == 0 || !strings.Contains(r.stderr, id[:12]) {
		t.Fatalf("restore of night 2 before the import: exit %d\n%s", r.code, r.stderr)
	}

	// A copy damaged beyond the parity: refused, naming the files; the
	// vault as it was.
	bad := filepath.Join(t.TempDir(), "bad")
	copyTree(t, usb, bad)
	files := seedFiles(t, usb)
	spoiled := damageSeed(t, bad, ceilShare(files, 0.20), false)
	held, usage := objectsOf(t, tdir), v.fullUsage("acme")
	r := v.adminRun("seed", "import", "--tenant", "acme", bad)
	if r.code == 0 || !strings.Contains(r.stderr, spoiled[0]) {
		t.Fatalf("import of a seed damaged beyond its parity: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if now := objectsOf(t, tdir); fmt.Sprint(now) != fmt.Sprint(held) || v.fullUsage("acme") != usage {
		t.Fatal("a refused import changed the tenant's objects or usage")
	}

	// The seed itself, damaged within its parity: repaired and imported.
	repaired := damageSeed(t, usb, ceilShare(files, 0.03), true)
	var rep struct {
		Report struct {
			Repaired []struct{ Name string } `json:"repaired"`
			Clean    bool                    `json:"clean"`
		} `json:"report"`
	}
	r = v.adminRun("--json", "seed", "import", "--tenant", "acme", usb)
	if r.code != 0 || lastJSON(r.stdout, &rep) != nil || !rep.Report.Clean || len(rep.Report.Repaired) != len(repaired) {
		t.Fatalf("import of a seed damaged within its parity: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for i, img := range []string{n1, n2} {
		ag.ok("restore", snaps[i][:12], "--to", out)
		sameFile(t, img, out)
		_ = os.Remove(out)
	}
	if stored, _ := v.usage("acme"); stored != dirSize(t, tdir) {
		t.Fatalf("the vault reports %d bytes stored; it holds %d", stored, dirSize(t, tdir))
	}
	if r := v.adminRun("seed", "import", "--tenant", "acme", usb); r.code == 0 || !strings.Contains(r.stderr, "imported") {
		t.Fatalf("a second import: exit %d\n%s", r.code, r.stderr)
	}
	if r := v.adminRun("status", "--tenant", "acme"); r.code != 0 {
		t.Fatalf("status after the import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	v.admin("check", "--read-data")
	if r := ag.ok("seed", "status"); !strings.Contains(r.stdout, "confirm") {
		t.Fatalf("seed status after a clean import:\n%s", r.stdout)
	}
	ag.ok("seed", "confirm", id)
}

// The seed of a simulated XenServer VM: night 1 exported, night 2 read by
// changed block tracking and backed up through the vault while the disk
// travels, then imported; both nights restore byte-identical.
func TestSeedOfAXenVMThroughTheVault(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "vault")
	v := startVault(t, "file://"+dir)
	tid, token := v.createTenant("acme", "none")
	p := newSimPool(t, tmp, map[string][]string{"web": {"48M"}})
	ag := enrolledAgent(t, token)
	ag.ok("init", "--repo", v.url)
	conf, err := os.ReadFile(ag.config)
	if err != nil {
		t.Fatal(err)
	}
	conf = append(conf, fmt.Sprintf("xen:\n  url: %s\n  password_file: %s\n  fingerprint: %s\n  all: true\n", p.info.URL, p.pw, p.info.Fingerprint)...)
	if err := os.WriteFile(ag.config, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	night1 := filepath.Join(tmp, "night1.img")
	p.xapisim("disk", "export", "web", "0", night1)
	usb := filepath.Join(tmp, "usb")
	exportSeed(t, ag, usb)

	p.xapisim("disk", "write", "web", "0", "--random-blocks", "2", "--seed", "9")
	night2 := filepath.Join(tmp, "night2.img")
	p.xapisim("disk", "export", "web", "0", night2)
	before, _ := v.usage("acme")
	vm := vmsOf(t, ag.ok("backup", "--json"))["web"]
	after, _ := v.usage("acme")
	d := vm["disks"].([]any)[0].(map[string]any)
	if d["read"] != "changed" {
		t.Fatalf("night 2 read %v (%v), want changed blocks", d["read"], d["reason"])
	}
	t.Logf("night 2 uploaded %d bytes while the seed travels (limit %d)", after-before, int64(7*(48<<20)/100))
	if up := after - before; float64(up) > (0.02+0.05)*float64(48<<20) {
		t.Fatalf("night 2 uploaded %d bytes while the seed travels, more than 7%% of the disk", up)
	}
	v.admin("seed", "import", "--tenant", "acme", usb)
	snaps := snapshotIDs(t, ag, v.url, "web")
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots of web, want 2", len(snaps))
	}
	for i, img := range []string{night1, night2} {
		out := filepath.Join(tmp, fmt.Sprintf("restored%d.img", i))
		ag.ok("restore", snaps[i][:12], "--disk", "0", "--to", out)
		sameFile(t, img, out)
	}
	if stored, _ := v.usage("acme"); stored != dirSize(t, filepath.Join(dir, "repos", tid)) {
		t.Fatal("usage after the import is not the bytes the tenant's space holds")
	}
}
