package check

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	// ReadPack, if set, narrows ReadData to the packs it returns true for
	// (a sample, as cofferd check --read-data=10%); the others are checked
	// by their headers, as without ReadData.
	ReadPack func(name string) bool
	// BackupRunning says a backup into this repository is running on this
	// machine (it holds a run mark). Its packs are uploaded before they are
	// indexed, so packs in no index file are then counted in
	// Report.Unindexed instead of being warned about one by one.
	BackupRunning bool
	// PackDone, if set, is called (from several goroutines) as each pack
	// is checked, with its size: a progress hook.
	PackDone func(size int64)
	// PacksFound, if set, is called once the packs are listed, with their
	// count and total size, before any is checked: the progress total.
	PacksFound func(count int, size int64)
	// Elsewhere, if set, says why a pack the index lists is not in the
	// store when that is known and expected (it travels on a seed the
	// vault has not imported yet): such a pack is a warning naming the
	// reason, not an error. "" means not known.
	Elsewhere func(id pack.ID) string
}

// Problem is one finding. Warnings do not make a check fail. A foreign
// object (junk: see repo.ForeignError) is a warning with Foreign set, and
// its message says who can remove it.
type Problem struct {
	Object  string `json:"object"`
	Message string `json:"message"`
	Warning bool   `json:"warning,omitempty"`
	Foreign bool   `json:"foreign,omitempty"`
}

