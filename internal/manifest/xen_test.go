package manifest

import (
	"strings"
	"testing"
)

const (
	uuidA = "5173f8da-54d0-4aaf-a196-7a66f9a895a5"
	uuidB = "445022e1-a0ca-45de-bc56-0fbfce1c3208"
)

// xenSnapshot is a snapshot of a XenServer VM as a changed-block night
// writes it.
func xenSnapshot() *Snapshot {
	s := sampleSnapshot()
	s.Source = Source{Kind: "xen", Path: "xen:web", Xen: &XenVM{Pool: uuidA, VM: uuidB, Name: "web", Snapshot: uuidA,
		Metadata: strings.Repeat("0f", 32), MetadataSize: 10240}}
	for i := range s.Disks {
		s.Disks[i].Xen = &XenDisk{VDI: uuidA, SnapshotVDI: uuidB, UserDevice: "0", Read: XenReadChanged,
			BaseVDI: uuidA, ChangedBlocks: 3, Kept: XenKeptMeta}
	}
	return s
}

// A XenServer snapshot round-trips; any member outside its rules makes the
// snapshot malformed.
func TestXenSnapshot(t *testing.T) {
	b, err := xenSnapshot().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSnapshot(b)
	if err != nil || got.Source.Xen.VM != uuidB || got.Disks[0].Xen.Kept != XenKeptMeta {
		t.Fatalf("round trip: %v, %+v", err, got)
	}
	bad := map[string]func(s *Snapshot){
		"pool not a uuid":     func(s *Snapshot) { s.Source.Xen.Pool = "pool" },
		"upper-case vm":       func(s *Snapshot) { s.Source.Xen.VM = strings.ToUpper(uuidB) },
		"short metadata id":   func(s *Snapshot) { s.Source.Xen.Metadata = "0f" },
		"vdi not a uuid":      func(s *Snapshot) { s.Disks[1].Xen.VDI = "../x" },
		"base not a uuid":     func(s *Snapshot) { s.Disks[0].Xen.BaseVDI = "OpaqueRef:x" },
		"unknown read":        func(s *Snapshot) { s.Disks[0].Xen.Read = "some" },
		"unknown kept":        func(s *Snapshot) { s.Disks[0].Xen.Kept = "" },
		"snapshot not a uuid": func(s *Snapshot) { s.Source.Xen.Snapshot = "" },
	}
	for name, mutate := range bad {
		s := xenSnapshot()
		mutate(s)
		b, _ := s.Marshal()
		if _, err := DecodeSnapshot(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
