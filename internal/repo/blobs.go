package repo

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/index"
	"github.com/cofferhq/coffer/internal/store"
)

// Blobs are read in coalesced ranges: every ranged read costs the store
// about a millisecond of CPU (MinIO) and a round trip, so the blobs wanted
// from one pack are fetched together, reading through short gaps.
const (
	// MaxGap is the longest run of unwanted bytes read through rather than
	// starting another ranged read: reading 1 MiB through costs a store
	// about as much as a new request.
	MaxGap = 1 << 20
	// MaxRange bounds one ranged read. Readers stream a range blob by blob,
	// so its length costs no memory; a 16 MiB pack is usually one read.
	MaxRange = 64 << 20
	// minBlobBuf is the least a streaming reader's blob buffer holds; it
	// also serves to read past gaps.
	minBlobBuf = 1 << 20
)

// Ranges groups items by the pack their blob is in (loc) and splits each
// pack's items, sorted by offset, into runs that one ranged read fetches:
// no gap between consecutive blobs longer than maxGap, no run longer than
// maxRange. Runs come out pack by pack.
func Ranges[T any](items []T, loc func(T) index.Location, maxGap, maxRange int64) [][]T {
	byPack := map[[32]byte][]T{}
	var packs [][32]byte
	for _, it := range items {
		p := loc(it).Pack
		if _, ok := byPack[p]; !ok {
			packs = append(packs, p)
		}
		byPack[p] = append(byPack[p], it)
	}
	var runs [][]T
	for _, p := range packs {
		list := byPack[p]
		slices.SortFunc(list, func(a, b T) int { return cmp.Compare(loc(a).Offset, loc(b).Offset) })
		for len(list) > 0 {
			first := loc(list[0])
			n := 1
			for ; n < len(list); n++ {
				prev, cur := loc(list[n-1]), loc(list[n])
				gap := int64(cur.Offset) - (int64(prev.Offset) + int64(prev.Length))
				span := int64(cur.Offset) + int64(cur.Length) - int64(first.Offset)
				if gap > maxGap || span > maxRange {
					break
				}
			}
			runs = append(runs, list[:n:n])
			list = list[n:]
		}
	}
	return runs
}

// StreamBlobs reads one run of blobs of a pack (from Ranges) with a single
// ranged read and calls fn with each item and its sealed bytes as they
// arrive, so only one blob is held at a time. *buf is the blob buffer,
// grown as needed and kept for the next call; the sealed bytes are valid
// only during fn, which may overwrite them.
//
// A store that retries a broken download calls the reader again from the
// start of the range; items fn already took are read past, not handed over
// twice. An error from fn ends the read and is not retried (the bytes were
// read, so reading them again cannot help). StreamBlobs returns the number
// of bytes the range spans.
func StreamBlobs[T any](ctx context.Context, st store.Store, run []T, loc func(T) index.Location, buf *[]byte, fn func(T, []byte) error) (int64, error) {
	first, last := loc(run[0]), loc(run[len(run)-1])
	start := int64(first.Offset)
	length := int64(last.Offset) + int64(last.Length) - start
	name := PackName(first.Pack)
	if cap(*buf) < minBlobBuf {
		*buf = make([]byte, minBlobBuf)
	}
	done := 0 // items handed to fn, across retries of the download
	var ferr error
	err := st.Get(ctx, name, start, length, func(r io.Reader) error {
		pos := start
		for i, it := range run {
			l := loc(it)
			if int64(l.Offset) < pos {
				return &store.PermanentError{Err: fmt.Errorf("%s: blobs at %d and %d overlap: a run must hold each blob once, in order", name, pos, l.Offset)}
			}
			if err := skip(r, int64(l.Offset)-pos, *buf); err != nil {
				return err
			}
			if cap(*buf) < int(l.Length) {
				*buf = make([]byte, l.Length)
			}
			sealed := (*buf)[:l.Length]
			if _, err := io.ReadFull(r, sealed); err != nil {
				return err
			}
			pos = int64(l.Offset) + int64(l.Length)
			if i < done {
				continue
			}
			if ferr = fn(it, sealed); ferr != nil {
				return &store.PermanentError{Err: ferr}
			}
			done = i + 1
		}
		return nil
	})
	if ferr != nil {
		return length, ferr
	}
	if err != nil {
		return length, fmt.Errorf("reading pack %s: %w", name, err)
	}
	return length, nil
}

