package restore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cofferhq/coffer/internal/fsx"
	"github.com/cofferhq/coffer/internal/imgfmt"
)

// tempInfix marks a restore's temporary file: ".NAME.coffer-restore-RANDOM"
// in the directory of NAME.
const tempInfix = ".coffer-restore-"

// output is where a restore writes. A file is restored into a temporary
// file beside its final name and renamed into place only after the whole
// disk is verified, so an interrupted or failed restore leaves nothing
// under the final name and frees its space. A block device is written in
// place.
type output struct {
	f         *os.File
	t         Target       // what the restore writes through
	img       imgfmt.Image // an image format over f, which it owns
	final     string
	tmp       string // the temporary file; "" for a device
	device    bool
	overwrite bool
	// keep: tmp holds the user's data (a delta restore's copy, moved
	// aside while it is updated), so a failure leaves it for a rerun.
	keep bool
}

// openOutput prepares the output for a disk of size bytes at path.
func openOutput(path string, size int64, opt Options) (*output, error) {
	st, err := os.Stat(path)
	switch {
	case err == nil && isBlockDevice(st.Mode()):
		return openDevice(path, size, opt.OverwriteDevice)
	case err == nil && st.IsDir():
		return nil, fmt.Errorf("%s is a directory; give the name of the file to restore the disk into", path)
	case err == nil && !st.Mode().IsRegular():
		return nil, fmt.Errorf("%s is neither a regular file nor a block device; restore writes only to those", path)
	case err == nil && !opt.Overwrite:
		return nil, fmt.Errorf("%s exists; choose a new path (restore never overwrites a file unless told to)", path)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("checking the output %s: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	removeStaleTemps(dir, base)
	f, err := os.CreateTemp(dir, "."+base+tempInfix+"*")
	if err != nil {
		return nil, fmt.Errorf("creating the output beside %s: %w", path, err)
	}
	o := &output{f: f, t: fileTarget{f}, final: path, tmp: f.Name(), overwrite: opt.Overwrite}
	// The lock tells a later restore that this file is in use; one that
	// finds it unlocked removes it (removeStaleTemps).
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		o.abort()
		return nil, fmt.Errorf("locking %s: %w", o.tmp, err)
	}
	// A new file is empty: an image format (size 0) sizes it itself. A
	// truncate to 0 would also make ext4 flush the whole file when it is
	// closed (its delayed-allocation heuristic for files rewritten in
	// place), a second of waiting per few GiB restored.
	if size > 0 {
		if err := f.Truncate(size); err != nil {
			o.abort()
			return nil, fmt.Errorf("sizing the output %s: %w", o.tmp, err)
		}
	}
	return o, nil
}

func isBlockDevice(m fs.FileMode) bool {
	return m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0
}

// removeStaleTemps removes the temporary files that restores of base in dir
// left when they were killed (no other restore holds their lock).
func removeStaleTemps(dir, base string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), "."+base+tempInfix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.Remove(p)
		}
		f.Close()
	}
}

// commit makes a finished, verified restore visible: the temporary file
// is renamed to the final name (replacing a file there only with
// Overwrite). With sync, or always for a device, the data is flushed first.
func (o *output) commit(sync bool) error {
	flush, closeOut := o.f.Sync, o.f.Close
	if o.img != nil {
		// The image writes what its format writes last when it closes.
		flush, closeOut = o.img.Sync, o.img.Close
	}
	if sync || o.device {
		if err := flush(); err != nil {
			return fmt.Errorf("flushing the output %s: %w", o.final, err)
		}
	}
	if o.tmp == "" { // written in place: a device, or a delta restore
		return closeOut()
	}
	err := closeOut()
	o.f, o.img = nil, nil
	if err != nil {
		if !o.keep {
			os.Remove(o.tmp)
		}
		return fmt.Errorf("closing the output %s: %w", o.tmp, err)
	}
	rename := fsx.RenameNoReplace
	if o.overwrite {
		rename = os.Rename
	}
	if err := rename(o.tmp, o.final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s was created by something else while the disk was restored; choose a new path", o.final)
		}
		return fmt.Errorf("moving the restored disk to %s: %w", o.final, err)
	}
	o.tmp = ""
	if sync {
		return fsx.SyncDir(filepath.Dir(o.final))
	}
	return nil
}

