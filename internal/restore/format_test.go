package restore

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/imgfmt"
	"github.com/cofferhq/coffer/internal/testutil/judge"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

// A restore into VHD and qcow2 gives images qemu-img checks clean and finds
// equal to the disk, of the disk's exact size (the sample's size is a
// sector multiple; imgfmt's tests cover the others), verified as a raw
// restore is; a damaged chunk leaves no image behind.
func TestRestoreImageFormats(t *testing.T) {
	qemu := judge.Need(t, "qemu-img")
	f := repofixture.New(t, pass)
	im := repofixture.SampleImage()
	snap := f.Snapshot("vm", f.Disk(0, im, nil))
	r := f.Reopen()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(raw, im.Read(0, im.Size), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		format Format
		qemu   string
	}{{FormatVHD, "vpc"}, {FormatQCOW2, "qcow2"}} {
		out := filepath.Join(dir, "disk."+string(c.format))
		res, err := New(r, &snap.Disks[0], Options{Format: c.format}).Run(ctx, out)
		if err != nil {
			t.Fatalf("%s: %v", c.format, err)
		}
		if !res.Verified || res.Digest != snap.Disks[0].Digest {
			t.Fatalf("%s: %+v", c.format, res)
		}
		if c.format == FormatQCOW2 { // qemu-img has no check for VHD
			judge.Run(t, qemu, "check", "-f", c.qemu, out)
		}
		if got := judge.Run(t, qemu, "compare", "-f", "raw", "-F", c.qemu, raw, out); !strings.Contains(got, "identical") {
			t.Fatalf("%s: qemu-img compare: %s", c.format, got)
		}
		var info struct {
			VirtualSize int64 `json:"virtual-size"`
		}
		if err := json.Unmarshal([]byte(judge.Run(t, qemu, "info", "--output=json", "-f", c.qemu, out)), &info); err != nil || info.VirtualSize != imgfmt.VirtualSize(im.Size) || res.ImageSize != info.VirtualSize {
			t.Fatalf("%s: virtual size %d, result says %d, want the disk's %d in whole sectors (%v)", c.format, info.VirtualSize, res.ImageSize, im.Size, err)
		}
	}
	if _, err := New(r, &snap.Disks[0], Options{Format: FormatQCOW2, Delta: true}).Run(ctx, raw); err == nil {
		t.Fatal("a delta restore into qcow2 was accepted")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), tempInfix) {
			t.Fatalf("a temporary file is left: %s", e.Name())
		}
	}
}
