package repo

import (
	"context"
	"fmt"

	"github.com/cofferhq/coffer/internal/index"
	"github.com/cofferhq/coffer/internal/store"
)

// IndexOrphanPacks finds packs that are stored but in no intact index file —
// left by a backup that was interrupted before it wrote its index, or listed
// only in a damaged index file — reads their headers and adds them to the
// in-memory index. With save it also writes an index file for them, so later
// runs need not read their headers again and a resumed backup reuses them
// instead of uploading them again. Call it after LoadIndex. It returns how
// many packs it recovered. Readers need not call it: Locate does when a
// blob is missing from the index.
func (r *Repo) IndexOrphanPacks(ctx context.Context, save bool) (int, error) {
	r.orphansMu.Lock()
	defer r.orphansMu.Unlock()
	return r.indexOrphans(ctx, save)
}

// indexOrphans is IndexOrphanPacks; the caller holds orphansMu.
func (r *Repo) indexOrphans(ctx context.Context, save bool) (int, error) {
	var orphans []store.Info
	err := r.st.List(ctx, DataPrefix, func(i store.Info) error {
		id, err := ParsePackName(i.Name)
		if err != nil {
			return nil // not ours; check reports it
		}
		if !r.Index.HasPack(id) {
			orphans = append(orphans, i)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("listing packs: %w", err)
	}
	f := &index.File{}
	for _, o := range orphans {
		id, _ := ParsePackName(o.Name)
		entries, err := r.ReadPackHeader(ctx, id, o.Size)
		if err != nil {
			// A damaged orphan is not fatal for a backup: its chunks are
			// simply stored again. check reports it.
			continue
		}
		r.Index.AddPack(id, entries)
		f.Packs = append(f.Packs, index.PackBlobs{Pack: id, Blobs: entries})
	}
	for i := 0; save && i < len(f.Packs); i += PacksPerIndexFile {
		part := &index.File{Packs: f.Packs[i:min(i+PacksPerIndexFile, len(f.Packs))]}
		if _, err := r.SaveIndexFile(ctx, part); err != nil {
			return 0, err
		}
	}
	r.orphansDone = true
	return len(f.Packs), nil
}
