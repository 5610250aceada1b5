package seed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// SendReport is what SendSmall did.
type SendReport struct {
	Sent    int   `json:"sent"`
	Bytes   int64 `json:"bytes"`
	Present int   `json:"present"` // held by the store already
	// MetaPacks counts the metadata packs among them (sent or present).
	MetaPacks int `json:"meta_packs"`
}

// smallKinds are the objects an export sends to the vault at once, in
// this order: the packs of snapshot metadata (a changed-block night reads
// its parent's maps, so they cannot wait for the disk), index files (other
// agents dedup against the seed's packs), receipts (the vault then knows
// what the snapshots wait on), then the snapshots.
var smallKinds = []string{"data/", "index/", "receipts/", "snapshots/"}

// SendSmall stores the seed's metadata packs (metaPacks: pack IDs; the seed
// cannot tell them without keys, the export can), index files, receipts
// and snapshots in dst, create-only, never its data packs: an object dst
// holds already counts as present, so a rerun sends only what is missing.
// A snapshot goes with the sizes its receipt gives (store.PutWithMeta), as
// a backup sends it.
func (s *Seed) SendSmall(ctx context.Context, dst store.Store, metaPacks map[string]bool) (SendReport, error) {
	var rep SendReport
	meta := map[string]store.ObjectMeta{}
	for _, prefix := range smallKinds {
		for _, f := range s.Manifest.Objects {
			if !strings.HasPrefix(f.Name, prefix) || prefix == "data/" && !metaPacks[vaultapi.NameDigest(f.Name)] {
				continue
			}
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			m, snap := meta[vaultapi.NameDigest(f.Name)]
			sent, err := s.sendFile(ctx, dst, f, m, snap && prefix == "snapshots/")
			if err != nil {
				return rep, err
			}
			if prefix == "receipts/" {
				if err := s.noteReceipt(f, meta); err != nil {
					return rep, err
				}
			}
			if prefix == "data/" {
				rep.MetaPacks++
			}
			if sent {
				rep.Sent++
				rep.Bytes += f.Size
			} else {
				rep.Present++
			}
		}
	}
	return rep, nil
}

// sendFile puts one file of the seed into dst, with m when withMeta;
// false when dst had it.
func (s *Seed) sendFile(ctx context.Context, dst store.Store, f File, m store.ObjectMeta, withMeta bool) (bool, error) {
	fh, err := os.Open(FilePath(s.Root, f))
	if err != nil {
		return false, fmt.Errorf("the seed's %s: %w", f.Name, err)
	}
	defer fh.Close()
	if fi, err := fh.Stat(); err != nil || fi.Size() != f.Size {
		return false, fmt.Errorf("the seed's %s is not the %d bytes its manifest lists: run the export again to rewrite the manifest, or check the disk", f.Name, f.Size)
	}
	if withMeta {
		err = store.PutWithMeta(ctx, dst, f.Name, fh, f.Size, m)
	} else {
		err = dst.Put(ctx, f.Name, fh, f.Size)
	}
	if errors.Is(err, store.ErrExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sending the seed's %s to %s: %w", f.Name, dst.Location(), err)
	}
	return true, nil
}

// noteReceipt reads a receipt of the seed for the sizes of its snapshot.
func (s *Seed) noteReceipt(f File, meta map[string]store.ObjectMeta) error {
	b, err := readLimited(FilePath(s.Root, f), vaultapi.MaxReceiptSize)
	if err != nil {
		return fmt.Errorf("the seed's %s: %w", f.Name, err)
	}
	rc, err := vaultapi.ParseReceipt(b)
	if err != nil {
		return fmt.Errorf("the seed's %s: %w", f.Name, err)
	}
	var m store.ObjectMeta
	for _, d := range rc.Disks {
		m.LogicalBytes += d.Size
		m.DataBytes += d.DataBytes
	}
	meta[rc.Snapshot] = m
	return nil
}