// Report is the outcome of a check.
type Report struct {
	Keys       int   `json:"keys"`
	IndexFiles int   `json:"index_files"`
	Packs      int   `json:"packs"`
	Blobs      int   `json:"blobs"`
	Snapshots  int   `json:"snapshots"`
	ReadBytes  int64 `json:"read_bytes"`
	// Unindexed counts the packs in no index file that were not warned
	// about because Options.BackupRunning was set.
	Unindexed int       `json:"unindexed_in_flight,omitempty"`
	Problems  []Problem `json:"problems"`
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

// damage reports err on object as an error, or as a foreign object (a
// warning that says who can remove it) when err is a repo.ForeignError.
func (c *checker) damage(object string, err error) {
	if !repo.IsForeign(err) {
		c.problem(object, err, false)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.report.Problems = append(c.report.Problems, Problem{Object: object, Warning: true, Foreign: true,
		Message: err.Error() + "; " + c.r.RemovalHint(object)})
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
	for _, n := range store.SkippedLinks(r.Store()) {
		c.problem(n, fmt.Errorf("%w: it is ignored; remove it from the store (after checking where it points and who made it)", store.ErrSymlink), true)
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
			c.damage(s.Name, c.classifySlot(ctx, s.Name, s.Err))
		}
	}
	return nil
}

// classifySlot tells a junk key slot from a damaged one: a slot whose
// bytes match its name (keys/<SHA-256>) yet do not parse was never a slot
// of this repository, so it is foreign; one whose bytes changed is damage.
func (c *checker) classifySlot(ctx context.Context, name string, err error) error {
	raw, rerr := store.ReadAll(ctx, c.r.Store(), name)
	if rerr != nil {
		return err
	}
	sum := sha256.Sum256(raw)
	if repo.KeysPrefix+hex.EncodeToString(sum[:]) != name {
		return err
	}
	return &repo.ForeignError{Name: name, Reason: "its bytes match its name but are not a key slot", Err: err}
}

func (c *checker) indexes(ctx context.Context) error {
	files, err := c.r.ReadIndexFiles(ctx, c.damage)
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
	if c.opt.PacksFound != nil {
		var total int64
		for _, o := range objs {
			total += o.Size
		}
		c.opt.PacksFound(len(objs), total)
	}
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
		g.Go(func() error {
			if c.opt.PackDone != nil {
				defer c.opt.PackDone(o.Size)
			}
			if c.opt.ReadData && (c.opt.ReadPack == nil || c.opt.ReadPack(o.Name)) {
				c.readPack(gctx, id, o.Size, indexed, ok)
				return nil
			}
			entries, err := c.r.ReadPackHeader(gctx, id, o.Size)
			if err != nil {
				c.damage(o.Name, c.r.ClassifyPackError(gctx, id, err))
				return nil
			}
			if ok && !sameEntries(entries, indexed) {
				c.problem(o.Name, errors.New("pack header does not match the index"), false)
			}
			if !ok {
				c.unindexed(o.Name, id, entries)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for id := range c.packs {
		if seen[id] {
			continue
		}
		if c.opt.Elsewhere != nil {
			if why := c.opt.Elsewhere(id); why != "" {
				c.problem(repo.PackName(id), fmt.Errorf("pack is in the index but not in the store yet: %s", why), true)
				continue
			}
		}
		c.problem(repo.PackName(id), errors.New("pack is in the index but missing from the store: snapshots that use its chunks cannot be restored"), false)
	}
	return nil
}

// unindexed reports a pack of this repository that no intact index file
// lists, unless a backup on this machine is running (its packs are indexed
// after they are uploaded), and adds its blobs to the index, since they
// still count for the snapshots' completeness.
func (c *checker) unindexed(name string, id pack.ID, entries []pack.Entry) {
	if c.opt.BackupRunning {
		c.mu.Lock()
		c.report.Unindexed++
		c.mu.Unlock()
	} else {
		c.problem(name, errors.New("pack is in no intact index file (left by an interrupted backup, or listed in a damaged one); the next backup indexes it from its header"), true)
	}
	c.r.Index.AddPack(id, entries)
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
	intact := pack.Sum(buf) == id
	entries, err := c.openHeader(name, buf)
	if err != nil && intact && !isIndexed {
		// Exactly the bytes stored under its name, yet not a pack sealed
		// with this key: junk, not damage.
		c.damage(name, &repo.ForeignError{Name: name, Reason: repo.ReasonPack, Err: err})
		return
	}
	if !intact {
		c.problem(name, fmt.Errorf("content does not match its name (SHA-256 is %x): the pack is damaged", sha256.Sum256(buf)), false)
		// Go on: the header and blobs say what is lost.
	}
	if err != nil {
		c.problem(name, err, false)
		return
	}
	if isIndexed && !sameEntries(entries, indexed) {
		c.problem(name, errors.New("pack header does not match the index"), false)
	}
	if !isIndexed {
		c.unindexed(name, id, entries)
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

// openHeader parses the trailer of a whole pack and opens its header.
func (c *checker) openHeader(name string, buf []byte) ([]pack.Entry, error) {
	hl, err := pack.ParseTrailer(buf[max(0, len(buf)-pack.TrailerSize):], int64(len(buf)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return pack.OpenHeader(c.r.Keys().Data(), buf[int64(len(buf))-pack.TrailerSize-hl:len(buf)-pack.TrailerSize], int64(len(buf)), name)
}

func (c *checker) snapshots(ctx context.Context) error {
	snaps, err := c.r.Snapshots(ctx, func(id string, err error) { c.damage(repo.SnapshotsPrefix+id, err) })
	if err != nil {
		return err
	}
	c.report.Snapshots = len(snaps)
	var doneMu sync.Mutex
	done := map[crypto.ID]bool{} // region maps already checked
	for _, s := range snaps {
		obj := repo.SnapshotsPrefix + s.ID
		c.vmMetadata(ctx, obj, s.Snapshot)
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

// vmMetadata checks that a VM snapshot's metadata chunk is there, opens,
// and has the length the snapshot records.
func (c *checker) vmMetadata(ctx context.Context, obj string, s *manifest.Snapshot) {
	x := s.Source.Xen
	if x == nil || x.Metadata == "" {
		return
	}
	id, ok := x.MetadataID()
	if !ok {
		c.problem(obj, fmt.Errorf("VM metadata ID %q: %w", x.Metadata, manifest.ErrFormat), false)
		return
	}
	b, err := c.r.LoadBlob(ctx, id)
	switch {
	case err != nil:
		c.problem(obj, fmt.Errorf("the VM's metadata (chunk %s): %w", id, err), false)
	case int64(len(b)) != x.MetadataSize:
		c.problem(obj, fmt.Errorf("the VM's metadata (chunk %s) has %d bytes, the snapshot says %d: %w", id, len(b), x.MetadataSize, manifest.ErrFormat), false)
	}
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
			continue
		}
		if n, ok := c.rawLength(e.ID); ok && n != e.Length {
			c.problem(obj, fmt.Errorf("disk %d region %d: the extent at offset %d is %d bytes but the index says chunk %s is %d: the region map or the index is wrong, and restoring the region fails", d.Index, ri, e.Offset, e.Length, e.ID, n), false)
		}
	}
	if missing > 0 {
		c.problem(obj, fmt.Errorf("disk %d region %d: %d chunks are not in the index: that part of the disk cannot be restored", d.Index, ri, missing), false)
	}
}

// rawLength returns a chunk's length as an intact index file lists it (the
// in-memory index keeps no lengths of plaintext).
func (c *checker) rawLength(id crypto.ID) (uint32, bool) {
	loc, ok := c.r.Index.Lookup(id)
	if !ok {
		return 0, false
	}
	for _, e := range c.packs[loc.Pack] {
		if e.Offset == loc.Offset && e.ID == id {
			return e.RawLength, true
		}
	}
	return 0, false
}
