package restore

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

// loopDevice attaches a loop device to a new file of size bytes filled with
// fill, and returns its path. It skips the test when it cannot (not root,
// no loop devices), except under CI=true.
func loopDevice(t *testing.T, size int64, fill byte) string {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("restoring onto a block device needs root for losetup")
	}
	backing := filepath.Join(t.TempDir(), "backing.img")
	if err := os.WriteFile(backing, bytes.Repeat([]byte{fill}, int(size)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	if err != nil {
		skip("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "--detach", dev).Run() })
	return dev
}

// readDevice reads n bytes of dev from its start.
func readDevice(t *testing.T, dev string, n int64) []byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// A restore onto a loop device that holds data is refused without
// OverwriteDevice and changes nothing; with it, the device's first bytes
// equal the disk, holes included (zeroed, not left as they were), and the
// rest of a larger device is left alone.
func TestRestoreOntoDevice(t *testing.T) {
	f := repofixture.New(t, pass)
	size := int64(manifest.RegionSize + 5*manifest.BlockSize)
	im := &repofixture.Image{Size: size, Pieces: []repofixture.Piece{
		{Off: 3 * manifest.BlockSize, Data: bytes.Repeat([]byte("chunk data "), 20000)},
		{Off: manifest.RegionSize + manifest.BlockSize, Data: []byte("in the second region")},
	}}
	snap := f.Snapshot("s", f.Disk(0, im, nil))
	r := f.Reopen()
	devSize := size + 3<<20
	dev := loopDevice(t, devSize, 0xa5)

	_, err := New(r, &snap.Disks[0], Options{}).Run(ctx, dev)
	if !errors.Is(err, ErrDeviceHoldsData) || !strings.Contains(err.Error(), "--overwrite-device") || !strings.Contains(err.Error(), dev) {
		t.Fatalf("restore onto a device with data: %v", err)
	}
	if !bytes.Equal(readDevice(t, dev, devSize), bytes.Repeat([]byte{0xa5}, int(devSize))) {
		t.Fatal("a refused restore changed the device")
	}

	res, err := New(r, &snap.Disks[0], Options{OverwriteDevice: true}).Run(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.Done != size || !res.Device {
		t.Fatalf("result %+v", res)
	}
	got := readDevice(t, dev, devSize)
	if !bytes.Equal(got[:size], im.Read(0, size)) {
		t.Fatal("the device differs from the disk (were the holes zeroed?)")
	}
	if !bytes.Equal(got[size:], bytes.Repeat([]byte{0xa5}, int(devSize-size))) {
		t.Fatal("the device beyond the disk's size was changed")
	}
	if _, err := os.Stat(dev); err != nil {
		t.Fatalf("the device node: %v", err)
	}
}

// An empty device (zeros) needs no flag; a device smaller than the disk is
// refused before anything is written.
func TestRestoreOntoDeviceChecks(t *testing.T) {
	f := repofixture.New(t, pass)
	size := int64(4 << 20)
	im := &repofixture.Image{Size: size, Pieces: []repofixture.Piece{{Off: 1 << 20, Data: []byte("data")}}}
	snap := f.Snapshot("s", f.Disk(0, im, nil))
	r := f.Reopen()

	empty := loopDevice(t, size, 0)
	if _, err := New(r, &snap.Disks[0], Options{}).Run(ctx, empty); err != nil {
		t.Fatalf("restore onto an empty device: %v", err)
	}
	if !bytes.Equal(readDevice(t, empty, size), im.Read(0, size)) {
		t.Fatal("the device differs from the disk")
	}

	small := loopDevice(t, size-1<<20, 0x11)
	_, err := New(r, &snap.Disks[0], Options{OverwriteDevice: true}).Run(ctx, small)
	if err == nil || !strings.Contains(err.Error(), "less than the disk's") {
		t.Fatalf("restore onto a smaller device: %v", err)
	}
	if !bytes.Equal(readDevice(t, small, size-1<<20), bytes.Repeat([]byte{0x11}, int(size-1<<20))) {
		t.Fatal("a refused restore changed the smaller device")
	}
}

// A restore that runs out of space (a full file system) fails saying so and
// removes its temporary file, freeing the space.
func TestRestoreFullDiskLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to mount a small tmpfs")
		}
		t.Skip("needs root to mount a small tmpfs")
	}
	f := repofixture.New(t, pass)
	im := repofixture.SampleImage()
	snap := f.Snapshot("s", f.Disk(0, im, nil))
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	_, err := New(f.Reopen(), &snap.Disks[0], Options{}).Run(ctx, filepath.Join(dir, "disk.img"))
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("restore onto a full file system: %v", err)
	}
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Fatalf("a restore that ran out of space left %v", names)
	}
}
