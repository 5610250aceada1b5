package store

import (
	"errors"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Direct I/O for large objects of the local store. A backup writes every pack
// once and does not read it again, so copying it through the page cache only
// costs CPU (most of it allocating cache pages) and evicts data the machine
// is using. O_DIRECT sends the page-aligned bulk of a pack from our buffer to
// the device; the unaligned tail goes through the page cache, and commit's
// fsync makes both durable. File systems that refuse O_DIRECT (tmpfs on older
// kernels, some FUSE and network file systems) get an ordinary write.

const (
	directAlign = 4096    // the logical block size O_DIRECT needs; 4 KiB covers every common device
	directMin   = 1 << 20 // smaller objects are not worth it
)

// directBytes counts bytes written with direct I/O, for tests.
var directBytes atomic.Int64

// writeDirect writes the longest aligned prefix of p to f, which must be at
// offset 0, with O_DIRECT, and returns how many bytes it wrote: 0 when p is
// too small, not page-aligned in memory, or the file system refuses.
func writeDirect(f *os.File, p []byte) (int, error) {
	n := len(p) &^ (directAlign - 1)
	if n < directMin || uintptr(unsafe.Pointer(unsafe.SliceData(p)))%directAlign != 0 {
		return 0, nil
	}
	fd := int(f.Fd())
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return 0, nil
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags|unix.O_DIRECT); err != nil {
		return 0, nil
	}
	done := 0
	for done < n {
		w, err := unix.Pwrite(fd, p[done:n], int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// EINVAL: the file system does not do direct I/O after all.
			// Whatever was written stays; the caller writes the rest.
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags)
			if errors.Is(err, unix.EINVAL) {
				return done &^ (directAlign - 1), nil
			}
			return done, err
		}
		done += w
	}
	directBytes.Add(int64(done))
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags); err != nil {
		return done, err
	}
	return done, nil
}
