package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/localstate"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/xenapi"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/xenbackup"
)

// xenConfig is the xen: section of the agent config: a nightly run needs
// no flags. Flags override it.
type xenConfig struct {
	URL          string   `yaml:"url,omitempty"`
	User         string   `yaml:"user,omitempty"`
	PasswordFile string   `yaml:"password_file,omitempty"`
	CA           string   `yaml:"ca,omitempty"`
	Fingerprint  string   `yaml:"fingerprint,omitempty"`
	VMs          []string `yaml:"vms,omitempty"`
	All          bool     `yaml:"all,omitempty"`
	Exclude      []string `yaml:"exclude,omitempty"`
	Parallel     int      `yaml:"parallel,omitempty"`
}

// xenFlags are backup's XenServer flags.
type xenFlags struct {
	xenConfig
	plainLoopback bool
	fullRead      bool
}

func addXenFlags(cmd *cobra.Command, x *xenFlags) {
	f := cmd.Flags()
	f.StringVar(&x.URL, "xen", "", "back up VMs of the XenServer / XCP-ng pool at this URL (https://host); config xen.url")
	f.StringVar(&x.User, "xen-user", "", "XenServer user (default root); config xen.user")
	f.StringVar(&x.PasswordFile, "xen-password-file", "", "file holding the XenServer password; config xen.password_file")
	f.StringVar(&x.CA, "xen-ca", "", "PEM file of CA certificates to verify the pool's TLS certificate; config xen.ca")
	f.StringVar(&x.Fingerprint, "xen-fingerprint", "", "SHA-256 fingerprint of the pool master's TLS certificate, instead of a CA; config xen.fingerprint")
	f.StringSliceVar(&x.VMs, "vm", nil, "VM to back up, by name or UUID (repeatable); config xen.vms")
	f.BoolVar(&x.All, "all", false, "back up every VM of the pool (not templates, snapshots or the control domain); config xen.all")
	f.StringSliceVar(&x.Exclude, "exclude", nil, "VM not to back up, by name or UUID (repeatable); config xen.exclude")
	f.IntVar(&x.Parallel, "parallel", 0, "VMs backed up at once (default 2); config xen.parallel")
	f.BoolVar(&x.fullRead, "full-read", false, "read every disk whole even when its changed blocks are known (a periodic full read)")
	f.BoolVar(&x.plainLoopback, "xen-plain-loopback", false, "allow a plain http:// pool URL on a loopback address (tests and the simulator)")
	_ = f.MarkHidden("xen-plain-loopback")
}

// merged returns the flags over the config file's xen: section.
func (x *xenFlags) merged(c *xenConfig) xenConfig {
	m := *c
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&m.URL, x.URL)
	set(&m.User, x.User)
	set(&m.PasswordFile, x.PasswordFile)
	set(&m.CA, x.CA)
	set(&m.Fingerprint, x.Fingerprint)
	if len(x.VMs) > 0 || x.All {
		m.VMs, m.All = x.VMs, x.All
	}
	if len(x.Exclude) > 0 {
		m.Exclude = x.Exclude
	}
	if x.Parallel > 0 {
		m.Parallel = x.Parallel
	}
	if m.User == "" {
		m.User = "root"
	}
	return m
}

// wantsXen reports whether a backup is of XenServer VMs: --xen, or a
// config file with a pool and no --image.
func (x *xenFlags) wantsXen(c *xenConfig, image string) bool {
	return x.URL != "" || (image == "" && c != nil && c.URL != "")
}

// xenLogin logs in to the pool the merged flags name.
func (g *globals) xenLogin(ctx context.Context, c xenConfig, plainLoopback bool) (*xenapi.Session, error) {
	if c.PasswordFile == "" {
		return nil, usageError{Err: errors.New("a XenServer pool needs --xen-password-file (or xen.password_file in the config)")}
	}
	password, err := xenapi.ReadPasswordFile(c.PasswordFile)
	if err != nil {
		return nil, usageError{Err: err}
	}
	s, err := xenapi.Login(ctx, xenapi.Config{URL: c.URL, User: c.User, Password: password, CAFile: c.CA,
		Fingerprint: c.Fingerprint, AllowPlainLoopback: plainLoopback, Originator: "coffer"})
	if err != nil {
		return nil, fmt.Errorf("logging in to the XenServer pool %s: %w", c.URL, err)
	}
	return s, nil
}

