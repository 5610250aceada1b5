package check

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
)

// Options select what to verify.
type Options struct {
	ReadData bool // download and verify every blob of every pack
	Workers  int  // parallel reads; default 2*GOMAXPROCS
	// PackDone, if set, is called (from several goroutines) as each pack
	// is checked, with its size: a progress hook.
	PackDone func(size int64)
}

// Problem is one finding. Warnings do not make a check fail.
type Problem struct {
	Object  string `json:"object"`
	Message string `json:"message"`
	Warning bool   `json:"warning,omitempty"`
}

// Report is the outcome of a check.
type Report struct {
	Keys       int       `json:"keys"`
	IndexFiles int       `json:"index_files"`
	Packs      int       `json:"packs"`
	Blobs      int       `json:"blobs"`
	Snapshots  int       `json:"snapshots"`
	ReadBytes  int64     `json:"read_bytes"`
	Problems   []Problem `json:"problems"`
}

// Errors counts the problems that are not warnings.
func (r *Report) Errors() int {
	n := 0
	for _, p := range r.Problems {
		if !p.Warning {
			n++
		}
	}
	return n
}

type checker struct {
	r   *repo.Repo
	opt Options

	mu     sync.Mutex
	report Report
	// packs holds the index's view: pack -> blobs.
	packs map[pack.ID][]pack.Entry
	read  atomic.Int64
}

func (c *checker) problem(object string, err error, warning bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.report.Problems = append(c.report.Problems, Problem{Object: object, Message: err.Error(), Warning: warning})
}

