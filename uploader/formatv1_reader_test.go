package uploader_test

// A reader of the frozen format-v1 repository written from FORMAT.md alone:
// it uses only the primitives the page names (argon2id, BLAKE3, XAES-256-GCM,
// SHA-256, XXH3-128, zstd), none of Coffer's decoders, and restores every
// snapshot to its expected image. It pins the intermediate values that
// FORMAT.md's "Test vectors" publishes, so a stranger's reader can be
// debugged step by step.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"
	"github.com/zeebo/blake3"
	"github.com/zeebo/xxh3"
	"golang.org/x/crypto/argon2"

	"github.com/cofferhq/coffer/crypto"
)

// The intermediate values of the frozen repository (FORMAT.md, "Test
// vectors"). They are test data: this repository's passphrase is public.
const (
	vecKEK   = "c968ad4a8a40f57841d8a0df35995510cf31f698b49acdb25febf96923af9dee"
	vecM     = "172f4761cb2ea7372d1db4268e750f36170b8ef3000edb9534ca990897bcd71e"
	vecKData = "8a790e3c468eda94e02eebe3df98449477b7e4ae85449a174d1ae7d7b4bc3582"
	vecKID   = "9b77c8e77fab01111771829e92462b98fab79a352b121b00354b0df50e4fe524"
	vecKCfg  = "10f0d991a2b0084a9a90f2e49f0d4ad38333afc488044b13792eb4cd559e6422"
	vecKPol  = "edb0b5506250f4a05a25ce3f3b6354119420ae731c51b0b87776a77830215fcd"
	vecPol   = "0x24024a376abae9"
)

// specReader reads a repository directory as FORMAT.md describes it.
type specReader struct {
	t          *testing.T
	dir        string
	kData, kID []byte
	blobs      map[[32]byte]specBlob
	zstd       *zstd.Decoder
	values     map[string]string // intermediate values, hex
}

type specBlob struct {
	pack                   string
	offset, length, rawLen uint32
	typ, flags             uint8
}

