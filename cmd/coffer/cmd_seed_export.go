package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/agent"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
)

// seedExportFlags are coffer seed export's flags.
type seedExportFlags struct {
	to, uplink, parity string
	image, name        string
	tags               []string
	uploaders          int
	xen                xenFlags
}

func newSeedExportCmd(g *globals) *cobra.Command {
	var f seedExportFlags
	cmd := &cobra.Command{
		Use:   "export --to DIR [--uplink RATE] [--parity PERCENT] (--image PATH [--name NAME] | --xen URL (--vm NAME|UUID ... | --all))",
		Short: "Back up into a seed on a portable disk instead of uploading",
		Long: `Back up the image or the VMs as coffer backup would, but write every new
object (packs, index files, receipts, snapshots) into DIR/coffer-seed/
instead of uploading it; the repository's config, keys and index are read
as usual. Then write Reed-Solomon parity (--parity, default 5%: the import
survives the loss or damage of any 5% of the seed's files) and the signed
manifest, register the seed with the vault and send it the small objects
(index files, receipts, snapshots; never packs). It prints what to ship
and how long the same bytes would take over the WAN at --uplink.

An interrupted export resumes when run again with the same DIR: packs
already written are kept, the seed keeps its ID. Run again after it
finished, it only registers and sends what the vault lacks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.seedExport(cmd.Context(), &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.to, "to", "", "the directory to write the seed into (the portable disk); the seed goes to DIR/coffer-seed")
	fl.StringVar(&f.uplink, "uplink", "20Mbit", "the uplink the WAN estimate assumes, like 20Mbit or 100Mbit")
	fl.StringVar(&f.parity, "parity", "5%", "the share of the seed's files the import survives losing or finding damaged (at most 50%)")
	fl.StringVar(&f.image, "image", "", "raw disk image file or block device to export")
	fl.StringVar(&f.name, "name", "", "snapshot name (default: the image's file name)")
	fl.StringSliceVar(&f.tags, "tag", nil, "label the snapshots (repeatable)")
	fl.IntVar(&f.uploaders, "uploaders", 0, "concurrent pack writes (default 4)")
	addXenFlags(cmd, &f.xen)
	return cmd
}

// seedExportJSON is coffer seed export's --json summary.
type seedExportJSON struct {
	Type        string             `json:"type"` // "seed_export"
	Seed        string             `json:"seed"`
	Dir         string             `json:"dir"`
	Snapshots   []string           `json:"snapshots"`
	Objects     int                `json:"objects"`
	Bytes       int64              `json:"bytes"`
	ParityShare float64            `json:"parity_share"`
	ParityFiles int                `json:"parity_files"`
	ParityBytes int64              `json:"parity_bytes"`
	Resumed     bool               `json:"resumed"`
	Registered  bool               `json:"registered"`
	Sent        *seed.SendReport   `json:"sent,omitempty"`
	Uplink      int64              `json:"uplink_bits_per_second"`
	WANSeconds  float64            `json:"wan_seconds"`
	Vault       *vaultapi.SeedInfo `json:"vault,omitempty"`
}

// seedExport is coffer seed export.
func (g *globals) seedExport(ctx context.Context, f *seedExportFlags) error {
	share, uplink, err := f.check()
	if err != nil {
		return err
	}
	root := seed.Root(f.to)
	if err := os.MkdirAll(filepath.Join(root, seed.ObjectsDir), 0o755); err != nil {
		return fmt.Errorf("making the seed's directory in %s: %w", f.to, err)
	}
	id, err := seed.ExportID(root)
	if err != nil {
		return err
	}
	ex, err := g.openExport(ctx, root, id)
	if err != nil {
		return err
	}
	defer ex.r.Store().Close()
	s, resumed, err := g.writeSeed(ctx, ex, f, share)
	if err != nil {
		return err
	}
	out := seedExportJSON{Type: "seed_export", Seed: id, Dir: root, Snapshots: s.Manifest.Snapshots, Objects: len(s.Manifest.Objects),
		Bytes: s.Manifest.Bytes(), ParityShare: s.Manifest.Parity.Share, ParityFiles: len(s.Manifest.Parity.Files),
		Resumed: resumed, Uplink: uplink * 8, WANSeconds: wanTime(s.Manifest.Bytes(), uplink).Seconds()}
	for _, p := range s.Manifest.Parity.Files {
		out.ParityBytes += p.Size
	}
	if err := g.registerExport(ctx, ex, s, &out); err != nil {
		return err
	}
	g.seedExportSummary(&out, f.to)
	return nil
}

// check reads the flags: the parity share and the uplink in bytes/s.
func (f *seedExportFlags) check() (float64, int64, error) {
	if f.to == "" {
		return 0, 0, usageError{Err: errors.New("seed export needs --to DIR: the directory on the disk to ship")}
	}
	share, err := parseParity(f.parity)
	if err != nil {
		return 0, 0, usageError{Err: err}
	}
	uplink, err := agent.ParseRate(f.uplink)
	if err != nil || uplink <= 0 {
		return 0, 0, usageError{Err: fmt.Errorf("--uplink %q: give the uplink's rate, like 20Mbit (%v)", f.uplink, err)}
	}
	return share, uplink, nil
}

// seedExportRun is an export's open repository: the overlay of the seed's
// objects over the repository.
type seedExportRun struct {
	root, id string
	r        *repo.Repo
	top      *store.Local
	base     store.Store // the repository (retried)
	vault    *url.URL    // nil when the repository is not in a vault
	tenantID string
	tenant   string
}

// openExport opens the repository with the seed's objects over it: new
// objects go into the seed, reads look there first. Receipts name the
// seed when their snapshot needs a pack the seed holds.
func (g *globals) openExport(ctx context.Context, root, id string) (*seedExportRun, error) {
	u, err := g.repository()
	if err != nil {
		return nil, err
	}
	base, err := g.openStore(ctx, u, false)
	if err != nil {
		return nil, err
	}
	ex := &seedExportRun{root: root, id: id, base: base, vault: vaultURL(u)}
	if ex.top, err = store.OpenLocal(filepath.Join(root, seed.ObjectsDir), false); err != nil {
		base.Close()
		return nil, fmt.Errorf("the seed's objects in %s: %w", root, err)
	}
	// With the vault's upload sessions: its garbage collector keeps the
	// packs the export may reuse while it runs, however long.
	ov := store.NewOverlay(ex.top, base).WithSessions()
	cfg, _, _, err := repo.ReadConfig(ctx, ov)
	if err == nil {
		ex.r, err = g.unlockRepo(ctx, ov, cfg, true)
	}
	if err != nil {
		ov.Close()
		return nil, err
	}
	ex.r.SetReceiptSeed(func(packs []pack.ID) string {
		for _, p := range packs {
			if _, err := ex.top.Stat(ctx, repo.PackName(p)); err == nil {
				return id
			}
		}
		return ""
	})
	if err := g.exportTenant(ctx, ex); err != nil {
		ov.Close()
		return nil, err
	}
	return ex, nil
}

// exportTenant learns the vault's tenant for the manifest and tells the
// vault the signing key first (a mismatch stops the export before any
// work). A repository not in a vault has no tenant: the manifest names
// the first 24 digits of the repository's ID instead, and the seed cannot
// be registered.
func (g *globals) exportTenant(ctx context.Context, ex *seedExportRun) error {
	if ex.vault == nil {
		ex.tenantID = ex.r.Config().ID[:24]
		return nil
	}
	t, err := g.vaultTenantInfo(ctx, ex.vault)
	if err != nil {
		return fmt.Errorf("asking the vault for this agent's tenant: %w", err)
	}
	if !vaultapi.ValidTenantID(t.ID) {
		return fmt.Errorf("the vault at %s named tenant id %q, which is malformed", ex.vault, termtext.Clip(t.ID, 40))
	}
	ex.tenantID, ex.tenant = t.ID, t.Name
	if err := g.registerSigningKey(ctx, ex.vault, "", ex.r); err != nil {
		return fmt.Errorf("telling the vault the repository's seed signing key: %w", err)
	}
	return g.oneSeedAtATime(ctx, ex)
}

// oneSeedAtATime refuses to begin an export while another seed of the
// tenant travels (the vault would refuse to register it), or to resume
// one the tenant cancelled.
func (g *globals) oneSeedAtATime(ctx context.Context, ex *seedExportRun) error {
	v, err := g.seedVault(ex.vault, "")
	if err != nil {
		return err
	}
	defer v.Close()
	seeds, err := v.Seeds(ctx)
	if err != nil {
		return fmt.Errorf("asking the vault for the tenant's seeds: %w", err)
	}
	for _, s := range seeds {
		if s.State == vaultapi.SeedCancelled && s.ID == ex.id {
			return fmt.Errorf("seed %s in %s %s: it will never be imported; export a new seed into an empty directory",
				s.ID[:12], ex.root, cancelText(&s))
		}
		if s.State == vaultapi.SeedTravelling && s.ID != ex.id {
			return fmt.Errorf("seed %s (exported %s from %s) is still in transit, and the vault takes one seed at a time: "+
				"export this one once that seed is imported (coffer seed status)", s.ID[:12], s.Created.UTC().Format(time.DateTime), s.Host)
		}
	}
	return nil
}

// writeSeed backs up into the seed (unless an earlier run did) and
// finishes it (unless an earlier run did). resumed reports that an
// earlier run had finished it.
func (g *globals) writeSeed(ctx context.Context, ex *seedExportRun, f *seedExportFlags, share float64) (*seed.Seed, bool, error) {
	pub := ex.r.Keys().SigningKey().Public()
	if s, err := seed.Open(ex.root); err == nil && s.Manifest.ID == ex.id && s.Verify(pub) == nil {
		g.say("seed %s was finished by an earlier run: registering it and sending what the vault lacks", ex.id[:12])
		return s, true, nil
	}
	_, done, err := seed.BackedUp(ex.root)
	if err != nil {
		return nil, false, err
	}
	if !done {
		if err := g.loadIndex(ctx, ex.r); err != nil {
			return nil, false, err
		}
		snaps, err := g.exportBackup(ctx, ex, f)
		if err != nil {
			return nil, false, err
		}
		if err := seed.MarkBackedUp(ex.root, snaps); err != nil {
			return nil, false, err
		}
	}
	if err := g.finishSeed(ctx, ex, share); err != nil {
		return nil, false, err
	}
	s, err := seed.Open(ex.root)
	if err != nil {
		return nil, false, err
	}
	return s, false, s.Verify(pub)
}

// exportBackup backs up the flags' source into the export's repository
// and returns the snapshots it wrote.
func (g *globals) exportBackup(ctx context.Context, ex *seedExportRun, f *seedExportFlags) ([]string, error) {
	conf, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	state := seed.StatePath(ex.root)
	g.exporting = true
	if f.xen.wantsXen(conf.Xen, f.image) {
		if f.image != "" || f.name != "" {
			return nil, usageError{Err: errors.New("export either --image [--name] or --xen, not both")}
		}
		return g.exportXen(ctx, ex, conf, f, state)
	}
	if f.image == "" {
		return nil, usageError{Err: errors.New("seed export needs --image PATH, or --xen URL with --vm NAME or --all")}
	}
	name := f.name
	if name == "" {
		name = filepath.Base(f.image)
	}
	src, err := source.OpenImage(f.image)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	start := clock.Start()
	res, err := g.backupImage(ctx, ex.r, src, uploader.Options{Name: name, Tags: f.tags, Uploaders: f.uploaders, StateDir: state})
	if err != nil {
		return nil, err
	}
	res.Duration = start.Elapsed()
	if !g.json {
		g.backupSummary(res)
	}
	return []string{res.SnapshotID}, nil
}

// exportXen backs up VMs into the export's repository.
func (g *globals) exportXen(ctx context.Context, ex *seedExportRun, conf agentConfig, f *seedExportFlags, state string) ([]string, error) {
	var fileXen xenConfig
	if conf.Xen != nil {
		fileXen = *conf.Xen
	}
	c := f.xen.merged(&fileXen)
	if len(c.VMs) == 0 && !c.All {
		return nil, usageError{Err: errors.New("name the VMs to export with --vm NAME|UUID (repeatable) or pick them all with --all")}
	}
	xs, err := g.xenLogin(ctx, c, f.xen.plainLoopback)
	if err != nil {
		return nil, err
	}
	defer xs.Logout(context.WithoutCancel(ctx))
	start := clock.Start()
	res, err := g.xenNight(ctx, ex.r, xs, c, f.xen.fullRead, f.tags, uploader.SessionOptions{Uploaders: f.uploaders, StateDir: state})
	if err != nil {
		return nil, err
	}
	res.Duration = start.Elapsed()
	if !g.json {
		g.xenSummary(res)
	}
	if err := xenFailure(res); err != nil {
		return nil, fmt.Errorf("%w; the seed is not finished: run the same export again once the VMs can be read", err)
	}
	var snaps []string
	for _, v := range res.VMs {
		snaps = append(snaps, v.SnapshotID)
	}
	return snaps, nil
}

// finishSeed writes the seed's parity and signed manifest.
func (g *globals) finishSeed(ctx context.Context, ex *seedExportRun, share float64) error {
	var total int64
	if err := ex.top.List(ctx, "", func(i store.Info) error { total += i.Size; return nil }); err != nil {
		return err
	}
	host, _ := os.Hostname()
	m := &seed.Manifest{Format: seed.Format, ID: ex.id, Tenant: ex.tenantID, TenantName: ex.tenant, Repository: ex.r.Config().ID,
		Created: clock.Real.Now().UTC(), Host: host, Signer: ex.r.Keys().SigningKey().Public()}
	var done atomic.Int64
	stop := g.showProgress(ctx, "seed parity", 2*total, func() progressSample {
		return progressSample{done: done.Load(), desc: "hashing, writing parity"}
	})
	err := seed.Finish(ctx, ex.root, m, ex.r.Keys().SigningKey(), seed.FinishOptions{Share: share, Progress: func(n int64) { done.Add(n) }})
	stop()
	if err != nil {
		return fmt.Errorf("finishing the seed in %s: %w; run the same export again to finish it", ex.root, err)
	}
	return nil
}

// registerExport registers the seed with the vault and sends it the
// seed's index files, receipts and snapshots.
func (g *globals) registerExport(ctx context.Context, ex *seedExportRun, s *seed.Seed, out *seedExportJSON) error {
	if ex.vault == nil {
		fmt.Fprintf(g.stderr, "coffer: notice: the repository is not in a vault: seed %s was not registered and nothing was sent; "+
			"its manifest names the repository (%s) where a vault tenant would be\n", ex.id[:12], ex.tenantID)
		return nil
	}
	v, err := g.seedVault(ex.vault, "")
	if err != nil {
		return err
	}
	defer v.Close()
	info, err := v.RegisterSeed(ctx, ex.id, s.Body, s.Sig)
	if err != nil {
		return fmt.Errorf("the seed in %s is complete, but registering it with the vault failed: %w; run the same export again to register it", ex.root, err)
	}
	out.Registered, out.Vault = true, info
	meta, err := metadataPacks(ctx, ex.r, s.Manifest)
	if err != nil {
		return err
	}
	rep, err := s.SendSmall(ctx, ex.base, meta)
	if err != nil {
		return fmt.Errorf("the seed is registered, but sending its index files, receipts and snapshots failed: %w; run the same export again to send the rest", err)
	}
	out.Sent = &rep
	return nil
}

// seedExportSummary prints what was exported, what to ship, and the WAN
// estimate.
func (g *globals) seedExportSummary(out *seedExportJSON, dir string) {
	if out.Snapshots == nil {
		out.Snapshots = []string{}
	}
	if g.json {
		g.printJSON(out)
		return
	}
	g.say("seed %s", out.Seed)
	g.say("  snapshots %d, objects %d, %s", len(out.Snapshots), out.Objects, humanBytes(out.Bytes))
	files := "files"
	if out.ParityFiles == 1 {
		files = "file"
	}
	g.say("  parity    %d %s, %s: any %g%% of the seed's files may be lost or damaged", out.ParityFiles, files, humanBytes(out.ParityBytes), 100*out.ParityShare)
	if out.Sent != nil {
		g.say("  vault     registered; sent %d index files, receipts and snapshots (%s), %d there already", out.Sent.Sent, humanBytes(out.Sent.Bytes), out.Sent.Present)
	}
	g.say("ship %s", dir)
	g.say("over the WAN at %s this would take %s", bitRateText(out.Uplink/8), durationText(time.Duration(out.WANSeconds*float64(time.Second))))
}

// metadataPacks returns the IDs of the seed's packs of snapshot metadata
// (region maps, map lists, VM metadata), read from their headers in the
// seed: they travel over the WAN with the index, since the next
// changed-block night reads its parent's maps.
func metadataPacks(ctx context.Context, r *repo.Repo, m *seed.Manifest) (map[string]bool, error) {
	out := map[string]bool{}
	for _, f := range m.Objects {
		if !strings.HasPrefix(f.Name, "data/") {
			continue
		}
		id, err := pack.ParseID(vaultapi.NameDigest(f.Name))
		if err != nil {
			return nil, err
		}
		entries, err := r.ReadPackHeader(ctx, id, f.Size)
		if err != nil {
			return nil, fmt.Errorf("reading the header of the seed's %s: %w", f.Name, err)
		}
		if slices.ContainsFunc(entries, func(e pack.Entry) bool { return e.Type == pack.TypeMeta }) {
			out[id.String()] = true
		}
	}
	return out, nil
}
