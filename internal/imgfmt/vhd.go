package imgfmt

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
)

// VHD layout constants (xenapi.md, section 7).
const (
	VHDBlockSize  = 2 << 20    // bytes of data per block
	VHDMaxSize    = 2040 << 30 // XenServer's limit for a VHD
	vhdFooterSize = 512        // footer and its copy at 0
	vhdHeaderOff  = 512        // dynamic header
	vhdHeaderSize = 1024
	vhdBATOff     = 2048                      // block allocation table
	vhdStride     = SectorSize + VHDBlockSize // bitmap sector + data
)

// ErrVHDTooLarge is wrapped when a disk is over VHDMaxSize.
var ErrVHDTooLarge = errors.New("disk too large for a VHD")

// vhdEpoch is where VHD timestamps count from.
var vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// VHDOptions tunes CreateVHD.
type VHDOptions struct {
	// Clock gives the footer's timestamp; nil is the wall clock.
	Clock clock.Clock
	// UniqueID is the footer's unique id; all zeros draws a random
	// (version 4) UUID.
	UniqueID [16]byte
}

// VHD is a dynamic VHD being restored into. It implements Image.
type VHD struct {
	mapped
	footer []byte
	end    int64 // file offset of the trailing footer
}

var _ Image = (*VHD)(nil)

// CreateVHD creates a new dynamic VHD at path (which must not exist) for a
// disk of size bytes whose data lies in data, and writes all its metadata.
// Disks over VHDMaxSize are refused before the file is created.
func CreateVHD(path string, size int64, data []Extent, opt VHDOptions) (*VHD, error) {
	if err := checkVHDSize(size); err != nil {
		return nil, err
	}
	f, err := openNew(path)
	if err != nil {
		return nil, err
	}
	v, err := NewVHD(f, size, data, opt)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return v, nil
}

// NewVHD is CreateVHD into f, an empty file opened for reading and writing
// that the VHD now owns (Close closes it). On error f is left open.
func NewVHD(f *os.File, size int64, data []Extent, opt VHDOptions) (*VHD, error) {
	if err := checkVHDSize(size); err != nil {
		return nil, err
	}
	exts, err := prepare(f, size, data)
	if err != nil {
		return nil, err
	}
	vsize := VirtualSize(size)
	entries := max(ceilDiv(vsize, VHDBlockSize), 1) // libvhdi refuses an empty BAT
	runs := unitRuns(exts, VHDBlockSize)
	batBytes := roundUp(entries*4, SectorSize)
	end := place(runs, vhdBATOff+batBytes, vhdStride)
	v := &VHD{
		mapped: mapped{f: f, name: f.Name(), size: vsize, exts: exts, runs: runs,
			unit: VHDBlockSize, stride: vhdStride, skip: SectorSize},
		end: end,
	}
	if v.footer, err = vhdFooter(vsize, opt); err != nil {
		return nil, fmt.Errorf("imgfmt: %s: %w", v.name, err)
	}
	v.finish = func() error { return v.writeAll(v.footer, v.end, "footer") }
	if err := v.writeMetadata(entries, batBytes); err != nil {
		return nil, err
	}
	return v, nil
}

func checkVHDSize(size int64) error {
	if size < 0 {
		return fmt.Errorf("imgfmt: disk size %d is negative", size)
	}
	if size > VHDMaxSize { // a sector multiple: no rounding needed to compare
		return fmt.Errorf("imgfmt: the disk is %d bytes, over the 2040 GiB (%d-byte) limit of a VHD that XenServer accepts: %w; restore it as qcow2 or raw instead", size, int64(VHDMaxSize), ErrVHDTooLarge)
	}
	return nil
}

// writeMetadata writes the footer copy, the dynamic header, the BAT and the
// bitmaps of the allocated blocks, and sizes the file.
func (v *VHD) writeMetadata(entries, batBytes int64) error {
	if err := v.f.Truncate(v.end + vhdFooterSize); err != nil {
		return fmt.Errorf("imgfmt: sizing %s: %w", v.name, err)
	}
	if err := v.writeAll(v.footer, 0, "footer copy"); err != nil {
		return err
	}
	if err := v.writeAll(vhdHeader(entries), vhdHeaderOff, "dynamic header"); err != nil {
		return err
	}
	if err := v.writeAll(v.bat(batBytes), vhdBATOff, "block allocation table"); err != nil {
		return err
	}
	bitmap := bytes.Repeat([]byte{0xFF}, SectorSize)
	for _, r := range v.runs {
		for i := range r.n {
			if err := v.writeAll(bitmap, r.base+i*vhdStride, "block bitmap"); err != nil {
				return err
			}
		}
	}
	return nil
}

