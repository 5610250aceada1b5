package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/index"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/store"
)

func init() { os.Setenv("COFFER_INSECURE_TEST_KDF", "1") }

var ctx = context.Background()

const pass = "correct horse battery staple"

func newStore(t *testing.T) (*store.Local, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenLocal(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return st, dir
}

func initRepo(t *testing.T) (*Repo, *store.Local, string) {
	t.Helper()
	st, dir := newStore(t)
	r, err := Init(ctx, st, []byte(pass), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return r, st, dir
}

// flipByte changes one byte of a stored object in place.
func flipByte(t *testing.T, dir, name string, i int, mask byte) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if i < 0 {
		i += len(b)
	}
	b[i] ^= mask
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func slotNames(t *testing.T, st store.Store) []string {
	t.Helper()
	slots, err := ListSlots(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range slots {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return names
}

func TestInitOpen(t *testing.T) {
	r, st, _ := initRepo(t)
	cfg := r.Config()
	if len(cfg.ID) != 32 || cfg.Created.IsZero() || cfg.Version != FormatVersion {
		t.Fatalf("config %+v", cfg)
	}
	names := slotNames(t, st)
	if len(names) != 1 || !strings.HasPrefix(names[0], KeysPrefix) {
		t.Fatalf("slots after Init: %v", names)
	}
	// The slot Init made is the one the agent remembers and tries first.
	if r.OpenedSlot() != names[0] {
		t.Fatalf("OpenedSlot after Init = %q, want %s", r.OpenedSlot(), names[0])
	}

	o, err := Open(ctx, st, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	if o.OpenedSlot() != names[0] {
		t.Fatalf("OpenedSlot = %q, want %q", o.OpenedSlot(), names[0])
	}
	if !o.Keys().Master().Equal(r.Keys().Master()) {
		t.Fatal("Open found another master key")
	}
	if o.Polynomial() != r.Polynomial() || !o.Polynomial().Irreducible() {
		t.Fatal("polynomial differs after Open")
	}
	oc := o.Config()
	if oc.ID != cfg.ID || !oc.Created.Equal(cfg.Created) || oc.Chunker != cfg.Chunker || oc.PackSize != cfg.PackSize {
		t.Fatalf("config after Open %+v, want %+v", oc, cfg)
	}
	if o.Store() != store.Store(st) {
		t.Fatal("Store()")
	}

	for _, wrong := range []string{"", "correct horse battery stapl", pass + "!", strings.ToUpper(pass)} {
		if _, err := Open(ctx, st, []byte(wrong)); !errors.Is(err, crypto.ErrWrongPassphrase) {
			t.Errorf("passphrase %q: err = %v, want ErrWrongPassphrase", wrong, err)
		}
	}
}

func TestInitTwice(t *testing.T) {
	_, st, _ := initRepo(t)
	before := slotNames(t, st)
	if _, err := Init(ctx, st, []byte("other"), DefaultConfig()); !errors.Is(err, ErrExists) {
		t.Fatalf("second Init: err = %v, want ErrExists", err)
	}
	if after := slotNames(t, st); !slices.Equal(before, after) {
		t.Fatalf("second Init changed the key slots: %v -> %v", before, after)
	}
	if _, err := Open(ctx, st, []byte(pass)); err != nil {
		t.Fatalf("Open after a refused Init: %v", err)
	}
}

func TestInitRejectsBadConfig(t *testing.T) {
	st, _ := newStore(t)
	cfg := DefaultConfig()
	cfg.PackSize = 1
	if _, err := Init(ctx, st, []byte(pass), cfg); err == nil {
		t.Fatal("Init accepted a 1-byte pack size")
	}
	if _, err := Init(ctx, st, nil, DefaultConfig()); err == nil {
		t.Fatal("Init accepted an empty passphrase")
	}
	if _, _, _, err := ReadConfig(ctx, st); !errors.Is(err, ErrNoRepository) {
		t.Fatalf("a refused Init left a config: %v", err)
	}
}

func TestOpenEmpty(t *testing.T) {
	st, _ := newStore(t)
	if _, err := Open(ctx, st, []byte(pass)); !errors.Is(err, ErrNoRepository) {
		t.Fatalf("Open on an empty directory: err = %v, want ErrNoRepository", err)
	}
}

func TestOpenNoSlots(t *testing.T) {
	r, st, _ := initRepo(t)
	for _, n := range slotNames(t, st) {
		if err := st.Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	_ = r
	_, err := Open(ctx, st, []byte(pass))
	if err == nil || errors.Is(err, crypto.ErrWrongPassphrase) || !strings.Contains(err.Error(), "no key slots") {
		t.Fatalf("Open without slots: %v", err)
	}
}

// TestConfigFlipDetected flips every byte of the config object in turn:
// Open must fail every time.
func TestConfigFlipDetected(t *testing.T) {
	_, _, dir := initRepo(t)
	raw, err := os.ReadFile(filepath.Join(dir, ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		for _, mask := range []byte{0x01, 0x80} {
			flipByte(t, dir, ConfigName, i, mask)
			st, err := store.OpenLocal(dir, false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Open(ctx, st, []byte(pass)); err == nil {
				t.Fatalf("config byte %d (%q) ^ %#x: Open succeeded", i, raw[i], mask)
			}
			flipByte(t, dir, ConfigName, i, mask)
		}
	}
	st, _ := store.OpenLocal(dir, false)
	if _, err := Open(ctx, st, []byte(pass)); err != nil {
		t.Fatalf("restored config: %v", err)
	}
}

// TestConfigBodyForged: a config rewritten to valid, different parameters
// (same MAC) fails authentication.
func TestConfigBodyForged(t *testing.T) {
	_, st, dir := initRepo(t)
	raw, err := os.ReadFile(filepath.Join(dir, ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	var cf configFile
	if err := json.Unmarshal(raw, &cf); err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := json.Unmarshal(cf.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.PackSize = 32 << 20
	cf.Config, _ = json.Marshal(cfg)
	forged, _ := json.Marshal(cf)
	if err := os.WriteFile(filepath.Join(dir, ConfigName), forged, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, st, []byte(pass))
	if err == nil || !strings.Contains(err.Error(), "authentication") {
		t.Fatalf("forged config: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.ID = strings.Repeat("a", 32)
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(c *Config){
		"version":      func(c *Config) { c.Version = 2 },
		"id":           func(c *Config) { c.ID = "abc" },
		"chunk min":    func(c *Config) { c.Chunker.Min = 1024 },
		"chunk max":    func(c *Config) { c.Chunker.Max = 16 << 20 },
		"min >= max":   func(c *Config) { c.Chunker.Min = c.Chunker.Max },
		"avg bits low": func(c *Config) { c.Chunker.AvgBits = 11 },
		"avg bits":     func(c *Config) { c.Chunker.AvgBits = 24 },
		"block size":   func(c *Config) { c.BlockSize = 4096 },
		"region size":  func(c *Config) { c.RegionSize = 1 << 20 },
		"pack small":   func(c *Config) { c.PackSize = 1<<20 - 1 },
		"pack large":   func(c *Config) { c.PackSize = 256<<20 + 1 },
		"compression":  func(c *Config) { c.Compress = "gzip" },
	}
	for name, edit := range bad {
		c := good
		edit(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, c)
		}
	}
}

func TestDamagedSlot(t *testing.T) {
	r, st, dir := initRepo(t)
	first := slotNames(t, st)[0]
	second, err := r.AddPassphraseSlot(ctx, []byte("second passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, dir, first, 20, 0x01)

	slots, err := ListSlots(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var damaged, good int
	for _, s := range slots {
		switch s.Name {
		case first:
			if s.Err == nil || s.Slot != nil || !strings.Contains(s.Err.Error(), first) {
				t.Errorf("damaged slot listed as %+v", s)
			}
			damaged++
		case second:
			if s.Err != nil || s.Slot == nil {
				t.Errorf("intact slot listed with %v", s.Err)
			}
			good++
		}
	}
	if damaged != 1 || good != 1 {
		t.Fatalf("ListSlots: %d damaged, %d good", damaged, good)
	}

	o, err := Open(ctx, st, []byte("second passphrase"))
	if err != nil {
		t.Fatalf("the intact slot no longer opens: %v", err)
	}
	if o.OpenedSlot() != second {
		t.Fatalf("opened with %s, want %s", o.OpenedSlot(), second)
	}
	_, err = Open(ctx, st, []byte(pass))
	if !errors.Is(err, crypto.ErrWrongPassphrase) || !strings.Contains(err.Error(), first) {
		t.Fatalf("passphrase of the damaged slot: err = %v; want ErrWrongPassphrase naming %s", err, first)
	}
	// The damaged slot cannot count as the one left after a removal.
	if err := o.RemoveSlot(ctx, second); err == nil {
		t.Fatal("removed the last usable slot while the other is damaged")
	}
	if err := o.RemoveSlot(ctx, first); err != nil {
		t.Fatalf("removing the damaged slot: %v", err)
	}
}

// TestSlotValidJSONWrongName: a slot that is intact JSON but stored under
// another name is reported, not used.
func TestSlotValidJSONWrongName(t *testing.T) {
	_, st, dir := initRepo(t)
	first := slotNames(t, st)[0]
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(first)))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["note"] = "edited"
	b2, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(first)), b2, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, st, []byte(pass))
	if !errors.Is(err, crypto.ErrWrongPassphrase) || !strings.Contains(err.Error(), "does not match its name") {
		t.Fatalf("renamed slot: %v", err)
	}
}

func TestAddRemoveSlots(t *testing.T) {
	r, st, _ := initRepo(t)
	first := slotNames(t, st)[0]
	if err := r.RemoveSlot(ctx, first); err == nil {
		t.Fatal("removed the only slot")
	}
	if _, err := Open(ctx, st, []byte(pass)); err != nil {
		t.Fatalf("the only slot is gone after a refused removal: %v", err)
	}
	second, err := r.AddPassphraseSlot(ctx, []byte("two"))
	if err != nil {
		t.Fatal(err)
	}
	if second == first || !strings.HasPrefix(second, KeysPrefix) {
		t.Fatalf("new slot %q", second)
	}
	if _, err := r.AddPassphraseSlot(ctx, nil); err == nil {
		t.Fatal("added a slot with an empty passphrase")
	}
	for _, p := range []string{pass, "two"} {
		o, err := Open(ctx, st, []byte(p))
		if err != nil {
			t.Fatalf("%q: %v", p, err)
		}
		if !o.Keys().Master().Equal(r.Keys().Master()) {
			t.Fatalf("%q opens another master key", p)
		}
	}
	if err := r.RemoveSlot(ctx, KeysPrefix+strings.Repeat("0", 64)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removing a missing slot: %v", err)
	}
	if err := r.RemoveSlot(ctx, first); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, st, []byte(pass)); !errors.Is(err, crypto.ErrWrongPassphrase) {
		t.Fatalf("removed slot still opens: %v", err)
	}
	o, err := Open(ctx, st, []byte("two"))
	if err != nil || o.OpenedSlot() != second {
		t.Fatalf("remaining slot: %v", err)
	}
	if err := o.RemoveSlot(ctx, second); err == nil {
		t.Fatal("removed the last slot")
	}
	if names := slotNames(t, st); !slices.Equal(names, []string{second}) {
		t.Fatalf("slots %v, want [%s]", names, second)
	}
}

// blob is a chunk to store in a test pack.
type blob struct {
	typ, flags uint8
	plain      []byte
}

// writePack seals blobs into a pack, stores it, and returns its ID, size
// and entries. It does not index it.
func writePack(t *testing.T, r *Repo, blobs []blob) (pack.ID, int64, []pack.Entry) {
	t.Helper()
	h := r.Keys().NewIDHasher()
	b := pack.NewBuilder(nil)
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, bl := range blobs {
		id := h.Sum(bl.plain)
		payload := bl.plain
		if bl.flags&pack.FlagZstd != 0 {
			payload = enc.EncodeAll(bl.plain, nil)
		}
		b.Add(bl.typ, bl.flags, id, len(bl.plain), r.Keys().Data().Seal(nil, payload, pack.BlobAD(bl.typ, id)))
	}
	buf, entries := b.Finish(r.Keys().Data())
	id := pack.Sum(buf)
	if err := r.SavePack(ctx, id, buf); err != nil {
		t.Fatal(err)
	}
	if err := r.SavePack(ctx, id, buf); err != nil {
		t.Fatalf("saving a pack twice: %v", err)
	}
	return id, int64(len(buf)), entries
}

func someBlobs(n, size int) []blob {
	var out []blob
	for i := 0; i < n; i++ {
		p := bytes.Repeat([]byte{byte(i), byte(i >> 8), 'x'}, size/3+i)
		out = append(out, blob{typ: uint8(i % 2), flags: uint8(i/2%2) * pack.FlagZstd, plain: p})
	}
	return out
}

func TestPackHeaderAndBlobs(t *testing.T) {
	r, _, dir := initRepo(t)
	// A small pack (header in the last 64 KiB) and one whose header is
	// larger than 64 KiB, read with a second request.
	for _, n := range []int{3, 1600} {
		blobs := someBlobs(n, 30+n) // distinct from the other pack's
		id, size, entries := writePack(t, r, blobs)
		got, err := r.ReadPackHeader(ctx, id, size)
		if err != nil {
			t.Fatalf("%d blobs: %v", n, err)
		}
		if !slices.Equal(got, entries) {
			t.Fatalf("%d blobs: header differs from what was written", n)
		}
		if _, err := r.ReadPackHeader(ctx, id, size-1); err == nil {
			t.Fatalf("%d blobs: header read with the wrong size", n)
		}
		r.Index.AddPack(id, entries)
		h := r.Keys().NewIDHasher()
		for i, e := range entries {
			plain, err := r.LoadBlob(ctx, e.ID)
			if err != nil {
				t.Fatalf("blob %d: %v", i, err)
			}
			if !bytes.Equal(plain, blobs[i].plain) {
				t.Fatalf("blob %d differs", i)
			}
			if e.RawLength != uint32(len(plain)) {
				t.Fatalf("blob %d raw length %d", i, e.RawLength)
			}
			if i < 4 {
				sealed := mustRead(t, r, id, e)
				if _, err := r.OpenBlob(h, e.Type, e.Flags, h.Sum([]byte("other")), sealed, nil, "b"); !errors.Is(err, crypto.ErrAuth) {
					t.Fatalf("blob %d opened under another ID: %v", i, err)
				}
				if _, err := r.OpenBlob(h, 1-e.Type, e.Flags, e.ID, sealed, nil, "b"); !errors.Is(err, crypto.ErrAuth) {
					t.Fatalf("blob %d opened as the other type: %v", i, err)
				}
				if _, err := r.OpenBlob(h, e.Type, e.Flags^pack.FlagZstd, e.ID, sealed, nil, "b"); err == nil {
					t.Fatalf("blob %d opened with the wrong compression flag", i)
				}
			}
		}
		if n == 3 {
			// Damage the header: ReadPackHeader fails authentication.
			flipByte(t, dir, PackName(id), -pack.TrailerSize-5, 0x10)
			if _, err := r.ReadPackHeader(ctx, id, size); !errors.Is(err, crypto.ErrAuth) {
				t.Fatalf("damaged header: %v", err)
			}
			// Damage a blob: LoadBlob fails authentication.
			flipByte(t, dir, PackName(id), int(entries[0].Offset)+30, 0x10)
			if _, err := r.LoadBlob(ctx, entries[0].ID); !errors.Is(err, crypto.ErrAuth) {
				t.Fatalf("damaged blob: %v", err)
			}
		}
	}
	if _, err := r.LoadBlob(ctx, crypto.ID{1}); err == nil {
		t.Fatal("loaded a blob that is not indexed")
	}
	if _, err := r.ReadPackHeader(ctx, pack.ID{1}, 7); !errors.Is(err, pack.ErrFormat) {
		t.Fatalf("7-byte pack: %v", err)
	}
}

// TestOpenBlobWrongHash: a blob that authenticates but whose plaintext does
// not hash to its ID (sealed by someone holding the data key under a false
// ID) is rejected.
func TestOpenBlobWrongHash(t *testing.T) {
	r, _, _ := initRepo(t)
	h := r.Keys().NewIDHasher()
	claimed := h.Sum([]byte("claimed"))
	sealed := r.Keys().Data().Seal(nil, []byte("actual"), pack.BlobAD(pack.TypeData, claimed))
	if _, err := r.OpenBlob(h, pack.TypeData, 0, claimed, sealed, nil, "b"); !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	bomb := r.Keys().Data().Seal(nil, []byte("not zstd"), pack.BlobAD(pack.TypeData, claimed))
	if _, err := r.OpenBlob(h, pack.TypeData, pack.FlagZstd, claimed, bomb, nil, "b"); !errors.Is(err, pack.ErrFormat) {
		t.Fatalf("bad zstd: err = %v, want pack.ErrFormat", err)
	}
}

func mustRead(t *testing.T, r *Repo, id pack.ID, e pack.Entry) []byte {
	t.Helper()
	b, err := store.ReadRange(ctx, r.Store(), PackName(id), int64(e.Offset), int64(e.Length))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPackNames(t *testing.T) {
	id := pack.Sum([]byte("x"))
	name := PackName(id)
	if !strings.HasPrefix(name, DataPrefix+id.String()[:2]+"/") {
		t.Fatalf("PackName = %q", name)
	}
	got, err := ParsePackName(name)
	if err != nil || got != id {
		t.Fatalf("ParsePackName(%q) = %v, %v", name, got, err)
	}
	s := id.String()
	for _, bad := range []string{"", s, "data/" + s, "data/zz/" + s, "index/" + s[:2] + "/" + s, "data/" + s[:2] + "/" + s[:63], "data/" + s[:2] + "x" + s, "data/" + s[:2] + "/" + s[:63] + "g"} {
		if _, err := ParsePackName(bad); err == nil {
			t.Errorf("ParsePackName(%q) succeeded", bad)
		}
	}
}

func TestIndexFilesAndOrphans(t *testing.T) {
	r, st, dir := initRepo(t)
	// An indexed pack.
	id1, _, e1 := writePack(t, r, someBlobs(3, 100))
	if _, err := r.SaveIndexFile(ctx, &index.File{Packs: []index.PackBlobs{{Pack: id1, Blobs: e1}}}); err != nil {
		t.Fatal(err)
	}
	// A pack written without an index, as an interrupted backup leaves it.
	orphanBlobs := someBlobs(5, 200)[2:]
	id2, _, e2 := writePack(t, r, orphanBlobs)
	// A damaged orphan and a stray object in data/.
	id3, _, _ := writePack(t, r, someBlobs(2, 50))
	flipByte(t, dir, PackName(id3), -pack.TrailerSize-3, 1)
	if err := st.Put(ctx, DataPrefix+"stray", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}

	o, err := Open(ctx, st, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	if err := o.LoadIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, e := range e1 {
		if !o.Index.Has(e.ID) {
			t.Fatal("indexed blob missing after LoadIndex")
		}
	}
	for _, e := range e2 {
		if o.Index.Has(e.ID) {
			t.Fatal("orphan blob indexed before IndexOrphanPacks")
		}
	}
	// Without save, the orphan is indexed in memory only.
	dry, err := Open(ctx, st, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	if err := dry.LoadIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := dry.IndexOrphanPacks(ctx, false); err != nil || n != 1 || !dry.Index.Has(e2[0].ID) {
		t.Fatalf("IndexOrphanPacks without save: %d, %v", n, err)
	}
	if files, err := dry.ReadIndexFiles(ctx, nil); err != nil || len(files) != 1 {
		t.Fatalf("IndexOrphanPacks without save wrote an index file: %d files, %v", len(files), err)
	}

	n, err := o.IndexOrphanPacks(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("recovered %d packs, want 1 (the damaged one skipped)", n)
	}
	for i, e := range e2 {
		loc, ok := o.Index.Lookup(e.ID)
		if !ok || loc.Pack != id2 || loc.Offset != e.Offset || loc.Length != e.Length {
			t.Fatalf("orphan blob %d: %+v %v", i, loc, ok)
		}
		plain, err := o.LoadBlob(ctx, e.ID)
		if err != nil || !bytes.Equal(plain, orphanBlobs[i].plain) {
			t.Fatalf("orphan blob %d: %v", i, err)
		}
	}
	if o.Index.HasPack(id3) {
		t.Fatal("the damaged orphan was indexed")
	}

	// The recovery wrote an index file: a fresh open finds the blobs and no
	// orphan but the damaged one.
	o2, err := Open(ctx, st, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	files, err := o2.ReadIndexFiles(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("%d index files, want 2", len(files))
	}
	if err := o2.LoadIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, e := range append(e1, e2...) {
		if !o2.Index.Has(e.ID) {
			t.Fatal("blob missing after reopening")
		}
	}
	if n, err := o2.IndexOrphanPacks(ctx, true); err != nil || n != 0 {
		t.Fatalf("second recovery: %d, %v", n, err)
	}

	// A damaged index file: LoadIndex fails, ReadIndexFiles with onErr
	// reports it by name and returns the others.
	var damaged string
	for _, f := range files {
		if f.File.Packs[0].Pack == id1 {
			damaged = f.Name
		}
	}
	flipByte(t, dir, damaged, 40, 1)
	o3, err := Open(ctx, st, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	if err := o3.LoadIndex(ctx, nil); err == nil {
		t.Fatal("LoadIndex accepted a damaged index file")
	}
	var reported []string
	kept, err := o3.ReadIndexFiles(ctx, func(name string, err error) { reported = append(reported, name) })
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || !slices.Equal(reported, []string{damaged}) {
		t.Fatalf("kept %d, reported %v; want 1 and [%s]", len(kept), reported, damaged)
	}
	// LoadIndex with warn skips it; IndexOrphanPacks finds its pack again.
	o4, err := Open(ctx, st, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	reported = nil
	if err := o4.LoadIndex(ctx, func(name string, err error) { reported = append(reported, name) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(reported, []string{damaged}) || o4.Index.Has(e1[0].ID) || !o4.Index.Has(e2[0].ID) || o4.IndexSkipped() != 1 {
		t.Fatalf("LoadIndex with warn: reported %v, IndexSkipped %d", reported, o4.IndexSkipped())
	}
	if n, err := o4.IndexOrphanPacks(ctx, false); err != nil || n != 1 {
		t.Fatalf("recovering the damaged index's pack: %d, %v", n, err)
	}
	for i, e := range e1 {
		if loc, ok := o4.Index.Lookup(e.ID); !ok || loc.Pack != id1 {
			t.Fatalf("blob %d of the damaged index's pack: %+v %v", i, loc, ok)
		}
	}

	// Locate does the same on its own, listing the packs once: on the
	// first blob it cannot find, not before and not again.
	lst := &listCounter{Store: st}
	o5, err := Open(ctx, lst, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	if err := o5.LoadIndex(ctx, func(string, error) {}); err != nil {
		t.Fatal(err)
	}
	lists := lst.lists.Load()
	if loc, err := o5.Locate(ctx, e2[0].ID); err != nil || loc.Pack == id1 || lst.lists.Load() != lists {
		t.Fatalf("Locate of an indexed blob: %+v, %v, %d lists", loc, err, lst.lists.Load()-lists)
	}
	if loc, err := o5.Locate(ctx, e1[1].ID); err != nil || loc.Pack != id1 || lst.lists.Load() != lists+1 {
		t.Fatalf("Locate of a blob in the damaged index's pack: %+v, %v, %d lists", loc, err, lst.lists.Load()-lists)
	}
	if _, err := o5.Locate(ctx, crypto.ID{7}); err == nil || !strings.Contains(err.Error(), "not in the index") || lst.lists.Load() != lists+1 {
		t.Fatalf("Locate of a blob stored nowhere: %v, %d lists", err, lst.lists.Load()-lists)
	}
}

// listCounter counts a store's List calls.
type listCounter struct {
	store.Store
	lists atomic.Int32
}

func (l *listCounter) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	l.lists.Add(1)
	return l.Store.List(ctx, prefix, fn)
}

// TestSealedObjects: LoadSealed checks the content name and the AD.
func TestSealedObjects(t *testing.T) {
	r, st, dir := initRepo(t)
	name, err := r.SaveSealed(ctx, SnapshotsPrefix, []byte("doc"), []byte("ad1"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.LoadSealed(ctx, name, SnapshotsPrefix, []byte("ad1"))
	if err != nil || string(got) != "doc" {
		t.Fatalf("LoadSealed = %q, %v", got, err)
	}
	if _, err := r.LoadSealed(ctx, name, SnapshotsPrefix, []byte("ad2")); !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("wrong AD: %v", err)
	}
	if _, err := r.LoadSealed(ctx, name, IndexPrefix, []byte("ad1")); err == nil {
		t.Fatal("loaded under the wrong prefix")
	}
	// Another object's bytes under this name fail the name check.
	other, err := r.SaveSealed(ctx, SnapshotsPrefix, []byte("doc2"), []byte("ad1"))
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := store.ReadAll(ctx, st, other)
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), ob, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadSealed(ctx, name, SnapshotsPrefix, []byte("ad1")); err == nil || !strings.Contains(err.Error(), "does not match its name") {
		t.Fatalf("swapped object: %v", err)
	}
	if _, err := r.LoadSealed(ctx, SnapshotsPrefix+strings.Repeat("0", 64), SnapshotsPrefix, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing object: %v", err)
	}
}

func testSnapshot(name string, at time.Time) *manifest.Snapshot {
	return &manifest.Snapshot{
		Version: manifest.SnapshotVersion, Time: at, Host: "h", Name: name,
		Source: manifest.Source{Kind: "image"},
		Disks: []manifest.Disk{{
			Index: 0, Name: "d", Size: 0, BlockSize: manifest.BlockSize, RegionSize: manifest.RegionSize,
			Digest: manifest.DiskDigest(0, nil).String(), Lists: []string{},
		}},
	}
}

func TestFindSnapshot(t *testing.T) {
	r, _, _ := initRepo(t)
	if _, err := r.FindSnapshot(ctx, "latest", ""); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("latest of none: %v", err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := map[string]string{}
	// Saved out of time order: "latest" goes by time, not by ID or order.
	for _, s := range []struct {
		name string
		hour int
	}{{"b", 3}, {"a", 1}, {"a", 2}, {"b", 0}} {
		id, err := r.SaveSnapshot(ctx, testSnapshot(s.name, t0.Add(time.Duration(s.hour)*time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		ids[s.name+string(rune('0'+s.hour))] = id
		if len(id) != 64 {
			t.Fatalf("snapshot ID %q", id)
		}
	}
	check := func(ref, name, wantKey string) {
		t.Helper()
		s, err := r.FindSnapshot(ctx, ref, name)
		if err != nil {
			t.Fatalf("FindSnapshot(%q, %q): %v", ref, name, err)
		}
		if s.ID != ids[wantKey] {
			t.Fatalf("FindSnapshot(%q, %q) = %s, want %s", ref, name, s.ID, wantKey)
		}
	}
	check("latest", "", "b3")
	check("latest", "a", "a2")
	check("latest", "b", "b3")
	for key, id := range ids {
		check(id, "", key)
		check(strings.ToUpper(id), "", key)
	}
	if _, err := r.FindSnapshot(ctx, "latest", "c"); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("latest of a missing name: %v", err)
	}
	// A unique prefix of 4+ characters.
	for key, id := range ids {
		unique := true
		for k2, id2 := range ids {
			if k2 != key && strings.HasPrefix(id2, id[:6]) {
				unique = false
			}
		}
		if unique {
			check(id[:6], "", key)
		}
	}
	for _, bad := range []string{"", "abc", "xyz1", "latestx", strings.Repeat("a", 65)} {
		if _, err := r.FindSnapshot(ctx, bad, ""); err == nil {
			t.Errorf("FindSnapshot(%q) succeeded", bad)
		}
	}
	if _, err := r.FindSnapshot(ctx, notAPrefix(ids), ""); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("unknown prefix: %v", err)
	}
	all, err := r.Snapshots(ctx, nil)
	if err != nil || len(all) != 4 {
		t.Fatalf("Snapshots: %d, %v", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Time.Before(all[i-1].Time) {
			t.Fatal("Snapshots not oldest first")
		}
	}
}

// notAPrefix returns 4 hex characters no ID starts with.
func notAPrefix(ids map[string]string) string {
	for _, p := range []string{"0000", "1111", "2222", "3333", "4444", "5555"} {
		ok := true
		for _, id := range ids {
			if strings.HasPrefix(id, p) {
				ok = false
			}
		}
		if ok {
			return p
		}
	}
	panic("unlucky IDs")
}

func TestFindSnapshotAmbiguousAndDamaged(t *testing.T) {
	r, _, dir := initRepo(t)
	var ids []string
	for i := 0; i < 5; i++ {
		id, err := r.SaveSnapshot(ctx, testSnapshot("s", time.Unix(int64(i), 0).UTC()))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := r.FindSnapshot(ctx, ids[0][:3], ""); err == nil {
		t.Fatal("a 3-character prefix was accepted")
	}
	// Two objects whose names share a prefix: the prefix is ambiguous
	// (decided from the names alone, before anything is read).
	for _, suffix := range []string{"1", "2"} {
		name := SnapshotsPrefix + "abcdef" + strings.Repeat("0", 57) + suffix
		if err := r.Store().Put(ctx, name, bytes.NewReader([]byte("x")), 1); err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.FindSnapshot(ctx, "abcd", "")
	if err == nil || errors.Is(err, ErrSnapshotNotFound) || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	for _, suffix := range []string{"1", "2"} {
		if err := r.Store().Delete(ctx, SnapshotsPrefix+"abcdef"+strings.Repeat("0", 57)+suffix); err != nil {
			t.Fatal(err)
		}
	}
	// A damaged snapshot: Snapshots with onErr skips and reports it;
	// without, it fails; FindSnapshot by ID fails.
	flipByte(t, dir, SnapshotsPrefix+ids[3], 30, 1)
	var reported []string
	all, err := r.Snapshots(ctx, func(id string, err error) { reported = append(reported, id) })
	if err != nil || len(all) != 4 || !slices.Equal(reported, []string{ids[3]}) {
		t.Fatalf("Snapshots with one damaged: %d kept, reported %v, %v", len(all), reported, err)
	}
	if _, err := r.Snapshots(ctx, nil); err == nil {
		t.Fatal("Snapshots without onErr ignored a damaged snapshot")
	}
	if _, err := r.FindSnapshot(ctx, ids[3], ""); err == nil {
		t.Fatal("loaded a damaged snapshot")
	}
	if _, err := r.FindSnapshot(ctx, ids[4], ""); err != nil {
		t.Fatalf("an intact snapshot: %v", err)
	}
}

// TestIndexOrphanPacksSplitsFiles: the index file for recovered packs holds
// at most PacksPerIndexFile packs, like a backup's (FORMAT.md, "Index
// files"), so recovering many packs never writes a file a vault refuses.
func TestIndexOrphanPacksSplitsFiles(t *testing.T) {
	r, st, _ := initRepo(t)
	const n = 2*PacksPerIndexFile + 6
	all := someBlobs(n, 30)
	for i := range all {
		writePack(t, r, all[i:i+1])
	}
	o, err := Open(ctx, st, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := o.IndexOrphanPacks(ctx, true); err != nil || got != n {
		t.Fatalf("recovered %d packs (%v), want %d", got, err, n)
	}
	files, err := o.ReadIndexFiles(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, f := range files {
		if len(f.File.Packs) > PacksPerIndexFile {
			t.Errorf("%s lists %d packs, more than %d", f.Name, len(f.File.Packs), PacksPerIndexFile)
		}
		total += len(f.File.Packs)
	}
	if len(files) != 3 || total != n {
		t.Fatalf("%d index files listing %d packs, want 3 listing %d", len(files), total, n)
	}
}
