package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/store"
)

// SnapshotInfo is a loaded snapshot and its ID (the hex SHA-256 naming it).
type SnapshotInfo struct {
	ID string
	*manifest.Snapshot
}

// ErrSnapshotNotFound is returned when no snapshot matches.
var ErrSnapshotNotFound = errors.New("no such snapshot")

// SaveSnapshot stores a snapshot document and returns its ID. Call it only
// after every blob the snapshot refers to is stored and indexed. Its
// receipt (NewReceipt) is stored first, so a vault never holds a snapshot
// without the receipt that keeps its packs alive.
func (r *Repo) SaveSnapshot(ctx context.Context, s *manifest.Snapshot) (string, error) {
	b, err := s.Marshal()
	if err != nil {
		return "", err
	}
	sealed := r.keys.Data().Seal(nil, b, manifest.SnapshotAD)
	name := contentName(SnapshotsPrefix, sealed)
	id := strings.TrimPrefix(name, SnapshotsPrefix)
	rc, err := r.NewReceipt(ctx, id, s)
	if err != nil {
		return "", err
	}
	if _, err := r.SaveReceipt(ctx, rc); err != nil {
		return "", err
	}
	// A vault keeps the tenant's usage but cannot read the snapshot: tell
	// it the sizes it describes.
	var m store.ObjectMeta
	for _, d := range s.Disks {
		m.LogicalBytes += d.Size
		m.DataBytes += d.Stats.DataBytes
	}
	err = store.PutWithMeta(ctx, r.st, name, store.Bytes(sealed), int64(len(sealed)), m)
	if err != nil && !errors.Is(err, store.ErrExists) {
		return "", fmt.Errorf("storing the snapshot: %w", err)
	}
	return id, nil
}

// LoadSnapshot reads one snapshot by full ID.
func (r *Repo) LoadSnapshot(ctx context.Context, id string) (*SnapshotInfo, error) {
	name := SnapshotsPrefix + id
	plain, err := r.LoadSealed(ctx, name, SnapshotsPrefix, manifest.SnapshotAD)
	if err != nil {
		return nil, err
	}
	s, err := manifest.DecodeSnapshot(plain)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &SnapshotInfo{ID: id, Snapshot: s}, nil
}

// SnapshotIDs lists the IDs of all snapshots.
func (r *Repo) SnapshotIDs(ctx context.Context) ([]string, error) {
	var ids []string
	err := r.st.List(ctx, SnapshotsPrefix, func(i store.Info) error {
		ids = append(ids, strings.TrimPrefix(i.Name, SnapshotsPrefix))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// Snapshots loads every snapshot, oldest first. Damaged ones are reported
// through onErr and skipped; with a nil onErr the first error is returned.
func (r *Repo) Snapshots(ctx context.Context, onErr func(id string, err error)) ([]*SnapshotInfo, error) {
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	var out []*SnapshotInfo
	for _, id := range ids {
		s, err := r.LoadSnapshot(ctx, id)
		if err != nil {
			if onErr == nil {
				return nil, err
			}
			onErr(id, err)
			continue
		}
		out = append(out, s)
	}
	slices.SortStableFunc(out, func(a, b *SnapshotInfo) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// FindSnapshot resolves "latest" (optionally of one name) or a unique ID
// prefix of at least 4 characters. For latest, snapshots that cannot be
// read (junk someone planted, or damaged ones) are skipped, so that one
// bad object does not stop every restore; FindSnapshotWarn says which.
func (r *Repo) FindSnapshot(ctx context.Context, ref, name string) (*SnapshotInfo, error) {
	return r.FindSnapshotWarn(ctx, ref, name, nil)
}

// FindSnapshotWarn is FindSnapshot that reports each snapshot latest
// skipped through warn (when not nil), with the reason.
func (r *Repo) FindSnapshotWarn(ctx context.Context, ref, name string, warn func(id string, err error)) (*SnapshotInfo, error) {
	if ref == "latest" {
		all, err := r.Snapshots(ctx, func(id string, err error) {
			if warn != nil {
				warn(id, err)
			}
		})
		if err != nil {
			return nil, err
		}
		return Latest(all, name)
	}
	ref = strings.ToLower(ref)
	if len(ref) < 4 || len(ref) > 64 || strings.Trim(ref, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("snapshot %q: give latest or at least 4 hex characters of a snapshot ID", ref)
	}
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	var match []string
	for _, id := range ids {
		if strings.HasPrefix(id, ref) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("%w: no snapshot ID starts with %s", ErrSnapshotNotFound, ref)
	case 1:
		return r.LoadSnapshot(ctx, match[0])
	}
	if s := r.onlyOwnSnapshot(ctx, match); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("snapshot prefix %s is ambiguous (%d snapshots match); give more characters", ref, len(match))
}

// onlyOwnSnapshot returns the one snapshot among ids that is not foreign
// (junk whose name was made to share a prefix with a real snapshot's), or
// nil when there is not exactly one.
func (r *Repo) onlyOwnSnapshot(ctx context.Context, ids []string) *SnapshotInfo {
	var own *SnapshotInfo
	for _, id := range ids {
		s, err := r.LoadSnapshot(ctx, id)
		switch {
		case IsForeign(err):
			continue
		case err != nil || own != nil:
			return nil
		}
		own = s
	}
	return own
}

// Latest returns the newest of snaps (sorted oldest first, as Snapshots
// returns them) with the given name, or of all when name is "".
func Latest(snaps []*SnapshotInfo, name string) (*SnapshotInfo, error) {
	for i := len(snaps) - 1; i >= 0; i-- {
		if name == "" || snaps[i].Name == name {
			return snaps[i], nil
		}
	}
	if name != "" {
		return nil, fmt.Errorf("%w: no snapshot named %q", ErrSnapshotNotFound, name)
	}
	return nil, fmt.Errorf("%w: the repository has no snapshots yet", ErrSnapshotNotFound)
}

// DiskRegions loads the region map IDs of a disk from its list chunks,
// checking that every list but the last is full.
func (r *Repo) DiskRegions(ctx context.Context, d *manifest.Disk) ([]crypto.ID, error) {
	lists, err := d.ListIDs()
	if err != nil {
		return nil, err
	}
	want := manifest.Regions(d.Size)
	var out []crypto.ID
	for i, lid := range lists {
		b, err := r.LoadBlob(ctx, lid)
		if err != nil {
			return nil, fmt.Errorf("disk %d map list %d: %w", d.Index, i, err)
		}
		ids, err := manifest.DecodeList(b)
		if err != nil {
			return nil, fmt.Errorf("disk %d map list %s: %w", d.Index, lid, err)
		}
		// A disk's lists are a function of its region maps: full lists,
		// then the rest.
		if i < len(lists)-1 && len(ids) != manifest.ListFanout {
			return nil, fmt.Errorf("disk %d map list %d (%s) names %d region maps, but every list but the last must name %d (the snapshot is malformed: restore another one, and run coffer check): %w",
				d.Index, i, lid, len(ids), manifest.ListFanout, manifest.ErrFormat)
		}
		out = append(out, ids...)
	}
	if len(out) != want {
		return nil, fmt.Errorf("disk %d: map lists name %d regions, want %d: %w", d.Index, len(out), want, manifest.ErrFormat)
	}
	return out, nil
}
