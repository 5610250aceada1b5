package manifest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
)

func listsFor(size int64) []string {
	n := (Regions(size) + ListFanout - 1) / ListFanout
	out := make([]string, n)
	for i := range out {
		out[i] = idOf(i).String()
	}
	return out
}

func sampleSnapshot() *Snapshot {
	sizes := []int64{10 << 30, 0, 1, ListFanout*RegionSize + 1}
	s := &Snapshot{
		Version: SnapshotVersion,
		Time:    time.Date(2026, 11, 3, 1, 2, 3, 456789000, time.UTC),
		Host:    "backup-01",
		Name:    "vm-42",
		Tags:    []string{"nightly", "prod"},
		Source:  Source{Kind: "image", Path: "/dev/vg0/vm-42"},
		Parent:  strings.Repeat("ab", 32),
	}
	for i, size := range sizes {
		s.Disks = append(s.Disks, Disk{
			Index: i, Name: "xvd" + string(rune('a'+i)), Size: size,
			BlockSize: BlockSize, RegionSize: RegionSize,
			Digest: DiskDigest(size, nil).String(),
			Lists:  listsFor(size),
			Stats:  DiskStats{DataBytes: 1, ReadBytes: 2, NewBytes: 3, StoredBytes: 4, Chunks: 5, NewChunks: 6},
		})
	}
	return s
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := sampleSnapshot()
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("snapshot changed across Marshal/DecodeSnapshot:\n%+v\n%+v", got, s)
	}
	if len(got.Disks[3].Lists) != 2 || len(got.Disks[1].Lists) != 0 {
		t.Fatalf("list counts %d, %d", len(got.Disks[3].Lists), len(got.Disks[1].Lists))
	}
	ids, err := got.Disks[0].ListIDs()
	if err != nil || len(ids) != 1 || ids[0] != idOf(0) {
		t.Fatalf("ListIDs = %v, %v", ids, err)
	}
	h, err := got.Disks[0].DigestHash()
	if err != nil || h != DiskDigest(10<<30, nil) {
		t.Fatalf("DigestHash = %v, %v", h, err)
	}
}

// mutate applies edit to the sample snapshot's JSON object form.
func mutate(t *testing.T, edit func(m map[string]any)) []byte {
	t.Helper()
	b, err := sampleSnapshot().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func disk(m map[string]any, i int) map[string]any {
	return m["disks"].([]any)[i].(map[string]any)
}

func TestDecodeSnapshotRejects(t *testing.T) {
	cases := map[string]func(m map[string]any){
		"version 0":            func(m map[string]any) { m["version"] = 0 },
		"version 2":            func(m map[string]any) { m["version"] = 2 },
		"no version":           func(m map[string]any) { delete(m, "version") },
		"empty name":           func(m map[string]any) { m["name"] = "" },
		"long name":            func(m map[string]any) { m["name"] = strings.Repeat("n", 129) },
		"control in name":      func(m map[string]any) { m["name"] = "a\x1bb" },
		"no disks":             func(m map[string]any) { m["disks"] = []any{} },
		"null disks":           func(m map[string]any) { m["disks"] = nil },
		"disk index":           func(m map[string]any) { disk(m, 1)["index"] = 2 },
		"negative size":        func(m map[string]any) { disk(m, 0)["size"] = -1 },
		"size too large":       func(m map[string]any) { disk(m, 0)["size"] = MaxDiskSize + 1 },
		"block size":           func(m map[string]any) { disk(m, 0)["block_size"] = 4096 },
		"region size":          func(m map[string]any) { disk(m, 0)["region_size"] = RegionSize * 2 },
		"missing block size":   func(m map[string]any) { delete(disk(m, 0), "block_size") },
		"too few lists":        func(m map[string]any) { disk(m, 3)["lists"] = disk(m, 3)["lists"].([]any)[:1] },
		"too many lists":       func(m map[string]any) { disk(m, 0)["lists"] = append(disk(m, 0)["lists"].([]any), idOf(9).String()) },
		"list for empty disk":  func(m map[string]any) { disk(m, 1)["lists"] = []any{idOf(9).String()} },
		"no lists":             func(m map[string]any) { disk(m, 2)["lists"] = nil },
		"short list ID":        func(m map[string]any) { disk(m, 0)["lists"] = []any{"abcd"} },
		"list ID not hex":      func(m map[string]any) { disk(m, 0)["lists"] = []any{strings.Repeat("g", 64)} },
		"list ID not a string": func(m map[string]any) { disk(m, 0)["lists"] = []any{5} },
		"upper-case list ID":   func(m map[string]any) { disk(m, 0)["lists"] = []any{strings.ToUpper(idOf(1).String())} },
		"upper-case digest":    func(m map[string]any) { disk(m, 0)["digest"] = strings.ToUpper(disk(m, 0)["digest"].(string)) },
		"digest short":         func(m map[string]any) { disk(m, 0)["digest"] = "ab" },
		"digest not hex":       func(m map[string]any) { disk(m, 0)["digest"] = strings.Repeat("x", 64) },
		"no digest":            func(m map[string]any) { delete(disk(m, 2), "digest") },
		"time not a time":      func(m map[string]any) { m["time"] = "yesterday" },
		"size a string":        func(m map[string]any) { disk(m, 0)["size"] = "1" },
	}
	for name, edit := range cases {
		_, err := DecodeSnapshot(mutate(t, edit))
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
	for _, in := range []string{"", "null", "{}", "[]", "{", `{"version":1}`, "\x00"} {
		if _, err := DecodeSnapshot([]byte(in)); !errors.Is(err, ErrFormat) {
			t.Errorf("DecodeSnapshot(%q): err = %v, want ErrFormat", in, err)
		}
	}
	// The largest disk is accepted with its many lists.
	big := mutate(t, func(m map[string]any) {
		disk(m, 0)["size"] = MaxDiskSize
		var lists []any
		for _, l := range listsFor(MaxDiskSize) {
			lists = append(lists, l)
		}
		disk(m, 0)["lists"] = lists
	})
	if _, err := DecodeSnapshot(big); err != nil {
		t.Errorf("a disk of MaxDiskSize: %v", err)
	}
}

func TestListIDsRejects(t *testing.T) {
	id := crypto.ID{1}
	d := Disk{Lists: []string{id.String(), "zz"}}
	if _, err := d.ListIDs(); !errors.Is(err, ErrFormat) {
		t.Fatalf("err = %v", err)
	}
}
