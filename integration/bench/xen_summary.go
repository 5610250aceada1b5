package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// xenSummaryLine is the part of coffer backup --xen --json's summary line
// the bench reads.
type xenSummaryLine struct {
	Type   string `json:"type"`
	Failed int    `json:"failed"`
	VMs    []struct {
		Name       string `json:"name"`
		SnapshotID string `json:"snapshot_id"`
		OK         bool   `json:"ok"`
		Error      string `json:"error"`
		Disks      []struct {
			Read          string `json:"read"`
			Reason        string `json:"reason"`
			Size          int64  `json:"size"`
			ChangedBlocks int64  `json:"changed_blocks"`
			BytesRead     int64  `json:"bytes_read"`
			BytesFetched  int64  `json:"bytes_fetched"`
			BytesNew      int64  `json:"bytes_new"`
		} `json:"disks"`
	} `json:"vms"`
}

// parseXenSummary reads coffer's output of one night of the bench's VM:
// the last {"type":"summary"} line, as a map for bench.json and as the
// figures of the VM's one disk. The figures must be consistent: a known
// way of reading, no negative counts, nothing read beyond the disk.
func parseXenSummary(out []byte) (map[string]any, XenDisk, error) {
	var d XenDisk
	m, ok := lastJSON(out, func(m map[string]any) bool { return m["type"] == "summary" })
	if !ok {
		return nil, d, errors.New(`coffer printed no {"type":"summary"} line`)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, d, fmt.Errorf("coffer's summary: %w", err)
	}
	var sum xenSummaryLine
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&sum); err != nil {
		return nil, d, fmt.Errorf("coffer's summary: %w", err)
	}
	if len(sum.VMs) != 1 || sum.VMs[0].Name != xenVM {
		return nil, d, fmt.Errorf("coffer's summary names %d VMs, want the one VM %q", len(sum.VMs), xenVM)
	}
	vm := sum.VMs[0]
	if !vm.OK || sum.Failed != 0 {
		return nil, d, fmt.Errorf("coffer did not back up VM %q: %s", xenVM, shorten(vm.Error, 300))
	}
	if len(vm.Disks) != 1 {
		return nil, d, fmt.Errorf("coffer's summary has %d disks of VM %q, want 1", len(vm.Disks), xenVM)
	}
	v := vm.Disks[0]
	d = XenDisk{Read: v.Read, Reason: v.Reason, Size: v.Size, ChangedBlocks: v.ChangedBlocks, BytesRead: v.BytesRead,
		BytesFetched: v.BytesFetched, BytesNew: v.BytesNew, SnapshotID: vm.SnapshotID}
	return m, d, d.check()
}

// check rejects figures that cannot describe one night of one disk.
func (d XenDisk) check() error {
	switch {
	case d.Read != "changed" && d.Read != "full":
		return fmt.Errorf("coffer's summary: disk read %q, want changed or full", shorten(d.Read, 40))
	case d.Size <= 0 || d.Size%512 != 0:
		return fmt.Errorf("coffer's summary: disk size %d is not a positive multiple of 512", d.Size)
	case d.ChangedBlocks < 0 || d.BytesRead < 0 || d.BytesFetched < 0 || d.BytesNew < 0:
		return errors.New("coffer's summary: a negative count")
	case d.BytesRead > d.Size:
		return fmt.Errorf("coffer's summary: %d bytes read from a disk of %d", d.BytesRead, d.Size)
	case d.ChangedBlocks > (d.Size+xenBlock-1)/xenBlock:
		return fmt.Errorf("coffer's summary: %d changed blocks on a disk of %d blocks", d.ChangedBlocks, (d.Size+xenBlock-1)/xenBlock)
	case d.SnapshotID == "":
		return errors.New("coffer's summary: no snapshot_id")
	}
	return nil
}
