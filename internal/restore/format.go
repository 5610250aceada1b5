package restore

import (
	"context"
	"fmt"
	"os"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/imgfmt"
	"github.com/cofferhq/coffer/internal/manifest"
)

// Format is what a restore writes: a raw disk image (sparse), or a VHD or
// qcow2 image laid out over the disk's data.
type Format string

const (
	FormatRaw   Format = "raw"
	FormatVHD   Format = "vhd"
	FormatQCOW2 Format = "qcow2"
)

// ParseFormat checks a format name ("" is raw).
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case "", FormatRaw:
		return FormatRaw, nil
	case FormatVHD, FormatQCOW2:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q: raw, vhd or qcow2", s)
}

// imageTarget is an image format: writes land where the format's layout
// maps them; Prepare reserves the file's space under the chunks.
type imageTarget struct {
	img  imgfmt.Image
	name string
}

func (t imageTarget) WriteAt(p []byte, off int64) (int, error) { return t.img.WriteAt(p, off) }
func (t imageTarget) ReadAt(p []byte, off int64) (int, error)  { return t.img.ReadAt(p, off) }
func (t imageTarget) InPlace() bool                            { return false }
func (t imageTarget) Name() string                             { return t.name }

func (t imageTarget) Prepare(data []Range, _, _ int64) error {
	for _, r := range data {
		if err := t.img.Allocate(r.Off, r.Len); err != nil {
			return err
		}
	}
	return nil
}

// openImage prepares a restore into an image of the options' format at
// path: the layout follows the disk's data (every region map is read
// first), and the image is written under a temporary name beside path, as
// a raw restore is.
func (rs *Restorer) openImage(ctx context.Context, path string) (*output, error) {
	regions, err := rs.r.DiskRegions(ctx, rs.disk)
	if err != nil {
		return nil, err
	}
	data, err := rs.dataExtents(ctx, regions)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(path); err == nil && isBlockDevice(st.Mode()) {
		return nil, fmt.Errorf("%s is a block device; a %s image is written to a file (restore onto a device with --format raw)", path, rs.opt.Format)
	}
	out, err := openOutput(path, 0, rs.opt)
	if err != nil {
		return nil, err
	}
	var img imgfmt.Image
	switch rs.opt.Format {
	case FormatVHD:
		img, err = imgfmt.NewVHD(out.f, rs.disk.Size, data, imgfmt.VHDOptions{})
	case FormatQCOW2:
		img, err = imgfmt.NewQCOW2(out.f, rs.disk.Size, data, imgfmt.QCOW2Options{})
	}
	if err != nil {
		out.abort()
		return nil, fmt.Errorf("restoring to %s: %w", path, err)
	}
	out.img = img
	out.t = imageTarget{img: img, name: out.tmp}
	return out, nil
}

// dataExtents reads every region map of the disk, a window at a time, and
// returns the ranges its chunks cover, in order and merged.
func (rs *Restorer) dataExtents(ctx context.Context, regions []crypto.ID) ([]imgfmt.Extent, error) {
	var out []imgfmt.Extent
	for first := 0; first < len(regions); first += windowRegions {
		win := regions[first:min(first+windowRegions, len(regions))]
		maps := make([]*manifest.RegionMap, len(win))
		err := rs.loadMaps(ctx, win, first, func(i int, m *manifest.RegionMap) error { maps[i] = m; return nil })
		if err != nil {
			return nil, err
		}
		w := &window{first: first, maps: maps}
		for _, r := range w.dataRanges() {
			if n := len(out); n > 0 && out[n-1].End() == r.Off {
				out[n-1].Len += r.Len
				continue
			}
			out = append(out, imgfmt.Extent{Off: r.Off, Len: r.Len})
		}
	}
	return out, nil
}
