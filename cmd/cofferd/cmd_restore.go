package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/restore"
	"github.com/cofferhq/coffer/internal/xenrestore"
)

// restoreOut is cofferd restore's --json summary.
type restoreOut struct {
	Type       string  `json:"type"`
	Tenant     string  `json:"tenant"`
	SnapshotID string  `json:"snapshot_id"`
	Name       string  `json:"name"`
	Time       string  `json:"time"`
	Disk       int     `json:"disk"`
	To         string  `json:"to"`
	Format     string  `json:"format"`
	Size       int64   `json:"size"`
	Written    int64   `json:"bytes_written"`
	Fetched    int64   `json:"bytes_fetched"`
	Chunks     int     `json:"chunks"`
	Verified   bool    `json:"verified"`
	Digest     string  `json:"digest"`
	Seconds    float64 `json:"duration_seconds"`
}

func newRestoreCmd(g *globals) *cobra.Command {
	var tenant, name, to, format, escrowKey string
	var disk int
	var overwrite bool
	var pool poolFlags
	c := &cobra.Command{
		Use:   "restore --tenant NAME SNAPSHOT|latest --to PATH --escrow-key FILE",
		Short: "Restore a disk of a tenant's snapshot in the provider's cloud",
		Long: `Restore one disk of a tenant's snapshot (an ID prefix, or "latest" with
--name) from the vault's store to a new image file (--format raw, vhd or
qcow2), as coffer restore does on the tenant's side. The tenant's repository is opened read-only with the
provider's escrow identity (--escrow-key, the file cofferd escrow init wrote);
a tenant that did not choose escrow restores with its own agent. Every block
is checked against the hashes recorded at backup and the whole-disk digest.
With --to xapi://HOST/SR (and the --xen-* flags) the VM of a XenServer
snapshot is recreated in the provider's pool instead, halted: a VDI per disk
uploaded sparse, then the VM from the metadata recorded at backup.
Exit 12: the escrow identity does not open the tenant's repository.`,
		Args: oneSnapshot("restore"),
		RunE: func(c *cobra.Command, args []string) error {
			if tenant == "" || to == "" {
				return usageError{Err: errors.New("restore needs --tenant NAME and --to PATH")}
			}
			fm, err := restore.ParseFormat(format)
			if err != nil {
				return usageError{Err: fmt.Errorf("--format: %w", err)}
			}
			target, toPool, err := xenrestore.ParseTarget(to)
			if err != nil {
				return usageError{Err: err}
			}
			if toPool && (fm != restore.FormatRaw || overwrite || c.Flags().Changed("disk")) {
				return usageError{Err: errors.New("--format, --disk and --overwrite do not apply to --to xapi://: the whole VM is recreated")}
			}
			ctx := c.Context()
			tr, snap, err := g.tenantSnapshot(ctx, tenant, escrowKey, args[0], name)
			if err != nil {
				return err
			}
			defer tr.close()
			if toPool {
				return g.restoreToPool(ctx, tr.tenant.Name, tr.repo, snap, target, pool)
			}
			if disk < 0 || disk >= len(snap.Disks) {
				return usageError{Err: fmt.Errorf("snapshot %s has %d disk(s); --disk %d does not exist", snap.ID[:12], len(snap.Disks), disk)}
			}
			res, err := restore.New(tr.repo, &snap.Disks[disk], restore.Options{Overwrite: overwrite, Format: fm}).Run(ctx, to)
			if err != nil {
				return fmt.Errorf("tenant %s snapshot %s disk %d: %w", tr.tenant.Name, snap.ID[:12], disk, err)
			}
			out := restoreOut{Type: "summary", Tenant: tr.tenant.Name, SnapshotID: snap.ID, Name: snap.Name,
				Time: snap.Time.UTC().Format(time.RFC3339), Disk: disk, To: to, Format: string(res.Format), Size: res.Size,
				Written: res.Written, Fetched: res.Fetched, Chunks: res.Chunks, Verified: res.Verified,
				Digest: res.Digest, Seconds: res.Duration.Seconds()}
			if g.json {
				return g.printJSON(out)
			}
			fmt.Fprintf(g.stdout, "restored tenant %s snapshot %s of %s (taken %s) disk %d to %s: %d bytes, fetched %d, verified against digest %.16s..., %.1fs\n",
				out.Tenant, snap.ID[:12], snap.Name, out.Time, disk, to, res.Size, res.Fetched, res.Digest, out.Seconds)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&tenant, "tenant", "", "tenant name or id")
	f.StringVar(&name, "name", "", "with latest: the newest snapshot of this name (VM)")
	f.IntVar(&disk, "disk", 0, "which disk of the snapshot")
	f.StringVar(&to, "to", "", "output file (must not exist unless --overwrite)")
	f.StringVar(&format, "format", "raw", "output format: raw, vhd (dynamic, at most 2040 GiB) or qcow2")
	f.StringVar(&escrowKey, "escrow-key", "", "the escrow identity file (cofferd escrow init)")
	addPoolFlags(c, &pool)
	f.BoolVar(&overwrite, "overwrite", false, "replace an existing output file (only once the restored disk is verified)")
	return c
}
