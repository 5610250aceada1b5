package imgfmt

import (
	"encoding/binary"
	"fmt"
	"os"
	"sort"
)

// qcow2 layout constants: the conservative profile.
const (
	QCOW2ClusterSize = 1 << qcowClusterBits // bytes per cluster
	qcowClusterBits  = 16
	qcowHeaderLen    = 112                  // v3 header with the compression type byte
	qcowEntries      = QCOW2ClusterSize / 8 // L1, L2 and refcount table entries per cluster
	qcowRefsPerBlock = QCOW2ClusterSize / 2 // refcount order 4: 16-bit refcounts
	qcowCopied       = 1 << 63              // OFLAG_COPIED: refcount is exactly 1
	qcowMaxL1Bytes   = 32 << 20             // qemu's largest L1 table

	// QCOW2MaxSize is the largest disk a qcow2 image with 64 KiB clusters
	// addresses within qemu's largest L1 table.
	QCOW2MaxSize = qcowMaxL1Bytes / 8 * qcowEntries * QCOW2ClusterSize
)

// QCOW2Options tunes CreateQCOW2. The conservative profile has nothing to
// choose yet; the type keeps the constructors alike.
type QCOW2Options struct{}

// QCOW2 is a qcow2 image being restored into. It implements Image.
type QCOW2 struct {
	mapped
	plan qcowPlan
}

var _ Image = (*QCOW2)(nil)

// qcowPlan is where every part of a qcow2 image goes, in clusters.
type qcowPlan struct {
	l1Size    int64   // L1 entries
	rtOff     int64   // refcount table
	rtCl      int64   // its clusters
	rbOff     int64   // first refcount block
	rbCl      int64   // refcount blocks
	l1Off     int64   // L1 table
	l2Off     int64   // first L2 table
	l2Tables  []int64 // L1 indexes that have an L2 table, in order
	dataOff   int64   // first data cluster
	total     int64   // clusters the image uses (the file's length in clusters)
	dataUnits int64
}

// CreateQCOW2 creates a new qcow2 image at path (which must not exist) for
// a disk of size bytes whose data lies in data, and writes all its metadata.
func CreateQCOW2(path string, size int64, data []Extent, opt QCOW2Options) (*QCOW2, error) {
	if err := checkQCOW2Size(size); err != nil {
		return nil, err
	}
	f, err := openNew(path)
	if err != nil {
		return nil, err
	}
	q, err := NewQCOW2(f, size, data, opt)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return q, nil
}

// NewQCOW2 is CreateQCOW2 into f, an empty file opened for reading and
// writing that the image now owns (Close closes it). On error f is left open.
func NewQCOW2(f *os.File, size int64, data []Extent, _ QCOW2Options) (*QCOW2, error) {
	if err := checkQCOW2Size(size); err != nil {
		return nil, err
	}
	exts, err := prepare(f, size, data)
	if err != nil {
		return nil, err
	}
	vsize := VirtualSize(size)
	runs := unitRuns(exts, QCOW2ClusterSize)
	plan := planQCOW2(vsize, runs)
	place(runs, plan.dataOff*QCOW2ClusterSize, QCOW2ClusterSize)
	q := &QCOW2{
		mapped: mapped{f: f, name: f.Name(), size: vsize, exts: exts, runs: runs,
			unit: QCOW2ClusterSize, stride: QCOW2ClusterSize},
		plan: plan,
	}
	if err := q.writeMetadata(); err != nil {
		return nil, err
	}
	return q, nil
}

func checkQCOW2Size(size int64) error {
	if size < 0 {
		return fmt.Errorf("imgfmt: disk size %d is negative", size)
	}
	if size > QCOW2MaxSize {
		return fmt.Errorf("imgfmt: the disk is %d bytes, more than a qcow2 image with 64 KiB clusters can address (its L1 table would exceed qemu's 32 MiB); restore it as raw instead", size)
	}
	return nil
}

// planQCOW2 lays out the metadata of an image of vsize bytes whose data
// clusters are runs: header, refcount table, refcount blocks, L1, L2s, data.
func planQCOW2(vsize int64, runs []unitRun) qcowPlan {
	p := qcowPlan{l1Size: ceilDiv(ceilDiv(vsize, QCOW2ClusterSize), qcowEntries)}
	p.l2Tables = l2Tables(runs)
	p.dataUnits = countUnits(runs)
	l1Cl := ceilDiv(p.l1Size*8, QCOW2ClusterSize)
	fixed := 1 + l1Cl + int64(len(p.l2Tables)) + p.dataUnits
	// The refcount blocks and table count themselves: grow until stable.
	for {
		total := fixed + p.rtCl + p.rbCl
		rb := ceilDiv(total, qcowRefsPerBlock)
		rt := ceilDiv(rb, qcowEntries)
		if rb == p.rbCl && rt == p.rtCl {
			p.total = total
			break
		}
		p.rbCl, p.rtCl = rb, rt
	}
	p.rtOff = 1
	p.rbOff = p.rtOff + p.rtCl
	p.l1Off = p.rbOff + p.rbCl
	p.l2Off = p.l1Off + l1Cl
	p.dataOff = p.l2Off + int64(len(p.l2Tables))
	return p
}

