package repo

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/internal/index"
	"github.com/cofferhq/coffer/internal/store"
)

// PacksPerIndexFile is the most packs a writer lists in one index file: a
// crash loses at most that many packs' entries (found again from their
// headers), and files stay far below what a vault accepts.
const PacksPerIndexFile = 32

// IndexFile is one loaded index file.
type IndexFile struct {
	Name string
	File *index.File
}

// ReadIndexFiles reads, checks and decodes every index file, in parallel.
// onErr is called for each damaged file; when it is nil the first error
// aborts.
func (r *Repo) ReadIndexFiles(ctx context.Context, onErr func(name string, err error)) ([]IndexFile, error) {
	var names []string
	if err := r.st.List(ctx, IndexPrefix, func(i store.Info) error {
		names = append(names, i.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing index files: %w", err)
	}
	out := make([]IndexFile, len(names))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, n := range names {
		g.Go(func() error {
			f, err := r.readIndexFile(gctx, n)
			if err != nil {
				if onErr == nil {
					return err
				}
				mu.Lock()
				onErr(n, err)
				mu.Unlock()
				return nil
			}
			out[i] = IndexFile{Name: n, File: f}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	kept := out[:0]
	for _, f := range out {
		if f.File != nil {
			kept = append(kept, f)
		}
	}
	return kept, nil
}

func (r *Repo) readIndexFile(ctx context.Context, name string) (*index.File, error) {
	plain, err := r.LoadSealed(ctx, name, IndexPrefix, index.AD)
	if err != nil {
		return nil, err
	}
	f, err := index.DecodeFile(plain)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

// LoadIndex reads every index file into the in-memory index. A damaged or
// foreign (ForeignError) index file is reported through warn (when not
// nil) and skipped: the packs a damaged one listed are found again from
// their own headers by IndexOrphanPacks, so no such file blocks a backup or
// a restore. With a nil warn the first unreadable file is an error.
func (r *Repo) LoadIndex(ctx context.Context, warn func(name string, err error)) error {
	var skipped []string
	var count func(string, error)
	if warn != nil {
		count = func(name string, err error) { skipped = append(skipped, name); warn(name, err) }
	}
	files, err := r.ReadIndexFiles(ctx, count)
	r.indexSkipped = append(r.indexSkipped, skipped...)
	if err != nil {
		return err
	}
	n := 0
	for _, f := range files {
		for _, p := range f.File.Packs {
			n += len(p.Blobs)
		}
	}
	r.Index.BeginLoad(n)
	for _, f := range files {
		for _, p := range f.File.Packs {
			r.Index.AddPack(p.Pack, p.Blobs)
		}
	}
	r.Index.Finish()
	return nil
}

// SaveIndexFile stores an index file and returns its name.
func (r *Repo) SaveIndexFile(ctx context.Context, f *index.File) (string, error) {
	name, err := r.SaveSealed(ctx, IndexPrefix, f.Encode(), index.AD)
	if err != nil {
		return "", fmt.Errorf("storing an index file: %w", err)
	}
	return name, nil
}

// IndexSkipped is how many index files LoadIndex skipped (damaged, or junk
// that does not open with the key): the packs a damaged one lists are in no
// index until IndexOrphanPacks finds them again.
func (r *Repo) IndexSkipped() int { return len(r.indexSkipped) }

// SkippedIndexFiles names the index files LoadIndex skipped, sorted.
func (r *Repo) SkippedIndexFiles() []string {
	out := slices.Clone(r.indexSkipped)
	slices.Sort(out)
	return out
}