func (s *specReader) read(name string) []byte {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

// names lists the content-named objects under prefix and checks each name.
func (s *specReader) names(prefix string) []string {
	s.t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(s.dir, prefix), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(s.dir, path)
		sum := sha256.Sum256(s.read(rel))
		if !strings.HasSuffix(rel, hex.EncodeToString(sum[:])) {
			return fmt.Errorf("%s does not hash to its name", rel)
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// open is Seal's inverse: XAES-256-GCM with the 24-byte nonce in front.
func (s *specReader) open(key, sealed []byte, ad string) []byte {
	s.t.Helper()
	sl, err := crypto.NewSealer(key)
	if err != nil {
		s.t.Fatal(err)
	}
	pt, err := sl.Open(nil, sealed, []byte(ad), "object")
	if err != nil {
		s.t.Fatal(err)
	}
	return pt
}

func keyed(key, data []byte) []byte {
	h, _ := blake3.NewKeyed(key)
	_, _ = h.Write(data)
	return h.Sum(nil)
}

func derive(ctx string, m []byte) []byte {
	out := make([]byte, 32)
	blake3.DeriveKey(ctx, m, out)
	return out
}

// unlock opens the passphrase slot, derives the working keys and checks the
// config's MAC.
func (s *specReader) unlock(pass []byte) {
	s.t.Helper()
	var slot struct {
		Type string
		KDF  struct {
			Name      string
			Time      uint32
			MemoryKiB uint32 `json:"memory_kib"`
			Threads   uint8
			Salt      []byte
		}
		Sealed []byte
	}
	keys := s.names("keys")
	if len(keys) != 1 || json.Unmarshal(s.read(keys[0]), &slot) != nil || slot.Type != "passphrase" || slot.KDF.Name != "argon2id" {
		s.t.Fatalf("want one passphrase slot, have %v", keys)
	}
	k := slot.KDF
	kek := argon2.IDKey(pass, k.Salt, k.Time, k.MemoryKiB, k.Threads, 32)
	m := s.open(kek, slot.Sealed, "coffer key slot v1 passphrase")
	s.kData = derive("coffer 2026-11 data encryption key v1", m)
	s.kID = derive("coffer 2026-11 chunk id key v1", m)
	kCfg := derive("coffer 2026-11 config mac key v1", m)
	kPol := derive("coffer 2026-11 chunker polynomial v1", m)
	h, _ := blake3.NewKeyed(kPol)
	pol, err := chunker.DerivePolynomial(h.Digest())
	if err != nil {
		s.t.Fatal(err)
	}
	var cf struct {
		Config json.RawMessage
		MAC    string
	}
	if err := json.Unmarshal(s.read("config"), &cf); err != nil {
		s.t.Fatal(err)
	}
	if hex.EncodeToString(keyed(kCfg, cf.Config)) != cf.MAC {
		s.t.Fatal("config MAC does not verify")
	}
	var c struct {
		Version     int
		BlockSize   int `json:"block_size"`
		RegionSize  int `json:"region_size"`
		Compression string
	}
	if err := json.Unmarshal(cf.Config, &c); err != nil || c.Version != 1 || c.BlockSize != 65536 || c.RegionSize != 67108864 || c.Compression != "zstd" {
		s.t.Fatalf("config %s: %v", cf.Config, err)
	}
	s.values = map[string]string{"argon2id": hex.EncodeToString(kek), "M": hex.EncodeToString(m),
		"K_data": hex.EncodeToString(s.kData), "K_id": hex.EncodeToString(s.kID), "K_cfg": hex.EncodeToString(kCfg),
		"K_pol": hex.EncodeToString(kPol), "polynomial": fmt.Sprintf("%#x", uint64(pol))}
}

// loadIndex parses every index file into s.blobs.
func (s *specReader) loadIndex() {
	s.t.Helper()
	s.blobs = map[[32]byte]specBlob{}
	for _, name := range s.names("index") {
		b := s.open(s.kData, s.read(name), "coffer index v1")
		u32 := func() uint32 { v := binary.LittleEndian.Uint32(b); b = b[4:]; return v }
		if string(b[:4]) != "CIX1" {
			s.t.Fatalf("%s: bad magic", name)
		}
		b = b[4:]
		b = b[32*u32():] // superseded
		for np := u32(); np > 0; np-- {
			packID := hex.EncodeToString(b[:32])
			b = b[32:]
			for nb := u32(); nb > 0; nb-- {
				var id [32]byte
				copy(id[:], b)
				b = b[32:]
				e := specBlob{pack: "data/" + packID[:2] + "/" + packID, offset: u32(), length: u32(), rawLen: u32()}
				e.typ, e.flags, b = b[0], b[1], b[2:]
				s.blobs[id] = e
			}
		}
		if len(b) != 0 {
			s.t.Fatalf("%s: %d trailing bytes", name, len(b))
		}
	}
}

// checkPacks parses every pack's trailer and header and checks that the
// index files list exactly what the headers say.
func (s *specReader) checkPacks() {
	s.t.Helper()
	listed := map[[32]byte]bool{}
	for _, name := range s.names("data") {
		b := s.read(name)
		tr := b[len(b)-8:]
		hlen := int(binary.LittleEndian.Uint32(tr))
		if string(tr[4:]) != "CPK1" || hlen+8 > len(b) {
			s.t.Fatalf("%s: bad trailer", name)
		}
		h := s.open(s.kData, b[len(b)-8-hlen:len(b)-8], "coffer pack header v1")
		n := int(binary.LittleEndian.Uint32(h[4:]))
		if string(h[:4]) != "CPH1" || len(h) != 8+44*n || hlen != 8+44*n+40 {
			s.t.Fatalf("%s: bad header", name)
		}
		off := uint32(0)
		for i := 0; i < n; i++ {
			e := h[8+44*i : 8+44*(i+1)]
			id := [32]byte(e[12:44])
			want := specBlob{pack: name, offset: off, length: binary.LittleEndian.Uint32(e[4:]),
				rawLen: binary.LittleEndian.Uint32(e[8:]), typ: e[0], flags: e[1]}
			if e[2] != 0 || e[3] != 0 || s.blobs[id] != want {
				s.t.Fatalf("%s entry %d: %+v, the index says %+v", name, i, want, s.blobs[id])
			}
			off += want.length
			listed[id] = true
		}
		if int(off) != len(b)-8-hlen {
			s.t.Fatalf("%s: blobs end at %d, the header starts at %d", name, off, len(b)-8-hlen)
		}
	}
	if len(listed) != len(s.blobs) {
		s.t.Fatalf("the headers list %d blobs, the index %d", len(listed), len(s.blobs))
	}
}

// chunk reads, opens, decompresses and checks one chunk.
func (s *specReader) chunk(id []byte) []byte {
	s.t.Helper()
	e, ok := s.blobs[[32]byte(id)]
	if !ok {
		s.t.Fatalf("chunk %x is in no index file", id)
	}
	sealed := s.read(e.pack)[e.offset : e.offset+e.length]
	plain := s.open(s.kData, sealed, string(append([]byte{e.typ}, id...)))
	if e.flags&1 != 0 {
		var err error
		if plain, err = s.zstd.DecodeAll(plain, nil); err != nil {
			s.t.Fatal(err)
		}
	}
	if uint32(len(plain)) != e.rawLen || !bytes.Equal(keyed(s.kID, plain), id) {
		s.t.Fatalf("chunk %x: %d bytes (raw_length %d), or its keyed hash differs", id, len(plain), e.rawLen)
	}
	return plain
}

// disk rebuilds a disk's image from its map lists and region maps, and
// checks every block hash and the digest.
func (s *specReader) disk(size int64, digest string, lists []string) []byte {
	s.t.Helper()
	const bs, rs = 65536, 67108864
	img := make([]byte, size)
	var regionMaps [][]byte
	for _, l := range lists {
		id, _ := hex.DecodeString(l)
		b := s.chunk(id)
		n := binary.LittleEndian.Uint32(b[4:])
		if string(b[:4]) != "CRL1" || len(b) != 8+32*int(n) {
			s.t.Fatalf("map list %s malformed", l)
		}
		for i := 0; i < int(n); i++ {
			regionMaps = append(regionMaps, b[8+32*i:8+32*(i+1)])
		}
	}
	d := blake3.New()
	d.WriteString("coffer disk digest v1")
	_ = binary.Write(d, binary.LittleEndian, uint64(size))
	_ = binary.Write(d, binary.LittleEndian, uint32(bs))
	for ri, mid := range regionMaps {
		base := int64(ri) * rs
		m := s.chunk(mid)
		ne, nb := binary.LittleEndian.Uint32(m[4:]), binary.LittleEndian.Uint32(m[8:])
		ext, hashes := m[12:12+40*ne], m[12+40*ne:]
		for e := 0; e < int(ne); e++ {
			x := ext[40*e:]
			off, n := binary.LittleEndian.Uint32(x), binary.LittleEndian.Uint32(x[4:])
			c := s.chunk(x[8:40])
			if uint32(len(c)) != n {
				s.t.Fatalf("extent of %d bytes, chunk of %d", n, len(c))
			}
			copy(img[base+int64(off):], c)
		}
		rh := blake3.New()
		for b := int64(0); b < int64(nb); b++ {
			blk := img[base+b*bs : min(base+(b+1)*bs, size)]
			if h := xxh3.Hash128(blk).Bytes(); !bytes.Equal(h[:], hashes[16*b:16*b+16]) {
				s.t.Fatalf("region %d block %d hash differs", ri, b)
			}
			rh.Write(hashes[16*b : 16*b+16])
		}
		d.Write(rh.Sum(nil))
	}
	if got := hex.EncodeToString(d.Sum(nil)); got != digest {
		s.t.Fatalf("digest %s, recorded %s", got, digest)
	}
	return img
}

// TestFormatV1SpecReader restores every snapshot of the frozen repository
// with the reader above and compares the images; it also pins the
// intermediate values FORMAT.md publishes.
func TestFormatV1SpecReader(t *testing.T) {
	set, _, _ := loadVectors(t)
	pass, err := os.ReadFile(filepath.Join(vectorsDir, set.Passphrase))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	s := &specReader{t: t, dir: filepath.Join(vectorsDir, set.Repository), zstd: dec}
	s.unlock(pass)
	want := map[string]string{"argon2id": vecKEK, "M": vecM, "K_data": vecKData, "K_id": vecKID, "K_cfg": vecKCfg, "K_pol": vecKPol, "polynomial": vecPol}
	for k, v := range want {
		if s.values[k] != v {
			t.Errorf("%s = %s, want %s", k, s.values[k], v)
		}
	}
	s.loadIndex()
	s.checkPacks()
	snaps := map[string]bool{}
	for _, name := range s.names("snapshots") {
		snaps[strings.TrimPrefix(name, "snapshots/")] = true
	}
	for _, vs := range set.Snapshots {
		if !snaps[vs.ID] {
			t.Fatalf("no snapshot %s", vs.ID)
		}
		var doc struct {
			Version int
			Name    string
			Disks   []struct {
				Size   int64
				Digest string
				Lists  []string
			}
		}
		if err := json.Unmarshal(s.open(s.kData, s.read("snapshots/"+vs.ID), "coffer snapshot v1"), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Version != 1 || doc.Name != vs.Name || len(doc.Disks) != len(vs.Disks) {
			t.Fatalf("snapshot %s: %+v", vs.ID, doc)
		}
		for i, d := range doc.Disks {
			if got := s.disk(d.Size, d.Digest, d.Lists); !bytes.Equal(got, expectedImage(t, vs.Disks[i])) {
				t.Fatalf("snapshot %s disk %d differs from its expected image", vs.ID, i)
			}
		}
	}
}