// abort discards an unfinished restore: the temporary file is removed, so
// its space is free and a rerun starts clean. A device keeps what was
// written.
func (o *output) abort() {
	switch {
	case o.img != nil:
		o.img.Close()
	case o.f != nil:
		o.f.Close()
	}
	if o.tmp != "" && !o.keep {
		os.Remove(o.tmp)
	}
}

// probeSize is how much of a device's start and end is read to see whether
// it holds data.
const probeSize = 1 << 20

// openDevice opens a block device to restore a disk of size bytes onto. It
// is opened exclusively (the kernel refuses while it is mounted), must be
// at least as large as the disk, and is overwritten only with
// overwriteData when its first or last MiB holds anything but zeros.
func openDevice(path string, size int64, overwriteData bool) (*output, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_EXCL, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, fmt.Errorf("device %s is in use (mounted, or held by another program); unmount it before restoring onto it", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening device %s: %w", path, err)
	}
	o := &output{f: f, t: deviceTarget{f}, final: path, device: true}
	devSize, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		o.abort()
		return nil, fmt.Errorf("finding the size of device %s: %w", path, err)
	}
	if devSize < size {
		o.abort()
		return nil, fmt.Errorf("device %s holds %d bytes, less than the disk's %d; restore onto a device at least as large, or into a file", path, devSize, size)
	}
	if !overwriteData {
		used, err := holdsData(f, devSize)
		if err != nil {
			o.abort()
			return nil, fmt.Errorf("reading device %s: %w", path, err)
		}
		if used {
			o.abort()
			return nil, fmt.Errorf("%w: device %s is not empty (its first or last MiB holds data); to replace its contents, pass --overwrite-device", ErrDeviceHoldsData, path)
		}
	}
	return o, nil
}

// ErrDeviceHoldsData is returned when a restore onto a device that holds
// data was not allowed to overwrite it (Options.OverwriteDevice).
var ErrDeviceHoldsData = errors.New("the device holds data")

// holdsData reports whether the first or last MiB of a device of size bytes
// holds a non-zero byte (a partition table, a file system's superblock or
// its backup).
func holdsData(f *os.File, size int64) (bool, error) {
	buf := make([]byte, min(probeSize, size))
	for _, off := range []int64{0, size - int64(len(buf))} {
		if _, err := f.ReadAt(buf, off); err != nil {
			return false, err
		}
		for _, c := range buf {
			if c != 0 {
				return true, nil
			}
		}
	}
	return false, nil
}

// zeroRange makes n bytes of the device at off read as zeros: the aligned
// middle by FALLOC_FL_ZERO_RANGE (the kernel's write-zeroes, or discard
// where that reads back zeros), the rest, and everything on a device that
// cannot, by writing zeros.
func zeroRange(f *os.File, off, n int64) error {
	const align = 4096
	lo, hi := (off+align-1)/align*align, (off+n)/align*align
	if hi > lo {
		err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, lo, hi-lo)
		if err == nil {
			if err := writeZeros(f, off, lo-off); err != nil {
				return err
			}
			return writeZeros(f, hi, off+n-hi)
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("zeroing %s at %d (%d bytes): %w", f.Name(), lo, hi-lo, err)
		}
	}
	return writeZeros(f, off, n)
}

var zeros = make([]byte, 1<<20)

func writeZeros(f *os.File, off, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:k], off); err != nil {
			return fmt.Errorf("zeroing %s at %d: %w", f.Name(), off, err)
		}
		off, n = off+k, n-k
	}
	return nil
}
