package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/xenrestore"
)

// xapiTarget is restore --to xapi://HOST/SR: a pool's master and an SR (its
// UUID or name-label).
type xapiTarget struct {
	host, sr string
}

// parseXapiTarget parses --to when it is a xapi:// URL; ok is false for a
// path.
func parseXapiTarget(to string) (t xapiTarget, ok bool, err error) {
	if !strings.HasPrefix(to, "xapi://") {
		return t, false, nil
	}
	u, err := url.Parse(to)
	if err != nil {
		return t, true, usageError{Err: fmt.Errorf("--to %s: %w", to, err)}
	}
	t = xapiTarget{host: u.Host, sr: strings.TrimPrefix(u.Path, "/")}
	if t.host == "" || t.sr == "" || strings.Contains(t.sr, "/") || u.RawQuery != "" || u.User != nil {
		return t, true, usageError{Err: fmt.Errorf("--to %s: want xapi://HOST/SR, SR being the storage repository's UUID or name (URL-escaped)", to)}
	}
	return t, true, nil
}

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
func (g *globals) restoreToPool(ctx context.Context, r *repo.Repo, snap *repo.SnapshotInfo, t xapiTarget, x *xenFlags) error {
	conf, err := g.loadConfig()
	if err != nil {
		return err
	}
	var fileXen xenConfig
	if conf.Xen != nil {
		fileXen = *conf.Xen
	}
	c := x.merged(&fileXen)
	c.URL = "https://" + t.host
	if x.plainLoopback {
		c.URL = "http://" + t.host
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
	res, err := xenrestore.RestoreSnapshot(ctx, r, snap.Snapshot, xenrestore.SnapshotOptions{Xen: xs, SR: t.sr, Events: events})
	if err != nil {
		return fmt.Errorf("restoring VM %s of snapshot %s into %s: %w", snap.Name, snap.ID[:12], t.host, err)
	}
	secs := start.Elapsed().Seconds()
	if g.json {
		g.printJSON(map[string]any{"type": "summary", "snapshot_id": snap.ID, "name": snap.Name, "pool": t.host, "sr": t.sr,
			"vm_uuid": res.VMUUID, "vdis": res.VDIs, "duration_seconds": secs})
		return nil
	}
	g.say("restored VM %s (snapshot %s) into %s, SR %s: new VM %s, halted, %d disk(s), %.1fs", snap.Name, snap.ID[:12], t.host, t.sr, res.VMUUID, len(res.VDIs), secs)
	return nil
}

var errXapiFlags = errors.New("--format, --delta, --disk and the overwrite flags do not apply to --to xapi://: the whole VM is recreated")
