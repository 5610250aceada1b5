package manifest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cofferhq/coffer/crypto"
)

// FuzzDecodeRegionMap fuzzes the bytes and the region length. An accepted
// map must satisfy every documented check and re-encode to the same bytes.
func FuzzDecodeRegionMap(f *testing.F) {
	f.Add(sampleMap(3*BlockSize+5).Encode(), int64(3*BlockSize+5))
	f.Add(sampleMap(RegionSize).Encode(), int64(RegionSize))
	f.Add((&RegionMap{Blocks: make([]BlockSum, 1)}).Encode(), int64(1))
	f.Add((&RegionMap{}).Encode(), int64(0))
	f.Add((&RegionMap{Extents: []Extent{{0, 1, idOf(0)}}}).Encode(), int64(-1))
	f.Add([]byte("CRM1\xff\xff\xff\x7f\x00\x00\x00\x00"), int64(RegionSize))
	f.Fuzz(func(t *testing.T, b []byte, regionLen int64) {
		m, err := DecodeRegionMap(b, regionLen)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		if regionLen < 0 {
			t.Fatalf("accepted a region of %d bytes", regionLen)
		}
		if want := (regionLen + BlockSize - 1) / BlockSize; int64(len(m.Blocks)) != want {
			t.Fatalf("%d blocks for a region of %d bytes", len(m.Blocks), regionLen)
		}
		var end int64
		for i, e := range m.Extents {
			if e.Length == 0 || int64(e.Offset) < end || int64(e.Offset)+int64(e.Length) > regionLen {
				t.Fatalf("accepted extent %d %+v (previous end %d, region %d)", i, e, end, regionLen)
			}
			end = int64(e.Offset) + int64(e.Length)
		}
		if re := m.Encode(); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, re)
		}
	})
}

func FuzzDecodeList(f *testing.F) {
	f.Add(EncodeList([]crypto.ID{idOf(0)}))
	f.Add(EncodeList([]crypto.ID{idOf(0), idOf(1), idOf(2)}))
	f.Add(EncodeList(nil))
	f.Add([]byte("CRL1\x00\x00\x00\x80"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := DecodeList(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		if len(ids) == 0 || len(ids) > ListFanout {
			t.Fatalf("accepted a list of %d IDs", len(ids))
		}
		if re := EncodeList(ids); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, re)
		}
	})
}

// FuzzDecodeSnapshot: an accepted document is valid, marshals, and decodes
// again to a document that marshals to the same bytes.
func FuzzDecodeSnapshot(f *testing.F) {
	b, err := sampleSnapshot().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	if b, err = xenSnapshot().Marshal(); err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"version":1,"time":"2026-01-01T00:00:00Z","host":"h","name":"n","source":{"kind":"image"},"disks":[{"index":0,"name":"d","size":0,"block_size":65536,"region_size":67108864,"digest":"` + DiskDigest(0, nil).String() + `","lists":[],"stats":{}}]}`))
	f.Add([]byte(`{"version":1,"name":"n","disks":[{"index":0,"size":1,"block_size":65536,"region_size":67108864,"digest":"` + DiskDigest(1, nil).String() + `","lists":["` + idOf(1).String() + `"]}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSnapshot(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		if s.Version != SnapshotVersion || ValidName(s.Name) != nil || len(s.Disks) == 0 {
			t.Fatalf("accepted snapshot %+v", s)
		}
		for i := range s.Disks {
			d := &s.Disks[i]
			if d.Index != i || d.Size < 0 || d.Size > MaxDiskSize || d.BlockSize != BlockSize || d.RegionSize != RegionSize {
				t.Fatalf("accepted disk %+v", d)
			}
			ids, err := d.ListIDs()
			if err != nil || len(ids)*ListFanout < Regions(d.Size) || (len(ids) > 0 && (len(ids)-1)*ListFanout >= Regions(d.Size)) {
				t.Fatalf("accepted disk of %d bytes with %d lists (%v)", d.Size, len(ids), err)
			}
			if _, err := d.DigestHash(); err != nil {
				t.Fatalf("accepted disk with digest %q", d.Digest)
			}
		}
		out, err := s.Marshal()
		if err != nil {
			t.Fatalf("accepted snapshot does not marshal: %v", err)
		}
		s2, err := DecodeSnapshot(out)
		if err != nil {
			t.Fatalf("marshalled snapshot does not decode: %v\n%s", err, out)
		}
		out2, err := s2.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("snapshot changed across Marshal/DecodeSnapshot:\n%s\n%s", out, out2)
		}
	})
}