// Run checks the repository. Its in-memory index is replaced by what the
// intact index files say. The error is for failures to run at all (the store
// cannot be listed); damage is reported in the Report.
func Run(ctx context.Context, r *repo.Repo, opt Options) (*Report, error) {
	if opt.Workers <= 0 {
		opt.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	c := &checker{r: r, opt: opt, packs: map[pack.ID][]pack.Entry{}}
	steps := []func(context.Context) error{c.keys, c.indexes, c.packFiles, c.snapshots}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	c.report.ReadBytes = c.read.Load()
	sort.SliceStable(c.report.Problems, func(i, j int) bool { return c.report.Problems[i].Object < c.report.Problems[j].Object })
	return &c.report, nil
}

func (c *checker) keys(ctx context.Context) error {
	slots, err := repo.ListSlots(ctx, c.r.Store())
	if err != nil {
		return err
	}
	c.report.Keys = len(slots)
	for _, s := range slots {
		if s.Err != nil {
			c.problem(s.Name, s.Err, false)
		}
	}
	return nil
}

func (c *checker) indexes(ctx context.Context) error {
	files, err := c.r.ReadIndexFiles(ctx, func(name string, err error) { c.problem(name, err, false) })
	if err != nil {
		return err
	}
	c.report.IndexFiles = len(files)
	n := 0
	for _, f := range files {
		for _, p := range f.File.Packs {
			if old, ok := c.packs[p.Pack]; ok && !sameEntries(old, p.Blobs) {
				c.problem(f.Name, fmt.Errorf("lists pack %s differently from another index file", p.Pack), false)
			}
			c.packs[p.Pack] = p.Blobs
			n += len(p.Blobs)
		}
	}
	c.r.Index.BeginLoad(n)
	for id, blobs := range c.packs {
		c.r.Index.AddPack(id, blobs)
	}
	c.r.Index.Finish()
	return nil
}

func sameEntries(a, b []pack.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (c *checker) packFiles(ctx context.Context) error {
	var objs []store.Info
	if err := c.r.Store().List(ctx, repo.DataPrefix, func(i store.Info) error {
		objs = append(objs, i)
		return nil
	}); err != nil {
		return fmt.Errorf("listing packs: %w", err)
	}
	c.report.Packs = len(objs)
	seen := map[pack.ID]bool{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opt.Workers)
	for _, o := range objs {
		id, err := repo.ParsePackName(o.Name)
		if err != nil {
			c.problem(o.Name, errors.New("unexpected object in data/: not a pack name"), true)
			continue
		}
		seen[id] = true
		indexed, ok := c.packs[id]
		if !ok {
			c.problem(o.Name, errors.New("pack is in no intact index file (left by an interrupted backup, or listed in a damaged one); the next backup indexes it from its header"), true)
		}
		g.Go(func() error {
			if c.opt.PackDone != nil {
				defer c.opt.PackDone(o.Size)
			}
			if c.opt.ReadData {
				c.readPack(gctx, id, o.Size, indexed, ok)
				return nil
			}
			entries, err := c.r.ReadPackHeader(gctx, id, o.Size)
			if err != nil {
				c.problem(o.Name, err, false)
				return nil
			}
			if ok && !sameEntries(entries, indexed) {
				c.problem(o.Name, errors.New("pack header does not match the index"), false)
			}
			if !ok {
				// Its blobs still count for the snapshots' completeness.
				c.r.Index.AddPack(id, entries)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for id := range c.packs {
		if !seen[id] {
			c.problem(repo.PackName(id), errors.New("pack is in the index but missing from the store: snapshots that use its chunks cannot be restored"), false)
		}
	}
	return nil
}

// readPack downloads a pack, checks its name, header and every blob.
func (c *checker) readPack(ctx context.Context, id pack.ID, size int64, indexed []pack.Entry, isIndexed bool) {
	name := repo.PackName(id)
	var buf []byte
	err := c.r.Store().Get(ctx, name, 0, -1, func(r io.Reader) error {
		b, err := io.ReadAll(r)
		buf = b
		return err
	})
	if err != nil {
		c.problem(name, err, false)
		return
	}
	c.read.Add(int64(len(buf)))
	if pack.Sum(buf) != id {
		c.problem(name, fmt.Errorf("content does not match its name (SHA-256 is %x): the pack is damaged", sha256.Sum256(buf)), false)
		// Go on: the header and blobs say what is lost.
	}
	hl, err := pack.ParseTrailer(buf[max(0, len(buf)-pack.TrailerSize):], int64(len(buf)))
	if err != nil {
		c.problem(name, err, false)
		return
	}
	entries, err := pack.OpenHeader(c.r.Keys().Data(), buf[int64(len(buf))-pack.TrailerSize-hl:len(buf)-pack.TrailerSize], int64(len(buf)), name)
	if err != nil {
		c.problem(name, err, false)
		return
	}
	if isIndexed && !sameEntries(entries, indexed) {
		c.problem(name, errors.New("pack header does not match the index"), false)
	}
	if !isIndexed {
		c.r.Index.AddPack(id, entries)
	}
	h := c.r.Keys().NewIDHasher()
	var scratch []byte
	for _, e := range entries {
		sealed := buf[e.Offset : e.Offset+e.Length]
		where := fmt.Sprintf("blob %s in pack %s", e.ID, name)
		plain, err := c.r.OpenBlob(h, e.Type, e.Flags, e.ID, sealed, scratch, where)
		if err != nil {
			c.problem(name, err, false)
			continue
		}
		if uint32(len(plain)) != e.RawLength {
			c.problem(name, fmt.Errorf("%s: %d bytes, header says %d", where, len(plain), e.RawLength), false)
		}
		scratch = plain[:0]
	}
	c.mu.Lock()
	c.report.Blobs += len(entries)
	c.mu.Unlock()
}

func (c *checker) snapshots(ctx context.Context) error {
	snaps, err := c.r.Snapshots(ctx, func(id string, err error) { c.problem(repo.SnapshotsPrefix+id, err, false) })
	if err != nil {
		return err
	}
	c.report.Snapshots = len(snaps)
	var doneMu sync.Mutex
	done := map[crypto.ID]bool{} // region maps already checked
	for _, s := range snaps {
		obj := repo.SnapshotsPrefix + s.ID
		for di := range s.Disks {
			d := &s.Disks[di]
			regions, err := c.r.DiskRegions(ctx, d)
			if err != nil {
				c.problem(obj, err, false)
				continue
			}
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(c.opt.Workers)
			for ri, rid := range regions {
				doneMu.Lock()
				skip := done[rid]
				done[rid] = true
				doneMu.Unlock()
				if skip {
					continue
				}
				g.Go(func() error {
					c.region(gctx, obj, d, ri, rid)
					return nil
				})
			}
			_ = g.Wait()
		}
	}
	return ctx.Err()
}

func (c *checker) region(ctx context.Context, obj string, d *manifest.Disk, ri int, rid crypto.ID) {
	b, err := c.r.LoadBlob(ctx, rid)
	if err != nil {
		c.problem(obj, fmt.Errorf("disk %d region %d map: %w", d.Index, ri, err), false)
		return
	}
	regionLen := min(manifest.RegionSize, d.Size-int64(ri)*manifest.RegionSize)
	m, err := manifest.DecodeRegionMap(b, regionLen)
	if err != nil {
		c.problem(obj, fmt.Errorf("disk %d region %d map %s: %w", d.Index, ri, rid, err), false)
		return
	}
	missing := 0
	for _, e := range m.Extents {
		if !c.r.Index.Has(e.ID) {
			missing++
		}
	}
	if missing > 0 {
		c.problem(obj, fmt.Errorf("disk %d region %d: %d chunks are not in the index: that part of the disk cannot be restored", d.Index, ri, missing), false)
	}
}
