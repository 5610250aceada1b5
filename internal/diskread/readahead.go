package diskread

import (
	"sync"

	"github.com/cofferhq/coffer/internal/manifest"
)

// Readahead starts at raMin bytes ahead of a sequential reader and doubles
// with each sequential read up to Options.Readahead. Background workers
// (at most Options.Workers) fetch it raStep bytes at a time into the cache.
const (
	raMin  = 1 << 20
	raStep = 4 << 20
)

// readahead follows the reads of a Disk to tell sequential reading from
// random reading, and drives the background fetches.
type readahead struct {
	mu      sync.Mutex
	started bool
	lastEnd int64 // end of the furthest read of the current sequential run
	window  int64 // bytes to fetch ahead of lastEnd
	pos     int64 // readahead is started up to here
	target  int64 // and goes up to here
	running int   // background workers
}

// note records a read of n bytes at off and starts readahead workers when
// reads are sequential. Reads count as sequential when they start near the
// end of the run so far (within the window, or raMin), so that several
// requests of one sequential reader that arrive out of order (NBD clients
// keep many in flight) still count.
func (ra *readahead) note(d *Disk, off, n int64) {
	if d.opt.Readahead <= 0 {
		return
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if d.ctx.Err() != nil {
		return
	}
	end := off + n
	slack := max(ra.window, raMin)
	if !ra.started || off < ra.lastEnd-slack || off > ra.lastEnd+slack {
		// A random read, or the first: start a new run.
		ra.started, ra.window, ra.lastEnd, ra.pos, ra.target = true, 0, end, end, end
		return
	}
	ra.window = min(max(2*ra.window, 2*n, raMin), d.opt.Readahead)
	ra.lastEnd = max(ra.lastEnd, end)
	ra.pos = max(ra.pos, ra.lastEnd)
	ra.target = min(max(ra.target, ra.lastEnd+ra.window), d.size)
	for ra.running < d.opt.Workers && ra.pos < ra.target && d.goBackground(d.readAhead) {
		ra.running++
	}
}

// next hands a worker the next step to fetch, or tells it to stop.
func (ra *readahead) next(d *Disk) (start, end int64, ok bool) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if d.ctx.Err() != nil || ra.pos >= ra.target {
		ra.running--
		return 0, 0, false
	}
	start = ra.pos
	end = min(ra.target, start+raStep)
	ra.pos = end
	return start, end, true
}

// readAhead is one background worker.
func (d *Disk) readAhead() {
	for {
		start, end, ok := d.ra.next(d)
		if !ok {
			return
		}
		d.prefetch(start, end)
	}
}

// prefetch fetches the chunks of [start, end) into the cache, with the
// region maps it needs. Errors are dropped: the read that needs the bytes
// meets them again and reports them.
func (d *Disk) prefetch(start, end int64) {
	d.prefetchMaps(int(start/manifest.RegionSize), int((end-1)/manifest.RegionSize)+2) // and the next map
	_, wants, err := d.pieces(d.ctx, start, end-start)
	if err != nil {
		return
	}
	var mine []*fetchItem
	for _, w := range wants {
		if _, ok := d.chunks.get(w.id); ok {
			continue
		}
		c, own := d.flying.claim(w.id)
		if !own {
			continue
		}
		if b, ok := d.chunks.get(w.id); ok {
			d.flying.finish(w.id, c, b, nil)
			continue
		}
		mine = append(mine, &fetchItem{want: w, call: c})
	}
	if len(mine) > 0 {
		d.fetch(mine)
	}
}
