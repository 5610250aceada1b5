package uploader

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/index"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
)

// indexEvery is how many uploaded packs go into one index file. A crash
// loses at most this many packs' index entries, and the next backup recovers
// those from the pack headers (repo.IndexOrphanPacks).
const indexEvery = repo.PacksPerIndexFile

type finishedPack struct {
	buf     []byte
	entries []pack.Entry
	pooled  bool // buf belongs to the pool of data pack buffers
}

// packer gathers sealed blobs into packs (one open pack per blob type),
// uploads finished packs with a fixed number of uploaders, indexes them, and
// tracks which chunks are stored or on their way, so that each new chunk is
// stored once. Data pack buffers come from a fixed pool, so memory is
// bounded; metadata packs are small (a region map is ~50 KiB per 64 MiB of
// disk) and use their own growing buffer.
type packer struct {
	r        *repo.Repo
	packSize int

	mu   sync.Mutex
	open [2]*openPack
	// inflight maps each chunk claimed and not yet in an uploaded pack to
	// the sequence number of its claim; settled is closed and replaced
	// whenever chunks leave it.
	inflight map[crypto.ID]uint64
	seq      uint64
	settled  chan struct{}

	free    chan []byte
	uploads chan finishedPack

	idxMu   sync.Mutex
	pending index.File

	storedBytes atomic.Int64
	packs       atomic.Int64
	// waited is how long region workers waited for the uploaders (for a
	// free pack buffer or a free uploader): a backup that waits a lot is
	// bound by the store, not by the CPU.
	waited atomic.Int64
}

func newPacker(r *repo.Repo, buffers int) *packer {
	p := &packer{
		r:        r,
		packSize: r.Config().PackSize,
		inflight: map[crypto.ID]uint64{},
		settled:  make(chan struct{}),
		free:     make(chan []byte, buffers),
		uploads:  make(chan finishedPack),
	}
	for i := 0; i < buffers; i++ {
		p.free <- nil
	}
	return p
}

// claim reports whether the caller must store the chunk: true the first time
// a chunk that is not in the repository is seen.
func (p *packer) claim(id crypto.ID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.inflight[id]; ok {
		return false
	}
	if p.r.Index.Has(id) {
		return false
	}
	p.seq++
	p.inflight[id] = p.seq
	return true
}

// openPack is a pack being filled. Writers reserve room under the packer's
// lock and seal into it outside the lock; whoever finishes last after the
// pack is detached (full, or flushed) sends it.
type openPack struct {
	b        *pack.Builder
	writers  int
	detached bool
	minSeq   uint64 // the earliest claim among its blobs
}

// add seals a chunk's payload into the open pack of its type; a full pack
// is handed to the uploaders (blocking while they are all busy). Data blobs
// are sealed in place in the pack buffer, concurrently; metadata blobs are
// small and sealed into scratch, then copied.
func (p *packer) add(ctx context.Context, typ, flags uint8, id crypto.ID, rawLen int, payload []byte, scratch *[]byte) error {
	sealer := p.r.Keys().Data()
	ad := pack.BlobAD(typ, id)
	sealedLen := len(payload) + crypto.Overhead
	var sealedMeta []byte
	if typ == pack.TypeMeta {
		*scratch = sealer.Seal((*scratch)[:0], payload, ad)
		sealedMeta = *scratch
	}
	p.mu.Lock()
	op := p.open[typ]
	if op == nil && typ == pack.TypeMeta {
		// Room for a whole pack from the start: growing the buffer blob by
		// blob copied it over and over, under the lock.
		op = &openPack{b: pack.NewBuilder(make([]byte, 0, p.bufSize()))}
		p.open[typ] = op
	}
	if op == nil {
		p.mu.Unlock()
		var buf []byte
		t0 := clock.Start()
		select {
		case buf = <-p.free:
			p.waited.Add(int64(t0.Elapsed()))
		case <-ctx.Done():
			return ctx.Err()
		}
		if buf == nil {
			buf = make([]byte, 0, p.bufSize())
		}
		p.mu.Lock()
		if p.open[typ] == nil {
			p.open[typ] = &openPack{b: pack.NewBuilder(buf)}
		} else {
			p.free <- buf // another worker opened one meanwhile
		}
		op = p.open[typ]
	}
	if q, ok := p.inflight[id]; ok && (op.minSeq == 0 || q < op.minSeq) {
		op.minSeq = q
	}
	var dst []byte
	if typ == pack.TypeMeta {
		op.b.Add(typ, flags, id, rawLen, sealedMeta)
	} else {
		var ok bool
		if dst, ok = op.b.Reserve(typ, flags, id, rawLen, sealedLen); !ok {
			p.mu.Unlock()
			return fmt.Errorf("internal error: a %d-byte blob does not fit a pack buffer of %d bytes", sealedLen, p.bufSize())
		}
		op.writers++
	}
	// The blob that reaches the pack size closes the pack at once, before
	// it is sealed: no other blob can be reserved after it, so a pack
	// overflows its size by at most one blob, which the buffer has room
	// for (bufSize), however many workers seal at the same time.
	if !op.detached && op.b.Size() >= p.packSize {
		op.detached = true
		p.open[typ] = nil
	}
	if dst != nil {
		p.mu.Unlock()
		sealer.Seal(dst[:0], payload, ad)
		p.mu.Lock()
		op.writers--
	}
	send := op.detached && op.writers == 0
	p.mu.Unlock()
	if send {
		return p.send(ctx, op.b, typ == pack.TypeData)
	}
	return nil
}