// skip reads and drops n bytes of r, through buf.
func skip(r io.Reader, n int64, buf []byte) error {
	for n > 0 {
		k, err := io.ReadFull(r, buf[:min(int64(len(buf)), n)])
		n -= int64(k)
		if err != nil {
			return err
		}
	}
	return nil
}

// LoadBlobs reads the blobs ids through the index, in coalesced ranged
// reads of which at most workers run at once, and calls fn with each
// position in ids and the blob's plaintext, checked against its ID. A blob
// named more than once is read once and its plaintext passed for each of
// its positions, so fn must not change it; fn may be called concurrently.
// Metadata (region maps) is loaded this way: a window of a restore needs
// many small blobs that backups wrote next to each other.
func (r *Repo) LoadBlobs(ctx context.Context, ids []crypto.ID, workers int, fn func(i int, plain []byte) error) error {
	type item struct {
		id  crypto.ID
		pos []int // its positions in ids
		loc index.Location
	}
	var items []item
	seen := map[crypto.ID]int{} // ID -> index in items
	for i, id := range ids {
		if k, ok := seen[id]; ok {
			items[k].pos = append(items[k].pos, i)
			continue
		}
		loc, err := r.Locate(ctx, id)
		if err != nil {
			return err
		}
		seen[id] = len(items)
		items = append(items, item{id: id, pos: []int{i}, loc: loc})
	}
	where := func(it item) index.Location { return it.loc }
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(workers, 1))
	for _, run := range Ranges(items, where, MaxGap, MaxRange) {
		g.Go(func() error {
			var buf []byte
			h := r.keys.NewIDHasher()
			_, err := StreamBlobs(gctx, r.st, run, where, &buf, func(it item, sealed []byte) error {
				plain, err := r.OpenBlob(h, it.loc.Type, it.loc.Flags, it.id, sealed, nil, blobWhere(it.id, it.loc))
				if err != nil {
					return err
				}
				for _, i := range it.pos {
					if err := fn(i, plain); err != nil {
						return err
					}
				}
				return nil
			})
			return err
		})
	}
	return g.Wait()
}

// scatteredGap is the longest gap BlobReader reads through: its blobs are
// few and scattered (the chunks around changed blocks), so a gap is not
// worth reading unless it is much smaller than a blob.
const scatteredGap = 16 << 10

// BlobReader reads blobs back for a caller that checks their plaintext
// itself, reusing its buffers from call to call. Not safe for concurrent
// use: give each goroutine its own.
type BlobReader struct {
	r      *Repo
	sealed []byte
	bufs   BlobBuffers
}

// NewBlobReader returns a BlobReader of r.
func (r *Repo) NewBlobReader() *BlobReader { return &BlobReader{r: r} }

// ReadUnchecked reads the blobs ids through the index in coalesced ranged
// reads, one after another, and calls fn with each position in ids and the
// blob's plaintext, which is valid only during the call. It does not check
// a plaintext against its ID: only for callers that check it another way
// (a changed-block backup compares every block it uses with the block's
// recorded hash). The AEAD still authenticates each blob and binds it to
// its type and ID.
func (b *BlobReader) ReadUnchecked(ctx context.Context, ids []crypto.ID, fn func(i int, plain []byte) error) error {
	type item struct {
		i   int
		id  crypto.ID
		loc index.Location
	}
	items := make([]item, 0, len(ids))
	for i, id := range ids {
		loc, err := b.r.Locate(ctx, id)
		if err != nil {
			return err
		}
		items = append(items, item{i: i, id: id, loc: loc})
	}
	where := func(it item) index.Location { return it.loc }
	for _, run := range Ranges(items, where, scatteredGap, MaxRange) {
		_, err := StreamBlobs(ctx, b.r.st, run, where, &b.sealed, func(it item, sealed []byte) error {
			plain, err := b.r.OpenBlobInPlace(nil, it.loc.Type, it.loc.Flags, it.id, sealed, &b.bufs, blobWhere(it.id, it.loc))
			if err != nil {
				return err
			}
			return fn(it.i, plain)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
