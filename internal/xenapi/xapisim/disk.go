package xapisim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// BlockSize is the CBT and layer granularity: 64 KiB.
const BlockSize = 64 << 10

// blocksOf is the number of blocks covering size bytes.
func blocksOf(size int64) int64 { return (size + BlockSize - 1) / BlockSize }

// bitmap has one bit per block, most significant bit first (xapi's CBT
// bitmap layout).
type bitmap []byte

func (b bitmap) has(i int64) bool {
	return i>>3 < int64(len(b)) && b[i>>3]&(0x80>>(i&7)) != 0
}

// set sets bit i, growing b when needed.
func (b *bitmap) set(i int64) {
	for int64(len(*b)) <= i>>3 {
		*b = append(*b, 0)
	}
	(*b)[i>>3] |= 0x80 >> (i & 7)
}

// or sets every bit of o in b.
func (b *bitmap) or(o bitmap) {
	for len(*b) < len(o) {
		*b = append(*b, 0)
	}
	for i, x := range o {
		(*b)[i] |= x
	}
}

// sized returns b cut or zero-padded to the bitmap length of size bytes.
func (b bitmap) sized(size int64) bitmap {
	n := (blocksOf(size) + 7) / 8
	out := make(bitmap, n)
	copy(out, b)
	if rem := blocksOf(size) % 8; rem != 0 && n > 0 {
		out[n-1] &= byte(0xff << (8 - rem))
	}
	return out
}

func (s *Sim) layerPath(id string) string { return filepath.Join(s.Dir, "layers", id+".img") }
func (s *Sim) layerBits(id string) string { return filepath.Join(s.Dir, "layers", id+".bits") }
func (s *Sim) cbtBits(chain string, epoch int) string {
	return filepath.Join(s.Dir, "cbt", fmt.Sprintf("%s.%d.bits", chain, epoch))
}

// newLayer creates an empty layer: a sparse file of size bytes and an empty
// bitmap.
func (s *Sim) newLayer(size int64) (string, error) {
	id := newUUID()
	if err := os.MkdirAll(filepath.Join(s.Dir, "layers"), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(s.layerPath(id), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return "", err
	}
	return id, writeBitmap(s.layerBits(id), nil)
}

// readBitmap reads a bitmap file; a missing file is an empty bitmap.
func readBitmap(path string) (bitmap, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func writeBitmap(path string, b bitmap) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Dir(path), filepath.Base(path), b)
}

// chainReader reads a VDI's chain of layers: a block comes from the first
// layer (top first) whose bitmap has it, else it is zeros. The bitmaps are
// read once, at open.
type chainReader struct {
	files []*os.File
	bits  []bitmap
	size  int64
}

func (s *Sim) openChain(chain []string, size int64) (*chainReader, error) {
	c := &chainReader{size: size}
	for _, id := range chain {
		f, err := os.Open(s.layerPath(id))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("disk layer %s: %w", id, err)
		}
		c.files = append(c.files, f)
		b, err := readBitmap(s.layerBits(id))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("disk layer %s bitmap: %w", id, err)
		}
		c.bits = append(c.bits, b)
	}
	return c, nil
}

// Size is the VDI's virtual size.
func (c *chainReader) Size() int64 { return c.size }

// Close closes the layer files.
func (c *chainReader) Close() error {
	for _, f := range c.files {
		f.Close()
	}
	c.files = nil
	return nil
}

// owner is the index of the layer holding block i, or -1.
func (c *chainReader) owner(i int64) int {
	for l, b := range c.bits {
		if b.has(i) {
			return l
		}
	}
	return -1
}

// ReadAt reads the disk as the chain holds it.
func (c *chainReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= c.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > c.size-off {
		p = p[:c.size-off]
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		blk := pos / BlockSize
		end := min(int64(len(p)), int64(n)+(blk+1)*BlockSize-pos)
		piece := p[n:end]
		if l := c.owner(blk); l >= 0 {
			// A layer made before a resize may end inside its last block.
			got, err := c.files[l].ReadAt(piece, pos)
			if err != nil && !errors.Is(err, io.EOF) {
				return n, err
			}
			clear(piece[got:])
		} else {
			clear(piece)
		}
		n = int(end)
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// blockWriter writes whole blocks into a VDI's top layer and records them
// in the layer's bitmap and, when CBT is on, in the current CBT epoch.
type blockWriter struct {
	f        *os.File
	bits     bitmap
	cbt      bitmap
	bitsPath string
	cbtPath  string
}

func (s *Sim) openWriter(v *VDI) (*blockWriter, error) {
	if len(v.Chain) == 0 {
		return nil, fmt.Errorf("VDI %s holds no data (type %s)", v.UUID, v.Type)
	}
	top := v.Chain[0]
	f, err := os.OpenFile(s.layerPath(top), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	w := &blockWriter{f: f, bitsPath: s.layerBits(top)}
	if w.bits, err = readBitmap(w.bitsPath); err != nil {
		f.Close()
		return nil, err
	}
	if v.CBTEnabled && v.CBTChain != "" {
		w.cbtPath = s.cbtBits(v.CBTChain, v.CBTEpoch)
		if w.cbt, err = readBitmap(w.cbtPath); err != nil {
			f.Close()
			return nil, err
		}
	}
	return w, nil
}

// write writes block i (len(data) <= BlockSize).
func (w *blockWriter) write(i int64, data []byte) error {
	if _, err := w.f.WriteAt(data, i*BlockSize); err != nil {
		return err
	}
	w.bits.set(i)
	if w.cbtPath != "" {
		w.cbt.set(i)
	}
	return nil
}

// close saves the bitmaps.
func (w *blockWriter) close() error {
	err := w.f.Close()
	if err == nil {
		err = writeBitmap(w.bitsPath, w.bits)
	}
	if err == nil && w.cbtPath != "" {
		err = writeBitmap(w.cbtPath, w.cbt)
	}
	return err
}

// removeUnusedLayers deletes layer files whose id is not in used.
func (s *Sim) removeUnusedLayers(used map[string]bool) error {
	ents, err := os.ReadDir(filepath.Join(s.Dir, "layers"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range ents {
		name := e.Name()
		id := strings.TrimSuffix(strings.TrimSuffix(name, ".img"), ".bits")
		if id != name && !used[id] {
			if err := os.Remove(filepath.Join(s.Dir, "layers", name)); err != nil {
				return err
			}
		}
	}
	return nil
}
