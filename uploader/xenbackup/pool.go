package xenbackup

import (
	"context"
	"fmt"
	"sort"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/nbd"
	"github.com/cofferhq/coffer/internal/xenapi"
	"github.com/cofferhq/coffer/uploader"
)

// night is one run over one pool.
type night struct {
	opt     Options
	clock   clock.Clock
	session *uploader.Session

	poolUUID string
	vms      map[xenapi.Ref]xenapi.VM
	dom0     xenapi.Ref
	hostNBD  *nbd.HostLimit

	// latest is the newest Coffer snapshot of each VM (by VM UUID) in the
	// repository, with its ID; kept names the snapshot VDIs those newest
	// snapshots keep as bases.
	latest map[string]*repoSnapshot
	kept   map[string]bool
	// older names the snapshot VDIs earlier Coffer snapshots (not the
	// newest of their VM) kept: bases a run that died may have left.
	older map[string]bool
}

type repoSnapshot struct {
	id   string
	snap *manifest.Snapshot
}

type vmTarget struct {
	ref xenapi.Ref
	vm  xenapi.VM
}

// loadPool reads the pool's UUID and its VMs.
func (n *night) loadPool(ctx context.Context) error {
	x := n.opt.Xen
	_, pool, err := x.GetPool(ctx)
	if err != nil {
		return fmt.Errorf("reading the pool: %w", err)
	}
	if !manifest.ValidUUID(pool.UUID) {
		return fmt.Errorf("the pool's UUID %q is not a UUID", pool.UUID)
	}
	n.poolUUID = pool.UUID
	if n.vms, err = x.GetAllVMs(ctx); err != nil {
		return fmt.Errorf("listing the pool's VMs: %w", err)
	}
	for ref, vm := range n.vms {
		if vm.IsControlDomain {
			n.dom0 = ref
		}
	}
	perHost := n.opt.NBD.ConnsPerHost
	if perHost <= 0 {
		perHost = 16
	}
	n.hostNBD = nbd.NewHostLimit(perHost)
	return nil
}

// loadHistory finds this pool's VMs in the repository's snapshots.
func (n *night) loadHistory(ctx context.Context) error {
	snaps, err := n.opt.Repo.Snapshots(ctx, func(id string, err error) {
		n.event("", "snapshot %s is unreadable and ignored: %v", id, err)
	})
	if err != nil {
		return fmt.Errorf("reading the repository's snapshots: %w", err)
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Time.Before(snaps[j].Time) })
	n.latest = map[string]*repoSnapshot{}
	n.kept = map[string]bool{}
	n.older = map[string]bool{}
	for _, s := range snaps {
		x := s.Source.Xen
		if s.Source.Kind != "xen" || x == nil || x.Pool != n.poolUUID {
			continue
		}
		if prev := n.latest[x.VM]; prev != nil {
			for _, d := range prev.snap.Disks {
				if d.Xen != nil && d.Xen.Kept != manifest.XenKeptNone {
					n.older[d.Xen.SnapshotVDI] = true
				}
			}
		}
		n.latest[x.VM] = &repoSnapshot{id: s.ID, snap: s.Snapshot}
	}
	for _, s := range n.latest {
		for _, d := range s.snap.Disks {
			if d.Xen != nil && d.Xen.Kept != manifest.XenKeptNone {
				n.kept[d.Xen.SnapshotVDI] = true
			}
		}
	}
	return nil
}
