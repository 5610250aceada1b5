package diskread

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/index"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
)

// Chunks next to each other in a pack are fetched with one ranged read,
// reading through gaps of at most fetchGap bytes: a reader's chunks are
// near each other on the disk, and usually in the store too.
const (
	fetchGap   = 256 << 10
	fetchRange = 16 << 20
)

// fetchItem is one chunk a read fetches itself.
type fetchItem struct {
	want
	loc  index.Location
	call *call[[]byte]
	done bool
}

func itemLoc(it *fetchItem) index.Location { return it.loc }

// chunkData returns the plaintexts of the chunks wants, in order: cached
// ones at once, ones another read is fetching when it has them, and the
// rest fetched here.
func (d *Disk) chunkData(ctx context.Context, wants []want) ([][]byte, error) {
	out := make([][]byte, len(wants))
	calls := make([]*call[[]byte], len(wants))
	var mine []*fetchItem
	for i, w := range wants {
		if b, ok := d.chunks.get(w.id); ok {
			out[i] = b
			d.stats.hits.Add(1)
			continue
		}
		c, own := d.flying.claim(w.id)
		calls[i] = c
		switch {
		case !own:
			d.stats.hits.Add(1)
		default:
			if b, ok := d.chunks.get(w.id); ok { // cached between the miss and the claim
				d.flying.finish(w.id, c, b, nil)
				d.stats.hits.Add(1)
				continue
			}
			d.stats.misses.Add(1)
			mine = append(mine, &fetchItem{want: w, call: c})
		}
	}
	if len(mine) > 0 && !d.goBackground(func() { d.fetch(mine) }) {
		for _, it := range mine {
			d.fail(it, d.alive())
		}
	}
	for i, c := range calls {
		if c == nil {
			continue
		}
		b, err := c.wait(ctx)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// fetch reads the chunks items from the store, coalescing neighbours in a
// pack into one ranged read, and finishes each item's call (caching good
// plaintexts). It runs under the Disk's context, not a reader's: other
// reads may be waiting for the same chunks.
func (d *Disk) fetch(items []*fetchItem) {
	located := items[:0:0]
	for _, it := range items {
		loc, err := d.r.Locate(d.ctx, it.id)
		if err != nil {
			d.fail(it, fmt.Errorf("%s: chunk %s at disk offset %d: %w", d.name, it.id, it.off, err))
			continue
		}
		it.loc = loc
		located = append(located, it)
	}
	var g errgroup.Group
	g.SetLimit(d.opt.Workers)
	for _, run := range repo.Ranges(located, itemLoc, fetchGap, fetchRange) {
		g.Go(func() error {
			d.fetchRun(run)
			return nil
		})
	}
	_ = g.Wait() // errors are delivered through the items' calls
}

// fetchRun reads one run of chunks with one ranged read.
func (d *Disk) fetchRun(run []*fetchItem) {
	var buf []byte
	h := d.r.Keys().NewIDHasher()
	pack := repo.PackName(run[0].loc.Pack)
	n, err := repo.StreamBlobs(d.ctx, d.r.Store(), run, itemLoc, &buf, func(it *fetchItem, sealed []byte) error {
		plain, err := d.openChunk(h, it, sealed, pack)
		if err != nil {
			// Only this chunk is bad: the next ones in the range are
			// still read.
			d.fail(it, err)
			return nil
		}
		d.chunks.add(it.id, plain)
		d.stats.fetchedChunks.Add(1)
		it.done = true
		d.flying.finish(it.id, it.call, plain, nil)
		return nil
	})
	d.stats.fetchedBytes.Add(n)
	if err == nil {
		return
	}
	for _, it := range run {
		if !it.done {
			d.fail(it, d.fetchError(it, pack, err))
		}
	}
}

// openChunk decrypts a chunk and checks it against its keyed ID and the
// length its region map gives it.
func (d *Disk) openChunk(h *crypto.IDHasher, it *fetchItem, sealed []byte, pack string) ([]byte, error) {
	where := fmt.Sprintf("%s: chunk %s (disk offset %d) in pack %s", d.name, it.id, it.off, pack)
	plain, err := d.r.OpenBlob(h, it.loc.Type, it.loc.Flags, it.id, sealed, nil, where)
	if err != nil {
		return nil, fmt.Errorf("%w; the pack is damaged: run coffer check --read-data, or read another snapshot", err)
	}
	if len(plain) != int(it.length) {
		return nil, fmt.Errorf("%s: chunk is %d bytes but the region map says %d (the snapshot is damaged: run coffer check)", where, len(plain), it.length)
	}
	return plain, nil
}

// fetchError explains why a ranged read of pack failed for chunk it.
func (d *Disk) fetchError(it *fetchItem, pack string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s: chunk %s at disk offset %d: pack %s is missing from the store (%w): the repository has lost data; run coffer check and read another snapshot",
			d.name, it.id, it.off, pack, err)
	}
	if d.ctx.Err() != nil {
		return d.alive()
	}
	return fmt.Errorf("%s: chunk %s at disk offset %d: %w", d.name, it.id, it.off, err)
}

// fail finishes a chunk's call with err, once.
func (d *Disk) fail(it *fetchItem, err error) {
	if it.done {
		return
	}
	it.done = true
	d.flying.finish(it.id, it.call, nil, err)
}
