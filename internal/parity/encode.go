package parity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync/atomic"

	"github.com/klauspost/reedsolomon"
	"golang.org/x/sync/errgroup"
)

const (
	// DefaultMemoryBudget is the shard buffers' size when Options gives none.
	DefaultMemoryBudget = 64 << 20
	// DefaultReaders is how many files are read at once when Options gives
	// no number.
	DefaultReaders = 4
)

// ErrShortFile is wrapped when a file that should be intact ends before the
// size the layout gives it.
var ErrShortFile = errors.New("file is shorter than its size")

// OpenFunc opens file i for reading: a data file for i < len(sizes), parity
// file j for i = len(sizes)+j. The result is closed after use when it is an
// io.Closer.
type OpenFunc func(i int) (io.ReaderAt, error)

// WriteFunc opens file i for writing at offsets, without truncating it
// (Encode: parity file i; Repair: data file i). The result is closed after
// use when it is an io.Closer, and its Close error counts.
type WriteFunc func(i int) (io.WriterAt, error)

// Options tune Encode and Repair. The zero value is good.
type Options struct {
	// MemoryBudget is the bytes of shard buffers (DefaultMemoryBudget when
	// zero). Each shard gets at least 64 bytes whatever the budget.
	MemoryBudget int64
	// Readers is how many files are read at once (DefaultReaders when zero).
	Readers int
	// Progress, when set, is called after each window with the bytes done:
	// file bytes read (Encode) or repaired bytes written (Repair).
	Progress func(n int64)
}

// window is the column window: the budget spread over all shards, a
// multiple of 64, at least 64, at most the shard size.
func (o Options) window(l *Layout) int64 {
	budget := o.MemoryBudget
	if budget <= 0 {
		budget = DefaultMemoryBudget
	}
	w := budget / int64(l.DataShards+l.ParityShards) / block * block
	return min(max(w, block), l.ShardSize)
}

func (o Options) readers() int {
	if o.Readers <= 0 {
		return DefaultReaders
	}
	return o.Readers
}

func (o Options) progress(n int64) {
	if o.Progress != nil && n > 0 {
		o.Progress(n)
	}
}

// coder is the codec and the shard buffers of one Encode or Repair.
type coder struct {
	enc    reedsolomon.Encoder
	bufs   [][]byte // DataShards+ParityShards buffers of one window
	shards [][]byte // the window's shards handed to the codec
	w      int64
}

func newCoder(l *Layout, o Options) (*coder, error) {
	w := o.window(l)
	enc, err := reedsolomon.New(l.DataShards, l.ParityShards, reedsolomon.WithAutoGoroutines(int(w)))
	if err != nil {
		return nil, fmt.Errorf("parity: %d data and %d parity shards: %w", l.DataShards, l.ParityShards, err)
	}
	n := l.DataShards + l.ParityShards
	return &coder{enc: enc, bufs: reedsolomon.AllocAligned(n, int(w)), shards: make([][]byte, n), w: w}, nil
}

// Encode computes the parity files from the data files: parity(j) receives
// parity file j, ShardSize bytes. open is called for data files only.
func Encode(ctx context.Context, l *Layout, sizes []int64, open OpenFunc, parity WriteFunc, o Options) error {
	sm, err := l.index(sizes)
	if err != nil {
		return err
	}
	c, err := newCoder(l, o)
	if err != nil {
		return err
	}
	k := l.DataShards
	for off := int64(0); off < l.ShardSize; off += c.w {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(c.w, l.ShardSize-off)
		for s := range c.shards {
			c.shards[s] = c.bufs[s][:n]
		}
		done, err := sm.readShards(ctx, off, c.shards[:k], open, o.readers())
		if err != nil {
			return err
		}
		if err := c.enc.Encode(c.shards); err != nil {
			return fmt.Errorf("parity: encoding bytes %d..%d: %w", off, off+n, err)
		}
		for j, p := range c.shards[k:] {
			if err := writeAt(parity, j, p, off); err != nil {
				return fmt.Errorf("parity: writing parity file %d: %w", j, err)
			}
		}
		o.progress(done)
	}
	return nil
}

// readShards fills every shard with a buffer (len > 0) with its bytes from
// off on, a few shards at once, and returns the file bytes read. Data shard
// s is read from its files (zeros between and after them), parity shard
// DataShards+j from parity file j.
func (sm *shardMap) readShards(ctx context.Context, off int64, shards [][]byte, open OpenFunc, readers int) (int64, error) {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(readers)
	batch := max(1, len(shards)/(readers*8))
	var done atomic.Int64
	for first := 0; first < len(shards); first += batch {
		last := min(first+batch, len(shards))
		g.Go(func() error {
			for s := first; s < last; s++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				n, err := sm.readShard(s, off, shards[s], open)
				if err != nil {
					return err
				}
				done.Add(n)
			}
			return nil
		})
	}
	err := g.Wait()
	return done.Load(), err
}

func (sm *shardMap) readShard(s int, off int64, buf []byte, open OpenFunc) (int64, error) {
	if len(buf) == 0 {
		return 0, nil
	}
	if s >= sm.l.DataShards {
		return int64(len(buf)), readAt(open, len(sm.sizes)+s-sm.l.DataShards, buf, off)
	}
	clear(buf)
	files := sm.files(s)
	// the first file that ends after off; ends grow with offsets in a shard
	first := sort.Search(len(files), func(x int) bool { _, end := sm.span(files[x]); return end > off })
	var done int64
	for _, i := range files[first:] {
		start, end := sm.span(i)
		if start >= off+int64(len(buf)) {
			break
		}
		lo, hi := max(start, off), min(end, off+int64(len(buf)))
		if hi <= lo {
			continue
		}
		if err := readAt(open, i, buf[lo-off:hi-off], lo-start); err != nil {
			return done, err
		}
		done += hi - lo
	}
	return done, nil
}

// readAt reads len(p) bytes of file i at off.
func readAt(open OpenFunc, i int, p []byte, off int64) error {
	r, err := open(i)
	if err == nil && r == nil {
		err = errors.New("no reader given")
	}
	if err != nil {
		return fmt.Errorf("parity: opening file %d: %w", i, err)
	}
	n, err := r.ReadAt(p, off)
	if c, ok := r.(io.Closer); ok {
		_ = c.Close() // read-only: nothing to lose
	}
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("parity: file %d ends at byte %d, but the layout gives it at least %d bytes; count it as damaged: %w",
			i, off+int64(n), off+int64(len(p)), ErrShortFile)
	}
	return fmt.Errorf("parity: reading file %d at byte %d: %w", i, off+int64(n), err)
}

// writeAt writes p to file i at off and closes it when it is a Closer.
func writeAt(create WriteFunc, i int, p []byte, off int64) error {
	w, err := create(i)
	if err == nil && w == nil {
		err = errors.New("no writer given")
	}
	if err != nil {
		return err
	}
	_, err = w.WriteAt(p, off)
	if c, ok := w.(io.Closer); ok {
		err = errors.Join(err, c.Close())
	}
	return err
}