// backupXen is coffer backup --xen: one night over a pool.
func (g *globals) backupXen(ctx context.Context, conf agentConfig, x *xenFlags, tags []string, uploaders int) error {
	var fileXen xenConfig
	if conf.Xen != nil {
		fileXen = *conf.Xen
	}
	c := x.merged(&fileXen)
	if len(c.VMs) == 0 && !c.All {
		return usageError{Err: errors.New("name the VMs to back up with --vm NAME|UUID (repeatable) or pick them all with --all")}
	}
	r, err := g.openRepo(ctx)
	if err != nil {
		return err
	}
	start := clock.Start()
	if err := g.loadIndex(ctx, r); err != nil {
		return err
	}
	if err := g.watchSeeds(ctx, r); err != nil {
		return err
	}
	xs, err := g.xenLogin(ctx, c, x.plainLoopback)
	if err != nil {
		return err
	}
	defer xs.Logout(context.WithoutCancel(ctx))
	res, err := g.xenNight(ctx, r, xs, c, x.fullRead, tags, uploader.SessionOptions{Uploaders: uploaders})
	if err != nil {
		return err
	}
	res.Duration = start.Elapsed()
	g.xenSummary(res)
	return xenFailure(res)
}

// xenNight backs up the VMs c names (or all of them) of the pool xs is
// logged in to, into r (its index loaded), and remembers the snapshots on
// this machine. coffer backup --xen, coffer agent's pools and coffer seed
// export (its own so.StateDir) use it.
func (g *globals) xenNight(ctx context.Context, r *repo.Repo, xs *xenapi.Session, c xenConfig, fullRead bool, tags []string, so uploader.SessionOptions) (*xenbackup.Result, error) {
	if so.StateDir == "" {
		so.StateDir = stateDir(r)
	}
	so.CacheDir = cacheDir(r)
	unusable, err := g.unusableParents(ctx, r)
	if err != nil {
		return nil, err
	}
	res, err := xenbackup.Run(ctx, xenbackup.Options{
		Xen: xs, Repo: r, Session: so,
		VMs: c.VMs, All: c.All, Exclude: c.Exclude, Parallel: c.Parallel, Tags: tags, FullRead: fullRead,
		UnusableParents: unusable, Events: g.xenEvent,
	})
	if err != nil {
		return nil, quotaHint(err)
	}
	g.rememberXen(r.Config().ID, res)
	return res, nil
}

// xenFailure is the error of a night in which VMs failed: a partialError
// (exit 3) when others were saved.
func xenFailure(res *xenbackup.Result) error {
	failed := res.Failed()
	if len(failed) == 0 {
		return nil
	}
	names := make([]string, len(failed))
	for i, f := range failed {
		names[i] = f.Name
	}
	if len(failed) == len(res.VMs) {
		if len(failed) == 1 {
			return fmt.Errorf("VM %s was not backed up: %w", names[0], failed[0].Err)
		}
		return fmt.Errorf("none of the %d VMs was backed up: %s", len(failed), strings.Join(names, ", "))
	}
	return partialError{fmt.Errorf("%d of %d VMs were not backed up: %s", len(failed), len(res.VMs), strings.Join(names, ", "))}
}

func (g *globals) xenEvent(e xenbackup.Event) {
	if g.json {
		g.printJSON(map[string]any{"type": "event", "vm": e.VM, "message": e.Message})
		return
	}
	if e.VM != "" {
		g.say("%s: %s", termtext.Clean(e.VM), termtext.Clean(e.Message))
		return
	}
	g.say("%s", termtext.Clean(e.Message))
}

// rememberXen records the snapshots a night wrote (rememberSnapshot).
func (g *globals) rememberXen(repoID string, res *xenbackup.Result) {
	dir := localstate.Dir(repoID)
	if dir == "" || g.exporting {
		return
	}
	for _, v := range res.VMs {
		if v.SnapshotID == "" {
			continue
		}
		if err := localstate.Record(dir, v.SnapshotName, v.SnapshotID, v.Time); err != nil {
			fmt.Fprintf(g.stderr, "coffer: warning: could not remember snapshot %s on this machine: %s\n", v.SnapshotID[:12], termtext.Clean(err.Error()))
		}
	}
}

// partialError ends a night in which some VMs failed: exit code 3.
type partialError struct{ error }

func (e partialError) Unwrap() error { return e.error }

