package restore

import (
	"context"
	"errors"
	"sync"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/manifest"
)

// VerifyOnlyName names the verify-only target in results and evidence.
const VerifyOnlyName = "verify-only"

// Verify restores the disk into nothing: every chunk is fetched, opened
// and checked exactly as Run checks it (blocks inside one chunk hashed as
// written, the others "read back", then the whole-disk digest), but no byte
// is written to disk. It is what a restore drill runs when it only has to
// prove that the snapshot can be restored. Options.ReadBack and Delta do
// not apply (nothing is written to read back from); NoVerify is refused.
// The Result counts as Written the plaintext that was checked.
func (rs *Restorer) Verify(ctx context.Context) (*Result, error) {
	if rs.opt.NoVerify {
		return nil, errors.New("a verify-only restore with verification off checks nothing; drop NoVerify")
	}
	if rs.opt.Delta {
		return nil, errors.New("a verify-only restore has no existing copy to update; drop Delta")
	}
	return rs.verifyInto(ctx, newVerifyTarget(rs.disk.Size))
}

// verifyInto runs a verify-only restore through vt.
func (rs *Restorer) verifyInto(ctx context.Context, vt *verifyTarget) (*Result, error) {
	start := clock.Start()
	rs.opt.ReadBack = false
	res, err := rs.restoreInto(ctx, &output{t: vt})
	if err != nil {
		return nil, err
	}
	res.Duration = start.Elapsed()
	return res, nil
}

// verifyTarget is the target of a verify-only restore. A block wholly
// inside one write (one chunk) was hashed by the pipeline as it was written
// (checkWhole) and is not read back, so it is dropped at once. Only the
// blocks that several writes (or a write and a hole) share are kept, from
// their first write until they are read back (verifyRegion reads each of
// them once), so its memory depends on the regions in flight, not on the
// disk's size.
type verifyTarget struct {
	size int64
	mu   sync.Mutex
	// partial holds the blocks written in part, by block number; missing
	// bytes are zero, as in a sparse file.
	partial map[int64][]byte
	held    int64 // bytes held in partial now
	peak    int64 // the most bytes partial ever held
}

func newVerifyTarget(size int64) *verifyTarget {
	return &verifyTarget{size: size, partial: map[int64][]byte{}}
}

func (t *verifyTarget) InPlace() bool                       { return false }
func (t *verifyTarget) Name() string                        { return VerifyOnlyName }
func (t *verifyTarget) Prepare(_ []Range, _, _ int64) error { return nil }

// blockLen is the length of block b (the disk's last block may be short).
func (t *verifyTarget) blockLen(b int64) int64 {
	return min(manifest.BlockSize, t.size-b*manifest.BlockSize)
}

// WriteAt keeps the parts of p that fall into blocks p does not cover
// whole.
func (t *verifyTarget) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > t.size {
		return 0, errors.New("verify-only target: write outside the disk")
	}
	end := off + int64(len(p))
	t.mu.Lock()
	defer t.mu.Unlock()
	for b := off / manifest.BlockSize; b*manifest.BlockSize < end; b++ {
		lo := b * manifest.BlockSize
		hi := lo + t.blockLen(b)
		if off <= lo && end >= hi {
			continue // hashed as written; never read back
		}
		buf := t.partial[b]
		if buf == nil {
			buf = make([]byte, hi-lo)
			t.partial[b] = buf
			t.held += hi - lo
			t.peak = max(t.peak, t.held)
		}
		from, to := max(off, lo), min(end, hi)
		copy(buf[from-lo:to-lo], p[from-off:to-off])
	}
	return len(p), nil
}

// ReadAt returns what was written to the blocks it reads, zeros where
// nothing was, and frees every block it reads whole: the pipeline reads
// each kept block back exactly once.
func (t *verifyTarget) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > t.size {
		return 0, errors.New("verify-only target: read outside the disk")
	}
	end := off + int64(len(p))
	t.mu.Lock()
	defer t.mu.Unlock()
	for b := off / manifest.BlockSize; b*manifest.BlockSize < end; b++ {
		lo := b * manifest.BlockSize
		hi := lo + t.blockLen(b)
		from, to := max(off, lo), min(end, hi)
		dst := p[from-off : to-off]
		if buf := t.partial[b]; buf != nil {
			copy(dst, buf[from-lo:to-lo])
		} else {
			clear(dst)
		}
		if from == lo && to == hi && t.partial[b] != nil {
			delete(t.partial, b)
			t.held -= hi - lo
		}
	}
	return len(p), nil
}

// peakHeld is the most bytes the target held at once.
func (t *verifyTarget) peakHeld() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peak
}
