package xapisim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
)

// DiskRef names a VM's disk for the command line: VM name or uuid, and the
// disk's userdevice.
type DiskRef struct {
	VM string
	N  int
}

func (d DiskRef) String() string { return fmt.Sprintf("disk %d of VM %q", d.N, d.VM) }

// RandomBlocks picks round(share% of blocks) distinct block numbers of a
// disk of size bytes, by seed, in increasing order.
func RandomBlocks(size int64, percent float64, seed uint64) ([]int64, error) {
	if percent < 0 || percent > 100 {
		return nil, fmt.Errorf("--random-blocks %v: want a share between 0 and 100", percent)
	}
	n := blocksOf(size)
	count := int64(float64(n)*percent/100 + 0.5)
	r := rand.New(rand.NewPCG(seed, 0x78617069))
	picked := map[int64]bool{}
	out := make([]int64, 0, count)
	for int64(len(out)) < count {
		b := r.Int64N(n)
		if !picked[b] {
			picked[b] = true
			out = append(out, b)
		}
	}
	slices.Sort(out)
	return out, nil
}

// blockData is the seeded random content of block b.
func blockData(seed uint64, b int64, buf []byte) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(b))
	_, _ = rand.NewChaCha8(key).Read(buf)
}

// WriteBlocks is a guest writing the given 64 KiB blocks with seeded random
// bytes (the last block of a disk may be short). CBT records them.
func (s *Sim) WriteBlocks(d DiskRef, blocks []int64, seed uint64) error {
	return s.Update(func(st *State) error {
		_, v, err := st.findDisk(d.VM, d.N)
		if err != nil {
			return err
		}
		for _, b := range blocks {
			if b < 0 || b >= blocksOf(v.VirtualSize) {
				return fmt.Errorf("block %d is outside %s (%d blocks of 64 KiB)", b, d, blocksOf(v.VirtualSize))
			}
		}
		w, err := s.openWriter(v)
		if err != nil {
			return err
		}
		buf := make([]byte, BlockSize)
		for _, b := range blocks {
			data := buf[:min(BlockSize, v.VirtualSize-b*BlockSize)]
			blockData(seed, b, data)
			if err := w.write(b, data); err != nil {
				w.close()
				return err
			}
		}
		return w.close()
	})
}

// DiskSize is the virtual size of a disk.
func (s *Sim) DiskSize(d DiskRef) (int64, error) {
	var size int64
	err := s.View(func(st *State) error {
		_, v, err := st.findDisk(d.VM, d.N)
		if err == nil {
			size = v.VirtualSize
		}
		return err
	})
	return size, err
}

// Import writes an image file onto a disk as a guest would: afterwards the
// disk reads as the image (zeros past its end). Only blocks that change are
// written (and recorded by CBT).
func (s *Sim) Import(d DiskRef, image string) error {
	img, err := os.Open(image)
	if err != nil {
		return fmt.Errorf("disk image: %w", err)
	}
	defer img.Close()
	fi, err := img.Stat()
	if err != nil {
		return err
	}
	return s.Update(func(st *State) error {
		_, v, err := st.findDisk(d.VM, d.N)
		if err != nil {
			return err
		}
		if fi.Size() > v.VirtualSize {
			return fmt.Errorf("image %s (%d bytes) is larger than %s (%d bytes): resize the disk first", image, fi.Size(), d, v.VirtualSize)
		}
		return s.importInto(v, img)
	})
}

func (s *Sim) importInto(v *VDI, img io.ReaderAt) error {
	return s.writeBlocks(v, blocksOf(v.VirtualSize), func(b int64, data []byte, cur *chainReader) (bool, error) {
		n, err := img.ReadAt(data, b*BlockSize)
		if err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("read image: %w", err)
		}
		clear(data[n:])
		return !allZero(data) || cur.owner(b) >= 0, nil
	})
}