// bat is the block allocation table: each allocated block's bitmap sector,
// 0xFFFFFFFF for the others and the padding.
func (v *VHD) bat(batBytes int64) []byte {
	b := bytes.Repeat([]byte{0xFF}, int(batBytes))
	for _, r := range v.runs {
		for i := range r.n {
			binary.BigEndian.PutUint32(b[(r.first+i)*4:], uint32((r.base+i*vhdStride)/SectorSize))
		}
	}
	return b
}

// vhdFooter builds the 512-byte footer of a dynamic disk of vsize bytes.
func vhdFooter(vsize int64, opt VHDOptions) ([]byte, error) {
	id := opt.UniqueID
	if id == [16]byte{} {
		if _, err := rand.Read(id[:]); err != nil {
			return nil, fmt.Errorf("drawing the VHD's unique id: %w", err)
		}
		id[6] = id[6]&0x0f | 0x40 // a version 4 (random) UUID, as readers
		id[8] = id[8]&0x3f | 0x80 // that parse it as a UUID expect
	}
	b := make([]byte, vhdFooterSize)
	be := binary.BigEndian
	copy(b[0:], "conectix")
	be.PutUint32(b[8:], 2)           // features: reserved bit, always set
	be.PutUint32(b[12:], 0x00010000) // file format version
	be.PutUint64(b[16:], vhdHeaderOff)
	be.PutUint32(b[24:], vhdTimestamp(clock.Or(opt.Clock).Now()))
	copy(b[28:], "tap\x00")
	be.PutUint32(b[32:], 0x00010000) // creator version
	be.PutUint32(b[36:], 0)          // creator host OS
	be.PutUint64(b[40:], uint64(vsize))
	be.PutUint64(b[48:], uint64(vsize))
	c, h, s := chs(vsize / SectorSize)
	be.PutUint16(b[56:], c)
	b[58], b[59] = h, s
	be.PutUint32(b[60:], 3) // dynamic
	copy(b[68:], id[:])
	be.PutUint32(b[64:], vhdChecksum(b))
	return b, nil
}

// vhdHeader builds the 1024-byte dynamic header for entries blocks.
func vhdHeader(entries int64) []byte {
	b := make([]byte, vhdHeaderSize)
	be := binary.BigEndian
	copy(b[0:], "cxsparse")
	be.PutUint64(b[8:], ^uint64(0))
	be.PutUint64(b[16:], vhdBATOff)
	be.PutUint32(b[24:], 0x00010000)
	be.PutUint32(b[28:], uint32(entries))
	be.PutUint32(b[32:], VHDBlockSize)
	be.PutUint32(b[36:], vhdChecksum(b))
	return b
}

// vhdChecksum is the bitwise NOT of the byte sum of b. The checksum field
// must be zero when it is called.
func vhdChecksum(b []byte) uint32 {
	var sum uint32
	for _, c := range b {
		sum += uint32(c)
	}
	return ^sum
}

// vhdTimestamp is t in seconds since 2000-01-01 UTC, clamped to a u32.
func vhdTimestamp(t time.Time) uint32 {
	s := int64(t.Sub(vhdEpoch) / time.Second)
	return uint32(min(max(s, 0), 1<<32-1))
}

// chs is the VHD specification's CHS geometry for a disk of sectors
// sectors (it may describe slightly less than the disk; the footer's size
// is what counts for a "tap" image).
func chs(sectors int64) (cyl uint16, heads, spt uint8) {
	sectors = min(sectors, 65535*16*255)
	var h, s, cth int64
	if sectors >= 65535*16*63 {
		s, h = 255, 16
		cth = sectors / s
	} else {
		s = 17
		cth = sectors / s
		h = max((cth+1023)/1024, 4)
		if cth >= h*1024 || h > 16 {
			s, h = 31, 16
			cth = sectors / s
		}
		if cth >= h*1024 {
			s, h = 63, 16
			cth = sectors / s
		}
	}
	return uint16(cth / h), uint8(h), uint8(s)
}
