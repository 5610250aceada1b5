package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/cofferhq/coffer/internal/fsx"
	"github.com/cofferhq/coffer/internal/manifest"
)

// A delta restore (Options.Delta) brings an existing image or device that
// holds an older copy of the disk up to the snapshot: it hashes the blocks
// the output holds (on every core), fetches only the chunks that cover a
// block that differs, and clears the blocks the snapshot has empty that the
// output does not. A file is moved aside (.NAME.coffer-delta beside it)
// while it is updated and gets its name back once it equals the snapshot:
// a delta restore that fails leaves nothing that looks complete, and
// running it again resumes on the copy moved aside (it fetches only what
// still differs). A device is updated in place.

// openDelta opens the existing output of a delta restore of a disk of size
// bytes: a regular file is resized to the disk, a device must be at least
// as large.
func openDelta(path string, size int64) (*output, error) {
	dir, base := filepath.Split(path)
	aside := filepath.Join(dir, "."+base+deltaInfix)
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		// An earlier delta restore that did not finish left the copy aside.
		if ast, aerr := os.Stat(aside); aerr == nil && ast.Mode().IsRegular() {
			return openDeltaFile(path, aside, size)
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s does not exist; --delta updates an existing copy of the disk (without --delta, restore writes a new file)", path)
	case err != nil:
		return nil, fmt.Errorf("checking the output %s: %w", path, err)
	case st.IsDir() || (!st.Mode().IsRegular() && !isBlockDevice(st.Mode())):
		return nil, fmt.Errorf("%s is neither a regular file nor a block device; --delta updates only those", path)
	}
	if !isBlockDevice(st.Mode()) {
		if _, err := os.Stat(aside); err == nil {
			return nil, fmt.Errorf("%s exists beside %s: an earlier delta restore did not finish; remove one of them", aside, path)
		}
		if err := fsx.RenameNoReplace(path, aside); err != nil {
			return nil, fmt.Errorf("moving %s aside while it is updated: %w", path, err)
		}
		return openDeltaFile(path, aside, size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_EXCL, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, fmt.Errorf("device %s is in use (mounted, or held by another program); unmount it before restoring onto it", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	o := &output{f: f, t: deltaTarget{f: f, device: true}, final: path, device: true}
	have, err := f.Seek(0, io.SeekEnd)
	switch {
	case err != nil:
		err = fmt.Errorf("finding the size of %s: %w", path, err)
	case have < size:
		err = fmt.Errorf("device %s holds %d bytes, less than the disk's %d", path, have, size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return o, nil
}

// deltaInfix names the copy a delta restore moved aside: .NAME.coffer-delta.
const deltaInfix = ".coffer-delta"

// openDeltaFile opens the copy moved aside to aside, locked, sized to the
// disk; commit gives it path's name back, abort leaves it for a rerun.
func openDeltaFile(path, aside string, size int64) (*output, error) {
	f, err := os.OpenFile(aside, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", aside, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is being updated by another delta restore: %w", aside, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("resizing %s to the disk's %d bytes: %w", aside, size, err)
	}
	return &output{f: f, t: deltaTarget{f: f}, final: path, tmp: aside, keep: true}, nil
}

// deltaTarget is an existing copy written in place; the blocks the
// snapshot has empty are cleared by the planner (clearBlocks), so Prepare
// only allocates a file under the chunks.
type deltaTarget struct {
	f      *os.File
	device bool
}

func (t deltaTarget) WriteAt(p []byte, off int64) (int, error) { return t.f.WriteAt(p, off) }
func (t deltaTarget) ReadAt(p []byte, off int64) (int, error)  { return t.f.ReadAt(p, off) }
func (t deltaTarget) InPlace() bool                            { return false }
func (t deltaTarget) Name() string                             { return t.f.Name() }

func (t deltaTarget) Prepare(data []Range, from, to int64) error {
	if t.device {
		return nil
	}
	return fileTarget{t.f}.Prepare(data, from, to)
}

// presentBlocks hashes the output's blocks of region ri and reports which
// already equal the snapshot's (m). Regions are hashed in parallel.
func presentBlocks(ctx context.Context, t Target, size int64, first int, maps []*manifest.RegionMap) ([][]bool, error) {
	present := make([][]bool, len(maps))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, m := range maps {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var err error
			present[i], err = hashRegion(t, size, first+i, m)
			return err
		})
	}
	return present, g.Wait()
}

// hashRegion compares the output's blocks of region ri with m's hashes.
func hashRegion(t Target, size int64, ri int, m *manifest.RegionMap) ([]bool, error) {
	base := int64(ri) * manifest.RegionSize
	present := make([]bool, len(m.Blocks))
	buf := make([]byte, 16*manifest.BlockSize)
	for b0 := 0; b0 < len(m.Blocks); b0 += 16 {
		lo := base + int64(b0)*manifest.BlockSize
		n := min(int64(len(buf)), size-lo)
		if _, err := t.ReadAt(buf[:n], lo); err != nil {
			return nil, fmt.Errorf("reading %s at %d to compare it with the snapshot: %w", t.Name(), lo, err)
		}
		for b := b0; b < min(b0+16, len(m.Blocks)); b++ {
			o := int64(b-b0) * manifest.BlockSize
			present[b] = manifest.BlockHash(buf[o:min(o+manifest.BlockSize, n)]) == m.Blocks[b]
		}
	}
	return present, nil
}

// needed reports whether an extent at region offset off, length n, covers
// a block the output does not hold yet.
func needed(present []bool, off, n int64) bool {
	for b := off / manifest.BlockSize; b <= (off+n-1)/manifest.BlockSize; b++ {
		if !present[b] {
			return true
		}
	}
	return false
}

// staleHoles returns the blocks of a region that the snapshot has empty
// (no extent touches them) but the output does not.
func staleHoles(m *manifest.RegionMap, present []bool) []int32 {
	covered := make([]bool, len(m.Blocks))
	for _, e := range m.Extents {
		for b := int64(e.Offset) / manifest.BlockSize; b <= (int64(e.Offset)+int64(e.Length)-1)/manifest.BlockSize; b++ {
			covered[b] = true
		}
	}
	var out []int32
	for b := range m.Blocks {
		if !covered[b] && !present[b] {
			out = append(out, int32(b))
		}
	}
	return out
}

// clearBlocks makes the given blocks of region ri read as zeros: holes
// punched in a file, zeros on a device.
func clearBlocks(f *os.File, device bool, size int64, ri int, blocks []int32) error {
	base := int64(ri) * manifest.RegionSize
	for _, b := range blocks {
		off := base + int64(b)*manifest.BlockSize
		n := min(manifest.BlockSize, size-off)
		if device {
			if err := zeroRange(f, off, n); err != nil {
				return err
			}
			continue
		}
		err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		if err != nil {
			if err := writeZeros(f, off, n); err != nil {
				return err
			}
		}
	}
	return nil
}
