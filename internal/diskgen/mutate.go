package diskgen

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"syscall"
)

// BlockSize is the unit Mutate changes, like a hypervisor's changed-block map.
const BlockSize = 64 << 10

// Stream domains keep the data Mutate writes apart from the data Generate
// writes, even when both use the same seed.
const (
	domainChanged = 1 << 62
	domainInsert  = 1 << 63
)

// MutateOptions say how the next night differs from the source. The zero
// value makes a plain sparse copy.
type MutateOptions struct {
	// ChangedFraction is the share of the source's 64 KiB blocks to
	// overwrite, chosen over the whole disk (holes included), each with
	// random or text data.
	ChangedFraction float64
	// InsertBytes of new text are inserted at the middle of the disk (rounded
	// down to a 64 KiB boundary), shifting the rest: the image grows by this.
	InsertBytes int64
	// NonSparse writes the zeros of the copy instead of leaving holes.
	NonSparse bool
}

// NextNight is the benchmark's second night: 1% of blocks changed and 32 MiB
// inserted in the middle.
var NextNight = MutateOptions{ChangedFraction: 0.01, InsertBytes: 32 << 20}

// MutateStats describe what Mutate did.
type MutateStats struct {
	SrcSize        int64   // bytes in the source
	DstSize        int64   // bytes in the result: SrcSize + InsertBytes
	Blocks         int64   // 64 KiB blocks in the source
	ChangedBlocks  int64   // blocks overwritten
	ChangedInHoles int64   // of those, blocks that were all zeros in the source
	Changed        []int64 // indexes of the overwritten source blocks, ascending
	InsertOffset   int64   // where the new data starts in the result
	InsertBytes    int64   // bytes inserted
}

// Mutate writes to dst a copy of the image src in which opt.ChangedFraction
// of the 64 KiB blocks are overwritten and opt.InsertBytes of new text are
// inserted at the middle. Zero blocks are left as holes unless opt.NonSparse.
// A changed block at source offset o lands at o in dst if o < InsertOffset,
// else at o + InsertBytes.
func Mutate(src, dst string, seed uint64, opt MutateOptions) (st MutateStats, err error) {
	if opt.ChangedFraction < 0 || opt.ChangedFraction > 1 || opt.InsertBytes < 0 {
		return st, fmt.Errorf("diskgen: invalid mutate options %+v", opt)
	}
	in, err := os.Open(src)
	if err != nil {
		return st, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return st, err
	}
	size := fi.Size()
	st = MutateStats{
		SrcSize:      size,
		DstSize:      size + opt.InsertBytes,
		Blocks:       (size + BlockSize - 1) / BlockSize,
		InsertOffset: size / 2 / BlockSize * BlockSize,
		InsertBytes:  opt.InsertBytes,
	}
	r := rand.New(rand.NewPCG(seed, 0x6d7574617465))
	st.Changed = pick(r, st.Blocks, int64(opt.ChangedFraction*float64(st.Blocks)+0.5))
	st.ChangedBlocks = int64(len(st.Changed))
	mapped := func(off int64) int64 {
		if off >= st.InsertOffset {
			return off + opt.InsertBytes
		}
		return off
	}

	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return st, err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if err := out.Truncate(st.DstSize); err != nil {
		return st, err
	}

	// Copy, block by block, skipping holes and all-zero blocks.
	buf := make([]byte, RegionSize)
	err = dataExtents(in, size, opt.NonSparse, func(start, end int64) error {
		start = start / BlockSize * BlockSize
		for off := start; off < end; off += int64(len(buf)) {
			p := buf[:min(int64(len(buf)), end-off)]
			if _, err := in.ReadAt(p, off); err != nil {
				if err == io.EOF {
					err = errShortCopy
				}
				return fmt.Errorf("diskgen: reading %s: %w", src, err)
			}
			for b := 0; b < len(p); b += BlockSize {
				q := p[b:min(b+BlockSize, len(p))]
				if !opt.NonSparse && isZero(q) {
					continue
				}
				if _, err := out.WriteAt(q, mapped(off+int64(b))); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return st, err
	}

	// The inserted text.
	for k := int64(0); k*RegionSize < opt.InsertBytes; k++ {
		p := buf[:min(RegionSize, opt.InsertBytes-k*RegionSize)]
		fillRegion(p, Text, seed, domainInsert|uint64(k))
		if _, err := out.WriteAt(p, st.InsertOffset+k*RegionSize); err != nil {
			return st, err
		}
	}

	// The changed blocks, half random and half text.
	for _, b := range st.Changed {
		off := b * BlockSize
		p := buf[:min(BlockSize, size-off)]
		if _, err := in.ReadAt(p, off); err != nil {
			return st, fmt.Errorf("diskgen: reading %s: %w", src, err)
		}
		if isZero(p) {
			st.ChangedInHoles++
		}
		kind := Text
		if r.IntN(2) == 0 {
			kind = Random
		}
		fillRegion(p, kind, seed, domainChanged|uint64(b))
		if _, err := out.WriteAt(p, mapped(off)); err != nil {
			return st, err
		}
	}
	return st, nil
}

// pick returns k distinct integers in [0, n) in ascending order (Floyd's
// algorithm).
func pick(r *rand.Rand, n, k int64) []int64 {
	set := make(map[int64]struct{}, k)
	for j := n - k; j < n; j++ {
		t := r.Int64N(j + 1)
		if _, ok := set[t]; ok {
			t = j
		}
		set[t] = struct{}{}
	}
	out := make([]int64, 0, k)
	for v := range set {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

const (
	seekData = 3 // SEEK_DATA on Linux
	seekHole = 4 // SEEK_HOLE on Linux
)

// dataExtents calls fn for each range of f that may hold data, found with
// SEEK_DATA/SEEK_HOLE. When all is set, or the file system cannot tell, the
// whole file is one range.
func dataExtents(f *os.File, size int64, all bool, fn func(start, end int64) error) error {
	if all {
		return fn(0, size)
	}
	for off := int64(0); off < size; {
		start, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			return nil // only a hole remains
		}
		if err != nil {
			if off == 0 && errors.Is(err, syscall.EINVAL) {
				return fn(0, size)
			}
			return err
		}
		end, err := f.Seek(start, seekHole)
		if err != nil {
			return err
		}
		end = min(end, size)
		if err := fn(start, end); err != nil {
			return err
		}
		off = end
	}
	return nil
}
