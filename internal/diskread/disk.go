package diskread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
)

// Defaults of Options.
const (
	DefaultCacheBytes = 256 << 20
	DefaultReadahead  = 32 << 20
	DefaultWorkers    = 4
	DefaultMaps       = 64
)

// ErrClosed is returned by reads of a Disk after Close, or after the
// context it was opened with ended.
var ErrClosed = errors.New("the disk reader is closed")

// Options tune a Disk. Zero values take the defaults.
type Options struct {
	// CacheBytes bounds the decrypted chunk plaintexts kept for later
	// reads (DefaultCacheBytes).
	CacheBytes int64
	// Readahead is the most bytes fetched ahead of a sequential reader
	// (DefaultReadahead), at most a quarter of CacheBytes so that what is
	// read ahead is still cached when it is read. Negative turns readahead
	// off.
	Readahead int64
	// Workers bounds the ranged reads that one read, and readahead, run at
	// once (DefaultWorkers).
	Workers int
	// Maps bounds the decoded region maps kept (DefaultMaps); one map
	// covers 64 MiB of the disk.
	Maps int
}

// withDefaults fills in o's zero values.
func (o Options) withDefaults() Options {
	if o.CacheBytes <= 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.Readahead == 0 {
		o.Readahead = DefaultReadahead
	}
	o.Readahead = min(o.Readahead, o.CacheBytes/4)
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Maps <= 0 {
		o.Maps = DefaultMaps
	}
	return o
}

// Stats count a Disk's work since Open.
type Stats struct {
	FetchedBytes  int64 // bytes of chunk ranges read from the store, gaps included
	FetchedChunks int64 // chunks fetched from the store
	CacheHits     int64 // chunks a read found cached or already being fetched
	CacheMisses   int64 // chunks a read had to fetch
	MapsLoaded    int64 // region maps loaded from the store
	CachedBytes   int64 // plaintext bytes in the chunk cache now
}

type counters struct {
	fetchedBytes, fetchedChunks, hits, misses, maps atomic.Int64
}

// Disk reads one disk of a snapshot at random. It is safe for concurrent
// use. Close it to stop its readahead.
type Disk struct {
	r       *repo.Repo
	disk    *manifest.Disk
	name    string // the disk in errors
	size    int64
	regions []crypto.ID // region map IDs, in disk order
	opt     Options

	ctx    context.Context // ends at Close: fetches and readahead run under it
	cancel context.CancelFunc
	bgMu   sync.Mutex
	closed bool
	bg     sync.WaitGroup // fetches and readahead workers

	maps   *mapCache
	chunks *chunkCache
	flying flights[crypto.ID, []byte]
	ra     readahead
	stats  counters
}

// Open prepares random reads of disk d of a snapshot in r, whose index must
// be loaded. It reads the disk's map lists only (one small chunk per 64 GiB
// of disk); region maps and chunks are loaded as reads need them. The
// Disk's fetches and readahead run until ctx ends or Close is called.
func Open(ctx context.Context, r *repo.Repo, d *manifest.Disk, opt Options) (*Disk, error) {
	if d.Size < 0 || d.Size > manifest.MaxDiskSize {
		return nil, fmt.Errorf("disk %d (%s): size %d is out of range: the snapshot is malformed: %w", d.Index, d.Name, d.Size, manifest.ErrFormat)
	}
	if d.BlockSize != manifest.BlockSize || d.RegionSize != manifest.RegionSize {
		return nil, fmt.Errorf("disk %d (%s): block size %d and region size %d are not supported (this Coffer reads %d and %d): %w",
			d.Index, d.Name, d.BlockSize, d.RegionSize, manifest.BlockSize, manifest.RegionSize, manifest.ErrFormat)
	}
	regions, err := r.DiskRegions(ctx, d)
	if err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	dctx, cancel := context.WithCancelCause(ctx)
	dk := &Disk{
		r: r, disk: d, name: fmt.Sprintf("disk %d (%s)", d.Index, d.Name), size: d.Size, regions: regions, opt: opt,
		ctx: dctx, cancel: func() { cancel(ErrClosed) },
		maps: newMapCache(opt.Maps), chunks: newChunkCache(opt.CacheBytes),
	}
	return dk, nil
}

// Size returns the disk's size in bytes.
func (d *Disk) Size() int64 { return d.size }

// Close stops the fetches and the readahead and waits for them to end.
// Reads after Close fail with ErrClosed.
func (d *Disk) Close() error {
	d.cancel()
	d.bgMu.Lock()
	d.closed = true
	d.bgMu.Unlock()
	d.bg.Wait()
	return nil
}

// goBackground runs fn in a goroutine that Close waits for, and reports
// false (without running it) once the Disk is closed.
func (d *Disk) goBackground(fn func()) bool {
	d.bgMu.Lock()
	defer d.bgMu.Unlock()
	if d.closed {
		return false
	}
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		fn()
	}()
	return true
}

// Stats returns the counters.
func (d *Disk) Stats() Stats {
	cached, _ := d.chunks.size()
	return Stats{
		FetchedBytes: d.stats.fetchedBytes.Load(), FetchedChunks: d.stats.fetchedChunks.Load(),
		CacheHits: d.stats.hits.Load(), CacheMisses: d.stats.misses.Load(),
		MapsLoaded: d.stats.maps.Load(), CachedBytes: cached,
	}
}

// ReadAt implements io.ReaderAt: it reads len(p) bytes at disk offset off,
// fewer with io.EOF at the end of the disk. Holes and zero blocks are
// zeros without any fetch.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	return d.ReadAtContext(d.ctx, p, off)
}

// ReadAtContext is ReadAt that stops waiting when ctx ends. The fetches
// it started go on in the background (under the Disk's context: other
// reads may wait for the same chunks) and fill the cache.
func (d *Disk) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: read at negative offset %d", d.name, off)
	}
	if off >= d.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := min(int64(len(p)), d.size-off)
	if err := d.alive(); err != nil {
		return 0, err
	}
	d.ra.note(d, off, n)
	if err := d.read(ctx, p[:n], off); err != nil {
		return 0, err
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// alive returns ErrClosed (with the cause) once the Disk's context ended.
func (d *Disk) alive() error {
	if d.ctx.Err() == nil {
		return nil
	}
	if cause := context.Cause(d.ctx); !errors.Is(cause, ErrClosed) {
		return fmt.Errorf("%s: %w: %w", d.name, ErrClosed, cause)
	}
	return fmt.Errorf("%s: %w", d.name, ErrClosed)
}

// read fills buf with the disk's bytes at off (all within the disk).
func (d *Disk) read(ctx context.Context, buf []byte, off int64) error {
	pieces, wants, err := d.pieces(ctx, off, int64(len(buf)))
	if err != nil {
		return err
	}
	plains, err := d.chunkData(ctx, wants)
	if err != nil {
		return err
	}
	for _, pc := range pieces {
		dst := buf[pc.off-off : pc.off-off+pc.n]
		if pc.chunk < 0 {
			clear(dst)
			continue
		}
		plain := plains[pc.chunk]
		if pc.skip+pc.n > int64(len(plain)) {
			w := wants[pc.chunk]
			return fmt.Errorf("%s: chunk %s is %d bytes, but the region map uses %d bytes of it at disk offset %d (the snapshot is damaged: run coffer check)",
				d.name, w.id, len(plain), pc.skip+pc.n, pc.off-pc.skip)
		}
		copy(dst, plain[pc.skip:pc.skip+pc.n])
	}
	return nil
}
