package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/xenapi"
	"github.com/cofferhq/coffer/internal/xenrestore"
)

// poolFlags are restore's flags for a XenServer pool (--to xapi://).
type poolFlags struct {
	user, passwordFile, ca, fingerprint string
	plainLoopback                       bool
}

func addPoolFlags(c *cobra.Command, p *poolFlags) {
	f := c.Flags()
	f.StringVar(&p.user, "xen-user", "root", "with --to xapi://: the pool's user")
	f.StringVar(&p.passwordFile, "xen-password-file", "", "with --to xapi://: file holding the pool's password")
	f.StringVar(&p.ca, "xen-ca", "", "with --to xapi://: PEM file of CA certificates for the pool's TLS certificate")
	f.StringVar(&p.fingerprint, "xen-fingerprint", "", "with --to xapi://: SHA-256 fingerprint of the pool master's TLS certificate")
	f.BoolVar(&p.plainLoopback, "xen-plain-loopback", false, "allow a plain http:// pool on a loopback address (tests and the simulator)")
	_ = f.MarkHidden("xen-plain-loopback")
}

// poolRestoreOut is cofferd restore --to xapi://'s --json summary.
type poolRestoreOut struct {
	Type       string   `json:"type"`
	Tenant     string   `json:"tenant"`
	SnapshotID string   `json:"snapshot_id"`
	Name       string   `json:"name"`
	Pool       string   `json:"pool"`
	SR         string   `json:"sr"`
	VMUUID     string   `json:"vm_uuid"`
	VDIs       []string `json:"vdis"`
	Seconds    float64  `json:"duration_seconds"`
}

// restoreToPool recreates the VM of a tenant's snapshot in the provider's
// pool, halted.
func (g *globals) restoreToPool(ctx context.Context, tenant string, r *repo.Repo, snap *repo.SnapshotInfo, t xenrestore.Target, p poolFlags) error {
	password, err := xenapi.ReadPasswordFile(p.passwordFile)
	if err != nil {
		return usageError{Err: err}
	}
	scheme := "https://"
	if p.plainLoopback {
		scheme = "http://"
	}
	xs, err := xenapi.Login(ctx, xenapi.Config{URL: scheme + t.Host, User: p.user, Password: password, CAFile: p.ca,
		Fingerprint: p.fingerprint, AllowPlainLoopback: p.plainLoopback, Originator: "cofferd"})
	if err != nil {
		return fmt.Errorf("logging in to the XenServer pool %s: %w", t.Host, err)
	}
	defer xs.Logout(context.WithoutCancel(ctx))
	start := clock.Start()
	events := func(msg string) { g.log.Info(msg, "tenant", tenant, "vm", snap.Name) }
	res, err := xenrestore.RestoreSnapshot(ctx, r, snap.Snapshot, xenrestore.SnapshotOptions{Xen: xs, SR: t.SR, Events: events})
	if err != nil {
		return fmt.Errorf("tenant %s: restoring VM %s of snapshot %s into %s: %w", tenant, snap.Name, snap.ID[:12], t.Host, err)
	}
	out := poolRestoreOut{Type: "summary", Tenant: tenant, SnapshotID: snap.ID, Name: snap.Name, Pool: t.Host, SR: t.SR,
		VMUUID: res.VMUUID, VDIs: res.VDIs, Seconds: start.Elapsed().Seconds()}
	if g.json {
		return g.printJSON(out)
	}
	fmt.Fprintf(g.stdout, "restored tenant %s VM %s (snapshot %s, taken %s) into %s, SR %s: new VM %s, halted, %d disk(s), %.1fs\n",
		tenant, snap.Name, snap.ID[:12], snap.Time.UTC().Format(time.RFC3339), t.Host, t.SR, res.VMUUID, len(res.VDIs), out.Seconds)
	return nil
}