// l2Tables lists the L1 indexes whose L2 table maps at least one of the
// clusters in runs.
func l2Tables(runs []unitRun) []int64 {
	var out []int64
	for _, r := range runs {
		for t := r.first / qcowEntries; t <= (r.first+r.n-1)/qcowEntries; t++ {
			if n := len(out); n == 0 || out[n-1] < t {
				out = append(out, t)
			}
		}
	}
	return out
}

// writeMetadata sizes the file and writes the header and every table.
func (q *QCOW2) writeMetadata() error {
	if err := q.f.Truncate(q.plan.total * QCOW2ClusterSize); err != nil {
		return fmt.Errorf("imgfmt: sizing %s: %w", q.name, err)
	}
	if err := q.writeAll(q.header(), 0, "header"); err != nil {
		return err
	}
	if err := q.writeRefcounts(); err != nil {
		return err
	}
	if err := q.writeAll(q.l1(), q.plan.l1Off*QCOW2ClusterSize, "L1 table"); err != nil {
		return err
	}
	buf := make([]byte, QCOW2ClusterSize)
	for i, t := range q.plan.l2Tables {
		q.fillL2(buf, t)
		if err := q.writeAll(buf, (q.plan.l2Off+int64(i))*QCOW2ClusterSize, "L2 table"); err != nil {
			return err
		}
	}
	return nil
}

// header is the v3 header (cluster 0's first bytes; the rest of the cluster
// stays zero, which ends the header-extension list).
func (q *QCOW2) header() []byte {
	b := make([]byte, qcowHeaderLen+8) // + the end-of-extensions marker
	be := binary.BigEndian
	copy(b[0:], "QFI\xfb")
	be.PutUint32(b[4:], 3)
	be.PutUint32(b[20:], qcowClusterBits)
	be.PutUint64(b[24:], uint64(q.size))
	be.PutUint32(b[36:], uint32(q.plan.l1Size))
	be.PutUint64(b[40:], uint64(q.plan.l1Off*QCOW2ClusterSize))
	be.PutUint64(b[48:], uint64(q.plan.rtOff*QCOW2ClusterSize))
	be.PutUint32(b[56:], uint32(q.plan.rtCl))
	be.PutUint32(b[96:], 4) // refcount order
	be.PutUint32(b[100:], qcowHeaderLen)
	// backing file, encryption, snapshots, feature bits, compression type
	// (zlib, never used) and the extension marker are all zero.
	return b
}

// writeRefcounts writes the refcount table and blocks: clusters
// [0, total) have refcount 1, every other cluster 0.
func (q *QCOW2) writeRefcounts() error {
	rt := make([]byte, q.plan.rtCl*QCOW2ClusterSize)
	for i := range q.plan.rbCl {
		binary.BigEndian.PutUint64(rt[i*8:], uint64((q.plan.rbOff+i)*QCOW2ClusterSize))
	}
	if err := q.writeAll(rt, q.plan.rtOff*QCOW2ClusterSize, "refcount table"); err != nil {
		return err
	}
	block := make([]byte, QCOW2ClusterSize)
	for i := range q.plan.rbCl {
		clear(block)
		n := min(q.plan.total-i*qcowRefsPerBlock, qcowRefsPerBlock)
		for j := range n {
			binary.BigEndian.PutUint16(block[j*2:], 1)
		}
		if err := q.writeAll(block, (q.plan.rbOff+i)*QCOW2ClusterSize, "refcount block"); err != nil {
			return err
		}
	}
	return nil
}

// l1 is the L1 table: each L2 table's offset, COPIED.
func (q *QCOW2) l1() []byte {
	b := make([]byte, q.plan.l1Size*8)
	for i, t := range q.plan.l2Tables {
		binary.BigEndian.PutUint64(b[t*8:], uint64((q.plan.l2Off+int64(i))*QCOW2ClusterSize)|qcowCopied)
	}
	return b
}

// fillL2 fills buf with L2 table t: each allocated cluster's offset, COPIED.
func (q *QCOW2) fillL2(buf []byte, t int64) {
	clear(buf)
	lo, hi := t*qcowEntries, (t+1)*qcowEntries
	start := sort.Search(len(q.runs), func(i int) bool { return q.runs[i].first+q.runs[i].n > lo })
	for _, r := range q.runs[start:] {
		if r.first >= hi {
			break
		}
		from, to := max(r.first, lo), min(r.first+r.n, hi)
		for u := from; u < to; u++ {
			off := r.base + (u-r.first)*QCOW2ClusterSize
			binary.BigEndian.PutUint64(buf[(u-lo)*8:], uint64(off)|qcowCopied)
		}
	}
}