// writeBlocks writes the first n blocks of v: fill gets each block's
// buffer and the disk's chain as it was, and says whether to write it.
func (s *Sim) writeBlocks(v *VDI, n int64, fill func(b int64, data []byte, cur *chainReader) (bool, error)) error {
	cur, err := s.openChain(v.Chain, v.VirtualSize)
	if err != nil {
		return err
	}
	defer cur.Close()
	w, err := s.openWriter(v)
	if err != nil {
		return err
	}
	buf := make([]byte, BlockSize)
	for b := int64(0); b < n; b++ {
		data := buf[:min(BlockSize, v.VirtualSize-b*BlockSize)]
		write, err := fill(b, data, cur)
		if err == nil && write {
			err = w.write(b, data)
		}
		if err != nil {
			w.close()
			return err
		}
	}
	return w.close()
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// Export writes a disk as it is now into a sparse file of exactly its size.
func (s *Sim) Export(d DiskRef, file string) error {
	var r *chainReader
	err := s.View(func(st *State) error {
		_, v, err := st.findDisk(d.VM, d.N)
		if err != nil {
			return err
		}
		r, err = s.openChain(v.Chain, v.VirtualSize)
		return err
	})
	if err != nil {
		return err
	}
	defer r.Close()
	return writeSparse(r, file)
}

// writeSparse copies a chain into a sparse file, skipping zero blocks.
func writeSparse(r *chainReader, file string) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("export file: %w", err)
	}
	if err := f.Truncate(r.size); err != nil {
		f.Close()
		return err
	}
	buf := make([]byte, BlockSize)
	for b := range blocksOf(r.size) {
		if r.owner(b) < 0 {
			continue
		}
		n, err := r.ReadAt(buf, b*BlockSize)
		if err != nil && !errors.Is(err, io.EOF) {
			f.Close()
			return err
		}
		if !allZero(buf[:n]) {
			if _, err := f.WriteAt(buf[:n], b*BlockSize); err != nil {
				f.Close()
				return err
			}
		}
	}
	return f.Close()
}

// Resize grows a disk to size bytes.
func (s *Sim) Resize(d DiskRef, size int64) error {
	return s.Update(func(st *State) error {
		_, v, err := st.findDisk(d.VM, d.N)
		if err != nil {
			return err
		}
		if size < v.VirtualSize {
			return fmt.Errorf("%s is %d bytes: a disk can only grow", d, v.VirtualSize)
		}
		if err := os.Truncate(s.layerPath(v.Chain[0]), size); err != nil {
			return err
		}
		v.VirtualSize = size
		return nil
	})
}

// SetCBT turns CBT on or off for a disk (as VDI.enable_cbt/disable_cbt).
func (s *Sim) SetCBT(d DiskRef, on bool) error {
	return s.Update(func(st *State) error {
		ref, _, err := st.findDisk(d.VM, d.N)
		if err != nil {
			return err
		}
		if on {
			return s.enableCBT(st, ref)
		}
		return st.disableCBT(ref)
	})
}

// Migrate is a storage migration of a disk: the VDI gets a new uuid and
// ref, and CBT, when on, restarts on a new chain, so earlier snapshots and
// their metadata are unrelated to it.
func (s *Sim) Migrate(d DiskRef) (string, error) {
	var uuid string
	err := s.Update(func(st *State) error {
		old, v, err := st.findDisk(d.VM, d.N)
		if err != nil {
			return err
		}
		u, ref := newRef()
		uuid = u
		v.UUID = u
		delete(st.VDIs, old)
		st.VDIs[ref] = v
		for _, b := range st.VBDs {
			if b.VDI == old {
				b.VDI = ref
			}
		}
		for _, o := range st.VDIs {
			if o.SnapshotOf == old {
				o.SnapshotOf = ref
			}
		}
		if v.CBTEnabled {
			v.CBTChain, v.CBTEpoch = newUUID(), 0
		}
		return nil
	})
	return uuid, err
}

// exportVDI writes any VDI holding data into a sparse file.
func (s *Sim) exportVDI(ref, file string) error {
	var r *chainReader
	err := s.View(func(st *State) error {
		v := st.VDIs[ref]
		if v == nil {
			return fmt.Errorf("no VDI %s", ref)
		}
		var err error
		r, err = s.openChain(v.Chain, v.VirtualSize)
		return err
	})
	if err != nil {
		return err
	}
	defer r.Close()
	return writeSparse(r, file)
}

// writeStream writes n bytes of r onto v from offset 0, block by block; a
// last partial block keeps the rest of what the disk held there.
func (s *Sim) writeStream(v *VDI, r io.Reader, n int64) error {
	return s.writeBlocks(v, (n+BlockSize-1)/BlockSize, func(b int64, data []byte, cur *chainReader) (bool, error) {
		if _, err := cur.ReadAt(data, b*BlockSize); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		if _, err := io.ReadFull(r, data[:min(int64(len(data)), n-b*BlockSize)]); err != nil {
			return false, fmt.Errorf("the body ended early: %w", err)
		}
		return true, nil
	})
}
