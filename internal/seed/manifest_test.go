package seed

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
)

func testKey(t testing.TB) *crypto.SigningKey {
	t.Helper()
	mk, err := crypto.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := crypto.Derive(mk)
	if err != nil {
		t.Fatal(err)
	}
	return k.SigningKey()
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// testManifest returns a valid manifest of a pack, an index file, a
// snapshot and its receipt, with made-up contents.
func testManifest(k *crypto.SigningKey) *Manifest {
	var objs []File
	var snap string
	for _, c := range []struct{ prefix, body string }{{"data/", "pack"}, {"index/", "index"}, {"snapshots/", "snap"}, {"receipts/", "receipt"}} {
		h := sum([]byte(c.body))
		name := c.prefix + h
		if c.prefix == "data/" {
			name = "data/" + h[:2] + "/" + h
		}
		if c.prefix == "snapshots/" {
			snap = h
		}
		objs = append(objs, File{Name: name, Size: int64(len(c.body)), SHA256: h})
	}
	sortFiles(objs)
	return &Manifest{Format: Format, ID: strings.Repeat("ab", 32), Tenant: strings.Repeat("1", 24), TenantName: "acme",
		Repository: strings.Repeat("cd", 32), Created: time.Date(2026, 12, 5, 18, 0, 0, 0, time.UTC), Host: "agent-1",
		Signer: k.Public(), Snapshots: []string{snap}, Objects: objs,
		Parity: Parity{Share: 0.05, Layout: json.RawMessage(`{}`), Files: []File{{Name: ParityName(0), Size: 64, SHA256: strings.Repeat("0", 64)}}}}
}

func sortFiles(fs []File) {
	for i := range fs {
		for j := i + 1; j < len(fs); j++ {
			if fs[j].Name < fs[i].Name {
				fs[i], fs[j] = fs[j], fs[i]
			}
		}
	}
}

func TestManifestRoundTripAndSignature(t *testing.T) {
	k := testKey(t)
	m := testManifest(k)
	dir := t.TempDir()
	root := filepath.Join(dir, RootDir)
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteManifest(root, m, k); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(k.Public()); err != nil {
		t.Fatal(err)
	}
	if s.Manifest.ID != m.ID || len(s.Manifest.Objects) != 4 || len(s.Manifest.Packs()) != 1 {
		t.Fatalf("read back %+v", s.Manifest)
	}
	// Another tenant's key: refused, naming both fingerprints.
	if err := s.Verify(testKey(t).Public()); !errors.Is(err, crypto.ErrBadSignature) {
		t.Fatalf("a seed checked against another key: %v", err)
	}
	// A tampered first copy: the second one is used.
	b, _ := os.ReadFile(filepath.Join(root, ManifestFile))
	tampered := strings.Replace(string(b), `"agent-1"`, `"agent-2"`, 1)
	if err := os.WriteFile(filepath.Join(root, ManifestFile), []byte(tampered), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(k.Public()); err != nil || !s.UsedCopy || s.Manifest.Host != "agent-1" {
		t.Fatalf("tampered first copy: err %v, used copy %v, host %q", err, s.UsedCopy, s.Manifest.Host)
	}
	// Both copies tampered: refused.
	if err := os.WriteFile(filepath.Join(root, copyManifest), []byte(tampered), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(k.Public()); !errors.Is(err, crypto.ErrBadSignature) {
		t.Fatalf("both copies tampered: %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "holds no seed") {
		t.Fatalf("empty directory: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	k := testKey(t)
	for name, change := range map[string]func(m *Manifest){
		"format":     func(m *Manifest) { m.Format = "coffer-seed/2" },
		"id":         func(m *Manifest) { m.ID = "xyz" },
		"tenant":     func(m *Manifest) { m.Tenant = "../etc" },
		"signer":     func(m *Manifest) { m.Signer = "rsa:1" },
		"no objects": func(m *Manifest) { m.Objects = nil; m.Snapshots = nil },
		"config in a seed": func(m *Manifest) {
			m.Objects = append([]File{{Name: "config", Size: 1, SHA256: strings.Repeat("0", 64)}}, m.Objects...)
		},
		"unsorted":          func(m *Manifest) { m.Objects[0], m.Objects[1] = m.Objects[1], m.Objects[0] },
		"duplicate":         func(m *Manifest) { m.Objects = append(m.Objects, m.Objects[len(m.Objects)-1]) },
		"name not its hash": func(m *Manifest) { m.Objects[0].SHA256 = strings.Repeat("e", 64) },
		"negative size":     func(m *Manifest) { m.Objects[0].Size = -1 },
		"huge size":         func(m *Manifest) { m.Objects[0].Size = 1 << 40 },
		"path escape":       func(m *Manifest) { m.Objects[0].Name = "data/../../etc/passwd" },
		"snapshot not held": func(m *Manifest) { m.Snapshots = []string{strings.Repeat("9", 64)} },
		"share zero":        func(m *Manifest) { m.Parity.Share = 0 },
		"share too big":     func(m *Manifest) { m.Parity.Share = 0.9 },
		"no parity":         func(m *Manifest) { m.Parity.Files = nil },
		"parity misnamed":   func(m *Manifest) { m.Parity.Files[0].Name = "parity/../../x" },
		"parity sizes": func(m *Manifest) {
			m.Parity.Files = append(m.Parity.Files, File{Name: ParityName(1), Size: 65, SHA256: strings.Repeat("0", 64)})
		},
		"no creation time":   func(m *Manifest) { m.Created = time.Time{} },
		"long host":          func(m *Manifest) { m.Host = strings.Repeat("h", 300) },
		"repository id":      func(m *Manifest) { m.Repository = "short" },
		"parity sha not hex": func(m *Manifest) { m.Parity.Files[0].SHA256 = "nope" },
	} {
		m := testManifest(k)
		change(m)
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(b); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: Parse = %v, want ErrBadManifest", name, err)
		}
	}
	for name, b := range map[string]string{"empty": "", "not json": "{", "unknown field": `{"format":"coffer-seed/1","extra":1}`, "trailing": "{}{}"} {
		if _, err := Parse([]byte(b)); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: Parse = %v", name, err)
		}
	}
}

func FuzzManifest(f *testing.F) {
	k := testKey(f)
	good, _ := testManifest(k).Marshal()
	f.Add(good)
	f.Add([]byte(`{"format":"coffer-seed/1"}`))
	withLayout := testManifest(k)
	withLayout.Parity.Layout = json.RawMessage(`{"code":"rs-gf8","data_shards":4,"parity_shards":1,"shard_size":64}`)
	wl, _ := withLayout.Marshal()
	f.Add(wl)
	f.Add([]byte(`{"objects":[{"name":"data/00/` + strings.Repeat("0", 64) + `","size":1,"sha256":"` + strings.Repeat("0", 64) + `"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrBadManifest) {
				t.Fatalf("error not ErrBadManifest: %v", err)
			}
			return
		}
		// The layout is outside input too: decoding it never panics.
		if l, err := m.Layout(); err == nil && l.ParityShards != len(m.Parity.Files) {
			t.Fatal("a layout accepted with another parity count than the manifest's")
		}
		// What parses re-encodes to something that parses the same.
		again, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-encoded manifest does not parse: %v", err)
		}
		if len(m2.Objects) != len(m.Objects) || m2.ID != m.ID {
			t.Fatal("round trip changed the manifest")
		}
		for _, o := range m.Objects {
			if strings.Contains(o.Name, "..") || strings.HasPrefix(o.Name, "/") {
				t.Fatalf("accepted a path outside objects/: %q", o.Name)
			}
		}
	})
}

func TestCheckFindsDamage(t *testing.T) {
	k := testKey(t)
	m := testManifest(k)
	dir := t.TempDir()
	root := filepath.Join(dir, RootDir)
	bodies := map[string]string{}
	for _, c := range []string{"pack", "index", "snap", "receipt"} {
		bodies[sum([]byte(c))] = c
	}
	for _, o := range m.Objects {
		p := FilePath(root, o)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(bodies[o.SHA256]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	par := make([]byte, 64)
	m.Parity.Files[0].SHA256 = sum(par)
	if err := os.MkdirAll(filepath.Join(root, "parity"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(FilePath(root, m.Parity.Files[0]), par, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteManifest(root, m, k); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var seen int64
	d, err := s.Check(t.Context(), CheckOptions{Progress: func(n int64) { seen += n }})
	if err != nil || len(d) != 0 {
		t.Fatalf("intact seed: damage %v, err %v", d, err)
	}
	if want := m.Bytes() + 64; seen != want {
		t.Fatalf("progress saw %d bytes, want %d", seen, want)
	}
	// Delete one, truncate one, flip a byte in the parity file.
	os.Remove(FilePath(root, m.Objects[0]))
	os.Truncate(FilePath(root, m.Objects[1]), 2)
	par[10] ^= 1
	os.WriteFile(FilePath(root, m.Parity.Files[0]), par, 0o644)
	d, err = s.Check(t.Context(), CheckOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, x := range d {
		got[x.Name] = x.Problem
	}
	if len(d) != 3 || got[m.Objects[0].Name] != "missing" || !strings.HasPrefix(got[m.Objects[1].Name], "truncated") ||
		!strings.HasPrefix(got[ParityName(0)], "damaged") {
		t.Fatalf("damage %v", d)
	}
}
