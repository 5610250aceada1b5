package nbdexport

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/cofferhq/coffer/internal/diskread"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/nbd"
	"github.com/cofferhq/coffer/internal/repo"
)

// Exports are a snapshot's disks by export name (the disk's name).
type Exports struct {
	names []string
	disks map[string]*diskread.Disk
	once  sync.Once
}

// Open opens every disk of snap for reading. Nothing is fetched but the
// disks' map lists: chunks come when clients read them.
func Open(ctx context.Context, r *repo.Repo, snap *manifest.Snapshot, opt diskread.Options) (*Exports, error) {
	e := &Exports{disks: map[string]*diskread.Disk{}}
	for i := range snap.Disks {
		d := &snap.Disks[i]
		if _, dup := e.disks[d.Name]; dup {
			e.Close()
			return nil, fmt.Errorf("the snapshot has two disks named %q", d.Name)
		}
		dr, err := diskread.Open(ctx, r, d, opt)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("disk %d (%s): %w", i, d.Name, err)
		}
		e.disks[d.Name] = dr
		e.names = append(e.names, d.Name)
	}
	return e, nil
}

// Names lists the exports in disk order.
func (e *Exports) Names() []string { return slices.Clone(e.names) }

// Disk returns the reader behind an export, or nil.
func (e *Exports) Disk(name string) *diskread.Disk { return e.disks[name] }

// Close closes every disk.
func (e *Exports) Close() {
	e.once.Do(func() {
		for _, d := range e.disks {
			d.Close()
		}
	})
}

// Serve configures s to serve the exports: the full protocol (structured
// replies, block status, several requests at once), the exports listed.
func (e *Exports) Serve(s *nbd.Server) {
	s.Full = true
	s.List = func(context.Context) ([]string, error) { return e.Names(), nil }
	s.Open = func(_ context.Context, name string) (nbd.ServerExport, error) {
		d := e.disks[name]
		if d == nil {
			return nil, fmt.Errorf("no export %q: the snapshot's disks are %v", name, e.names)
		}
		return export{d}, nil
	}
}

// export is one connection's view of a shared disk: closing it leaves the
// disk open for the others.
type export struct{ d *diskread.Disk }

func (x export) ReadAt(p []byte, off int64) (int, error) { return x.d.ReadAt(p, off) }
func (x export) Size() int64                             { return x.d.Size() }
func (x export) Close() error                            { return nil }

// Extents reports the disk's data and holes from its region maps.
func (x export) Extents(ctx context.Context, off, length int64) ([]nbd.Extent, error) {
	ext, err := x.d.Extents(ctx, off, length)
	if err != nil {
		return nil, err
	}
	out := make([]nbd.Extent, len(ext))
	for i, e := range ext {
		out[i] = nbd.Extent{Len: e.Len, Hole: !e.Data}
	}
	return out, nil
}

var _ nbd.ExtentsExport = export{}
