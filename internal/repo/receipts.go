package repo

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// ReceiptsPrefix is where receipts live: receipts/<sha256 of the JSON>.
const ReceiptsPrefix = "receipts/"

// SnapshotPacks returns, sorted and each once, the packs a snapshot needs:
// those of every chunk its region maps name, of the maps and map lists
// themselves, and of a VM's metadata. It reads every region map.
func (r *Repo) SnapshotPacks(ctx context.Context, s *manifest.Snapshot) ([]pack.ID, error) {
	set := packSet{m: map[pack.ID]struct{}{}}
	if x := s.Source.Xen; x != nil {
		if id, ok := x.MetadataID(); ok {
			if err := r.addPackOf(ctx, &set, id); err != nil {
				return nil, fmt.Errorf("the VM's metadata: %w", err)
			}
		}
	}
	for i := range s.Disks {
		if err := r.diskPacks(ctx, &s.Disks[i], &set); err != nil {
			return nil, err
		}
	}
	out := make([]pack.ID, 0, len(set.m))
	for id := range set.m {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b pack.ID) int { return strings.Compare(string(a[:]), string(b[:])) })
	return out, nil
}

type packSet struct {
	mu sync.Mutex
	m  map[pack.ID]struct{}
}

func (s *packSet) add(id pack.ID) {
	s.mu.Lock()
	s.m[id] = struct{}{}
	s.mu.Unlock()
}

func (r *Repo) addPackOf(ctx context.Context, set *packSet, id crypto.ID) error {
	loc, err := r.Locate(ctx, id)
	if err != nil {
		return err
	}
	set.add(loc.Pack)
	return nil
}

func (r *Repo) diskPacks(ctx context.Context, d *manifest.Disk, set *packSet) error {
	lists, err := d.ListIDs()
	if err != nil {
		return err
	}
	for _, id := range lists {
		if err := r.addPackOf(ctx, set, id); err != nil {
			return fmt.Errorf("disk %d map list %s: %w", d.Index, id, err)
		}
	}
	maps, err := r.DiskRegions(ctx, d)
	if err != nil {
		return err
	}
	var load []crypto.ID
	var loadAt, noted []int
	for ri, id := range maps {
		if err := r.addPackOf(ctx, set, id); err != nil {
			return fmt.Errorf("disk %d region map %s: %w", d.Index, id, err)
		}
		if r.mapPacks != nil {
			if packs, ok := r.mapPacks.get(id, r.Index.HasPack); ok {
				for _, p := range packs {
					set.add(p)
				}
				continue
			}
			if _, ok := r.mapPacks.notedChunks(id); ok {
				noted = append(noted, ri)
				continue
			}
		}
		load = append(load, id)
		loadAt = append(loadAt, ri)
	}
	if err := r.notedPacks(ctx, d, maps, noted, set); err != nil {
		return err
	}
	return r.LoadBlobs(ctx, load, runtime.GOMAXPROCS(0), func(i int, plain []byte) error {
		ri := loadAt[i]
		regionLen := min(manifest.RegionSize, d.Size-int64(ri)*manifest.RegionSize)
		m, err := manifest.DecodeRegionMap(plain, regionLen)
		if err != nil {
			return fmt.Errorf("disk %d region %d: %w", d.Index, ri, err)
		}
		chunks := make([]crypto.ID, len(m.Extents))
		for i, e := range m.Extents {
			chunks[i] = e.ID
		}
		packs, err := r.chunkPacks(ctx, chunks)
		if err != nil {
			return fmt.Errorf("disk %d region %d: %w", d.Index, ri, err)
		}
		for _, p := range packs {
			set.add(p)
		}
		if r.mapPacks != nil {
			r.mapPacks.put(load[i], packs)
		}
		return nil
	})
}

// notedPacks adds the packs of the maps at positions at, whose chunks this
// process noted when it stored them, looking them up on every core.
func (r *Repo) notedPacks(ctx context.Context, d *manifest.Disk, maps []crypto.ID, at []int, set *packSet) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, ri := range at {
		g.Go(func() error {
			chunks, _ := r.mapPacks.notedChunks(maps[ri])
			packs, err := r.chunkPacks(gctx, chunks)
			if err != nil {
				return fmt.Errorf("disk %d region %d: %w", d.Index, ri, err)
			}
			for _, p := range packs {
				set.add(p)
			}
			r.mapPacks.put(maps[ri], packs)
			return nil
		})
	}
	return g.Wait()
}