// bufSize is a data pack buffer's capacity: a full pack, the largest sealed
// blob that can overflow it, and its header.
func (p *packer) bufSize() int {
	return p.packSize + int(p.r.Config().Chunker.Max) + crypto.Overhead + 64<<10
}

func (p *packer) send(ctx context.Context, b *pack.Builder, pooled bool) error {
	buf, entries := b.Finish(p.r.Keys().Data())
	t0 := clock.Start()
	defer func() { p.waited.Add(int64(t0.Elapsed())) }()
	select {
	case p.uploads <- finishedPack{buf: buf, entries: entries, pooled: pooled}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flushOpen sends the open packs that hold a chunk claimed at or before
// seq. A pack a worker is still sealing into is detached, and that worker
// sends it when it is done.
func (p *packer) flushOpen(ctx context.Context, seq uint64) error {
	var send []*openPack
	var types []uint8
	p.mu.Lock()
	for typ, op := range p.open {
		if op == nil || op.b.Count() == 0 || op.minSeq > seq {
			continue
		}
		op.detached = true
		p.open[typ] = nil
		if op.writers == 0 {
			send, types = append(send, op), append(types, uint8(typ))
		}
	}
	p.mu.Unlock()
	for i, op := range send {
		if err := p.send(ctx, op.b, types[i] == pack.TypeData); err != nil {
			return err
		}
	}
	return nil
}

// settle waits until every chunk claimed before it was called is in an
// uploaded pack and in the index: in memory, and in the pending index file
// (which a forced addToIndexFile then writes). Chunks claimed later, by
// disks still being backed up, are not waited for.
func (p *packer) settle(ctx context.Context) error {
	p.mu.Lock()
	seq := p.seq
	p.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		// A claimed chunk reaches an open pack only after it is compressed
		// and sealed, so the open packs are flushed again until none is
		// left waiting.
		if err := p.flushOpen(ctx, seq); err != nil {
			return err
		}
		p.mu.Lock()
		waiting := 0
		for _, q := range p.inflight {
			if q <= seq {
				waiting++
			}
		}
		settled := p.settled
		p.mu.Unlock()
		if waiting == 0 {
			return nil
		}
		select {
		case <-settled:
		case <-tick.C:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// uploader stores finished packs until the uploads channel closes.
func (p *packer) uploader(ctx context.Context) error {
	for fp := range p.uploads {
		id := pack.Sum(fp.buf)
		size := int64(len(fp.buf))
		// A local directory takes the bytes at once and makes them durable
		// in commit: the buffer goes back to the pool before the fsync, so
		// a slow disk does not stall the readers.
		commit, err := p.r.SavePackDeferred(ctx, id, fp.buf)
		if fp.pooled {
			p.free <- fp.buf[:0]
		}
		if err == nil {
			err = commit(ctx)
		}
		if err != nil {
			// Drain so the senders do not block forever; the context is
			// cancelled by the caller.
			go func() {
				for range p.uploads {
				}
			}()
			return err
		}
		p.storedBytes.Add(size)
		p.packs.Add(1)
		// Indexed only once durable, and in the pending index file before
		// the chunks leave inflight, so that a commit that saw them leave
		// writes them in its index file.
		p.r.Index.AddPack(id, fp.entries)
		if err := p.addToIndexFile(ctx, id, fp.entries, false); err != nil {
			return err
		}
		p.mu.Lock()
		for _, e := range fp.entries {
			delete(p.inflight, e.ID)
		}
		close(p.settled)
		p.settled = make(chan struct{})
		p.mu.Unlock()
	}
	return nil
}

// addToIndexFile records an uploaded pack and writes an index file every
// indexEvery packs, or when force is set and anything is pending.
func (p *packer) addToIndexFile(ctx context.Context, id pack.ID, entries []pack.Entry, force bool) error {
	p.idxMu.Lock()
	defer p.idxMu.Unlock()
	if entries != nil {
		p.pending.Packs = append(p.pending.Packs, index.PackBlobs{Pack: id, Blobs: entries})
	}
	if len(p.pending.Packs) == 0 || (!force && len(p.pending.Packs) < indexEvery) {
		return nil
	}
	if _, err := p.r.SaveIndexFile(ctx, &p.pending); err != nil {
		return err
	}
	p.pending = index.File{}
	return nil
}