// xenSummary prints what a night did: a line per VM and the totals, or
// one JSON summary.
func (g *globals) xenSummary(res *xenbackup.Result) {
	for _, w := range res.Session.Warnings {
		fmt.Fprintf(g.stderr, "coffer: warning: %s\n", termtext.Clean(w))
	}
	for _, w := range res.Cleanup.Warnings {
		fmt.Fprintf(g.stderr, "coffer: warning: cleaning up the pool: %s\n", termtext.Clean(w))
	}
	if g.json {
		g.printJSON(xenSummaryJSON(res, g.counting.Requests()))
		return
	}
	for _, v := range res.VMs {
		for _, w := range v.Warnings {
			fmt.Fprintf(g.stderr, "coffer: warning: VM %s: %s\n", termtext.Clean(v.Name), termtext.Clean(w))
		}
		if v.Err != nil {
			g.say("VM %s: FAILED: %s", termtext.Clean(v.Name), termtext.CleanLines(v.Err.Error()))
			continue
		}
		g.say("VM %s: snapshot %s saved in %.1fs", termtext.Clean(v.Name), v.SnapshotID[:12], v.Duration.Seconds())
		for _, d := range v.Disks {
			how := fmt.Sprintf("%d changed blocks", d.ChangedBlocks)
			if d.Read == "full" {
				how = "whole disk (" + termtext.Clean(d.Reason) + ")"
			}
			g.say("  disk %s  %s, read %s, new %s: %s", d.UserDevice, humanBytes(d.Size), humanBytes(d.ReadBytes), humanBytes(d.NewBytes), how)
		}
	}
	g.say("stored %s in %d packs; %.1fs in all", humanBytes(res.StoredBytes), res.Packs, res.Duration.Seconds())
}

// xenVMJSON is one VM in the JSON summary of a night.
type xenVMJSON struct {
	Name       string        `json:"name"`
	UUID       string        `json:"uuid,omitempty"`
	SnapshotID string        `json:"snapshot_id,omitempty"`
	OK         bool          `json:"ok"`
	Error      string        `json:"error,omitempty"`
	Warnings   []string      `json:"warnings"`
	Seconds    float64       `json:"duration_seconds"`
	Disks      []xenDiskJSON `json:"disks"`
}

type xenDiskJSON struct {
	UserDevice    string `json:"userdevice"`
	VDI           string `json:"vdi"`
	Size          int64  `json:"size"`
	Read          string `json:"read"`
	Reason        string `json:"reason,omitempty"`
	ChangedBlocks int64  `json:"changed_blocks"`
	BytesRead     int64  `json:"bytes_read"`
	BytesFetched  int64  `json:"bytes_fetched"`
	BytesNew      int64  `json:"bytes_new"`
	Reconnects    int64  `json:"nbd_reconnects"`
}

func xenSummaryJSON(res *xenbackup.Result, requests int64) map[string]any {
	vms := make([]xenVMJSON, 0, len(res.VMs))
	for _, v := range res.VMs {
		j := xenVMJSON{Name: v.Name, UUID: v.UUID, SnapshotID: v.SnapshotID, OK: v.Err == nil, Warnings: v.Warnings,
			Seconds: v.Duration.Seconds(), Disks: []xenDiskJSON{}}
		if j.Warnings == nil {
			j.Warnings = []string{}
		}
		if v.Err != nil {
			j.Error = v.Err.Error()
		}
		for _, d := range v.Disks {
			j.Disks = append(j.Disks, xenDiskJSON{UserDevice: d.UserDevice, VDI: d.VDI, Size: d.Size, Read: d.Read, Reason: d.Reason,
				ChangedBlocks: d.ChangedBlocks, BytesRead: d.ReadBytes, BytesFetched: d.Fetched, BytesNew: d.NewBytes, Reconnects: d.Reconnects})
		}
		vms = append(vms, j)
	}
	return map[string]any{
		"type": "summary", "vms": vms, "failed": len(res.Failed()),
		"bytes_stored_new": res.StoredBytes, "packs_new": res.Packs,
		"orphan_scan": res.Session.OrphanScan, "recovered_packs": res.Session.RecoveredPacks,
		"cleanup": map[string]any{"orphan_snapshots": res.Cleanup.OrphanSnapshots, "finished_snapshots": res.Cleanup.FinishedSnapshots,
			"detached": res.Cleanup.Detached},
		"store_requests": requests, "duration_seconds": res.Duration.Seconds(),
	}
}