// chunkPacks returns the packs holding chunks, each once: from the index
// in one pass, and through Locate (which looks beyond the index) for any
// it lacks.
func (r *Repo) chunkPacks(ctx context.Context, chunks []crypto.ID) ([]pack.ID, error) {
	packs, missing := r.Index.PacksOf(chunks)
	for _, id := range missing {
		loc, err := r.Locate(ctx, id)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(packs, loc.Pack) {
			packs = append(packs, loc.Pack)
		}
	}
	return packs, nil
}

// NewReceipt returns the receipt of snapshot s, whose ID is id.
func (r *Repo) NewReceipt(ctx context.Context, id string, s *manifest.Snapshot) (*vaultapi.Receipt, error) {
	packs, err := r.SnapshotPacks(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("listing the packs snapshot %s needs: %w", id, err)
	}
	rc := &vaultapi.Receipt{Version: vaultapi.ReceiptVersion, Snapshot: id, Name: s.Name, Time: s.Time.UTC(),
		Source: s.Source.Kind, Packs: make([]string, len(packs))}
	for i, p := range packs {
		rc.Packs[i] = p.String()
	}
	for _, d := range s.Disks {
		rc.Disks = append(rc.Disks, vaultapi.ReceiptDisk{Size: d.Size, DataBytes: min(d.Stats.DataBytes, d.Size)})
	}
	if r.receiptSeed != nil {
		rc.Seed = r.receiptSeed(packs)
	}
	return rc, nil
}

// SetReceiptSeed sets how receipts name the seed their snapshot waits on:
// fn gets the packs a snapshot needs (sorted, each once) and returns the
// ID of the seed in transit that holds any of them, or "" when it needs
// none. A seed export names its own seed; a night while a seed travels
// names that seed when the snapshot shares its packs. nil: no seed.
func (r *Repo) SetReceiptSeed(fn func(packs []pack.ID) string) { r.receiptSeed = fn }

// SaveReceipt stores a receipt as receipts/<sha256 of its JSON> and
// returns that name.
func (r *Repo) SaveReceipt(ctx context.Context, rc *vaultapi.Receipt) (string, error) {
	b, err := rc.Marshal()
	if err != nil {
		return "", err
	}
	name, err := r.putContentNamed(ctx, ReceiptsPrefix, b)
	if err != nil {
		return "", fmt.Errorf("storing the receipt of snapshot %s: %w", rc.Snapshot, err)
	}
	return name, nil
}

// Receipts reads every receipt. Unreadable or malformed ones are reported
// through onErr and skipped; with a nil onErr the first error is returned.
func Receipts(ctx context.Context, st store.Store, onErr func(name string, err error)) ([]*vaultapi.Receipt, error) {
	var names []string
	err := st.List(ctx, ReceiptsPrefix, func(i store.Info) error {
		names = append(names, i.Name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing receipts: %w", err)
	}
	slices.Sort(names)
	var out []*vaultapi.Receipt
	for _, name := range names {
		rc, err := LoadReceipt(ctx, st, name)
		if err != nil {
			if onErr == nil {
				return nil, err
			}
			onErr(name, err)
			continue
		}
		out = append(out, rc)
	}
	return out, nil
}

// LoadReceipt reads one receipt and checks it against its name.
func LoadReceipt(ctx context.Context, st store.Store, name string) (*vaultapi.Receipt, error) {
	if !isContentName(name, ReceiptsPrefix) {
		return nil, &ForeignError{Name: name, Reason: "Coffer never gives an object that name"}
	}
	b, err := store.ReadAllLimit(ctx, st, name, vaultapi.MaxReceiptSize)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if err := checkContentName(name, ReceiptsPrefix, b); err != nil {
		return nil, err
	}
	rc, err := vaultapi.ParseReceipt(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return rc, nil
}

// WriteMissingReceipts stores a receipt for each of snaps that has none
// (snapshots an agent older than receipts wrote), and returns how many it
// wrote. A vault collects no garbage while a snapshot lacks its receipt.
func (r *Repo) WriteMissingReceipts(ctx context.Context, snaps []*SnapshotInfo) (int, error) {
	rcs, err := Receipts(ctx, r.st, func(string, error) {})
	if err != nil {
		return 0, err
	}
	have := map[string]bool{}
	for _, rc := range rcs {
		have[rc.Snapshot] = true
	}
	n := 0
	for _, s := range snaps {
		if have[s.ID] {
			continue
		}
		rc, err := r.NewReceipt(ctx, s.ID, s.Snapshot)
		if err != nil {
			return n, err
		}
		if _, err := r.SaveReceipt(ctx, rc); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
