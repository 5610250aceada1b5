package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/xenrestore"
)

// xenRestoreFlags are restore's XenServer flags (those of backup --xen).
func addXenRestoreFlags(cmd *cobra.Command, x *xenFlags) {
	f := cmd.Flags()
	f.StringVar(&x.User, "xen-user", "", "with --to xapi://: XenServer user (default root); config xen.user")
	f.StringVar(&x.PasswordFile, "xen-password-file", "", "with --to xapi://: file holding the XenServer password; config xen.password_file")
	f.StringVar(&x.CA, "xen-ca", "", "with --to xapi://: PEM file of CA certificates for the pool's TLS certificate; config xen.ca")
	f.StringVar(&x.Fingerprint, "xen-fingerprint", "", "with --to xapi://: SHA-256 fingerprint of the pool master's TLS certificate; config xen.fingerprint")
	f.BoolVar(&x.plainLoopback, "xen-plain-loopback", false, "allow a plain http:// pool on a loopback address (tests and the simulator)")
	_ = f.MarkHidden("xen-plain-loopback")
}

// restoreToPool is restore --to xapi://HOST/SR: the VM of a xen snapshot
// recreated in a pool, halted.
func (g *globals) restoreToPool(ctx context.Context, r *repo.Repo, snap *repo.SnapshotInfo, t xenrestore.Target, x *xenFlags) error {
	conf, err := g.loadConfig()
	if err != nil {
		return err
	}
	var fileXen xenConfig
	if conf.Xen != nil {
		fileXen = *conf.Xen
	}
	c := x.merged(&fileXen)
	c.URL = "https://" + t.Host
	if x.plainLoopback {
		c.URL = "http://" + t.Host
	}
	xs, err := g.xenLogin(ctx, c, x.plainLoopback)
	if err != nil {
		return err
	}
	defer xs.Logout(context.WithoutCancel(ctx))
	start := clock.Start()
	events := func(msg string) {
		if g.json {
			g.printJSON(map[string]any{"type": "event", "vm": snap.Name, "message": msg})
			return
		}
		g.say("%s: %s", snap.Name, msg)
	}
	res, err := xenrestore.RestoreSnapshot(ctx, r, snap.Snapshot, xenrestore.SnapshotOptions{Xen: xs, SR: t.SR, Events: events})
	if err != nil {
		return fmt.Errorf("restoring VM %s of snapshot %s into %s: %w", snap.Name, snap.ID[:12], t.Host, err)
	}
	secs := start.Elapsed().Seconds()
	if g.json {
		g.printJSON(map[string]any{"type": "summary", "snapshot_id": snap.ID, "name": snap.Name, "pool": t.Host, "sr": t.SR,
			"vm_uuid": res.VMUUID, "vdis": res.VDIs, "duration_seconds": secs})
		return nil
	}
	g.say("restored VM %s (snapshot %s) into %s, SR %s: new VM %s, halted, %d disk(s), %.1fs", snap.Name, snap.ID[:12], t.Host, t.SR, res.VMUUID, len(res.VDIs), secs)
	return nil
}

var errXapiFlags = errors.New("--format, --delta, --disk and the overwrite flags do not apply to --to xapi://: the whole VM is recreated")
