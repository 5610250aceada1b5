package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// seedImportOut is cofferd seed import's --json document.
type seedImportOut struct {
	Type   string               `json:"type"` // "seed_import"
	Tenant string               `json:"tenant"`
	Report *vaultapi.SeedReport `json:"report"`
	// MBPerSecond and ObjectsPerSecond are the seed's bytes (10^6) and
	// objects over the import's time, checks included.
	MBPerSecond      float64 `json:"mb_per_second"`
	ObjectsPerSecond float64 `json:"objects_per_second"`
}

// seedListOut is cofferd seed list's --json document.
type seedListOut struct {
	Type  string        `json:"type"` // "seed_list"
	Seeds []seedShowOut `json:"seeds"`
}

// seedShowOut is one seed with its tenant: cofferd seed show's --json
// document (type "seed"), and an entry of seed list.
type seedShowOut struct {
	Type   string `json:"type,omitempty"`
	Tenant string `json:"tenant"`
	vaultapi.SeedInfo
}

func newSeedCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "seed",
		Short: "Import seeds (a tenant's full backup shipped on a disk), show their reports, cancel a lost one",
	}
	c.AddCommand(newSeedImportCmd(g), newSeedListCmd(g), newSeedShowCmd(g), newSeedCancelCmd(g))
	return c
}

type seedImportFlags struct {
	tenant, workDir string
	workers         int
	pauseAfterPuts  int // hidden: tests kill the process there
}

func newSeedImportCmd(g *globals) *cobra.Command {
	var f seedImportFlags
	c := &cobra.Command{
		Use:   "import --tenant NAME DIR [--workers N] [--work-dir D]",
		Short: "Verify a seed disk, repair it from parity, and upload it into the tenant's space",
		Long: `Import the seed in DIR (the directory coffer seed export wrote, on the
shipped disk) into the tenant's space. The seed must be the tenant's and its
manifest signed by the tenant's signing key; every file is hashed, damaged
ones are rebuilt from the seed's parity into --work-dir (damage beyond the
parity refuses the import, naming the files, and leaves the vault as it
was); the tenant's quota must hold what the vault lacks. Then every object
the vault does not hold is uploaded (packs, index files, receipts,
snapshots), counted in the tenant's usage as it is stored, and the seed is
marked imported with its report: the snapshots waiting on it restore from
then on. Run it again after an interruption or a kill: it skips what is
there and settles the usage the killed run left. A seed imported already is
refused.
Exit 0: imported, the report clean; 1: refused or failed (the reason named);
2: usage; 130: interrupted (run it again).`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if f.tenant == "" {
				return usageError{Err: errors.New("give the seed's tenant: --tenant NAME")}
			}
			if f.workers < 1 || f.workers > 64 {
				return usageError{Err: fmt.Errorf("--workers %d: give 1 to 64", f.workers)}
			}
			return g.seedImport(c.Context(), &f, args[0])
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.tenant, "tenant", "", "the tenant whose seed it is (name or id)")
	fl.IntVar(&f.workers, "workers", jobs.DefaultImportWorkers, "files hashed and uploaded at once")
	fl.StringVar(&f.workDir, "work-dir", "", "where files rebuilt from parity go (default: a folder in the system's temporary directory)")
	fl.IntVar(&f.pauseAfterPuts, "pause-after-puts", 0, "store N objects, then wait to be killed before counting the last (tests)")
	_ = fl.MarkHidden("pause-after-puts")
	return c
}

// pausingStore stores n objects, then waits forever before returning from
// the nth Put: the crash tests kill the process there, leaving a stored
// object whose reservation is not committed.
type pausingStore struct {
	store.Store
	g    *globals
	n    int
	puts atomic.Int64
}

func (p *pausingStore) Put(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	err := p.Store.Put(ctx, name, r, size)
	if err == nil && p.puts.Add(1) == int64(p.n) {
		fmt.Fprintf(p.g.stderr, "paused after %d puts\n", p.n)
		select {}
	}
	return err
}

// seedState is what the seed commands need of the vault.
type seedState struct {
	data   store.Store
	sw     store.Swapper
	reg    *registry.Registry
	ledger *ledger.Ledger
	close  func()
}

func (g *globals) openSeedState(ctx context.Context) (*seedState, error) {
	stack, reg, err := g.openVaultStack(ctx)
	if err != nil {
		return nil, err
	}
	led, err := ledger.New(stack.Retry, stack.Retry, g.clock, g.log)
	if err != nil {
		stack.Provider.Close()
		return nil, err
	}
	sw, _ := store.As[store.Swapper](stack.Retry) // ledger.New checked it
	return &seedState{data: stack.Retry, sw: sw, reg: reg, ledger: led, close: func() { stack.Provider.Close() }}, nil
}

func (g *globals) seedImport(ctx context.Context, f *seedImportFlags, dir string) error {
	st, err := g.openSeedState(ctx)
	if err != nil {
		return err
	}
	defer st.close()
	t, err := st.reg.Resolve(ctx, f.tenant)
	if err != nil {
		return err
	}
	data := st.data
	if f.pauseAfterPuts > 0 {
		data = &pausingStore{Store: data, g: g, n: f.pauseAfterPuts}
	}
	bar := g.newSeedProgress(ctx)
	rep, err := jobs.ImportSeed(ctx, jobs.ImportOptions{Data: data, Meta: st.data, Swap: st.sw, Ledger: st.ledger, Tenant: t,
		Dir: dir, Workers: f.workers, WorkDir: seedWorkDir(f.workDir), Clock: g.clock, Progress: bar.progress(), Log: g.log})
	bar.stop()
	if err != nil {
		return err
	}
	out := &seedImportOut{Type: "seed_import", Tenant: t.Name, Report: rep}
	if rep.Seconds > 0 {
		out.MBPerSecond = float64(rep.Bytes) / 1e6 / rep.Seconds
		out.ObjectsPerSecond = float64(rep.Objects) / rep.Seconds
	}
	if g.json {
		return g.printJSON(out)
	}
	g.printSeedImport(out)
	return nil
}

// seedWorkDir is --work-dir, or a folder in the system's temporary
// directory (rebuilt files are named by seed and file, so seeds share it).
func seedWorkDir(flag string) string {
	if flag != "" {
		return flag
	}
	return filepath.Join(os.TempDir(), "cofferd-seed-repair")
}

func (g *globals) printSeedImport(out *seedImportOut) {
	r := out.Report
	fmt.Fprintf(g.stdout, "seed %s imported into tenant %s: %d files, %s in %s (%.1f MB/s, %.1f objects/s)\n",
		r.Seed[:12], termtext.Clean(out.Tenant), r.Objects, humanize.IBytes(uint64(r.Bytes)),
		time.Duration(r.Seconds*float64(time.Second)).Round(100*time.Millisecond), out.MBPerSecond, out.ObjectsPerSecond)
	fmt.Fprintf(g.stdout, "  uploaded %d objects (%s); %d were in the vault already\n", r.Uploaded, humanize.IBytes(uint64(r.UploadedBytes)), r.Present)
	printRepaired(g, r.Repaired)
	copyNote := ""
	if r.ManifestCopy {
		copyNote = " (the manifest's first copy was damaged; its second copy was used)"
	}
	fmt.Fprintf(g.stdout, "  signed by %s%s\n", r.Signer, copyNote)
	if r.Clean {
		fmt.Fprintf(g.stdout, "  the report is clean: the tenant's agent may confirm it (coffer seed confirm %s)\n", r.Seed)
	}
}

func printRepaired(g *globals, files []vaultapi.RepairedFile) {
	if len(files) == 0 {
		fmt.Fprintln(g.stdout, "  no file was damaged")
		return
	}
	fmt.Fprintf(g.stdout, "  %d damaged files:\n", len(files))
	for _, f := range files {
		how := "rebuilt from parity"
		if !f.Rebuilt {
			how = "a parity file, not needed"
		}
		fmt.Fprintf(g.stdout, "    %s: %s; %s\n", termtext.Clean(f.Name), termtext.Clean(f.Problem), how)
	}
}

func newSeedListCmd(g *globals) *cobra.Command {
	var tenant string
	c := &cobra.Command{
		Use:   "list [--tenant NAME]",
		Short: "List the seeds of every tenant (or one), in transit or imported",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.seedList(c.Context(), tenant)
		},
	}
	c.Flags().StringVar(&tenant, "tenant", "", "only this tenant's seeds (name or id)")
	return c
}

func (g *globals) seedList(ctx context.Context, name string) error {
	st, err := g.openSeedState(ctx)
	if err != nil {
		return err
	}
	defer st.close()
	tenants, err := selectTenants(ctx, st.reg, name)
	if err != nil {
		return err
	}
	out := seedListOut{Type: "seed_list", Seeds: []seedShowOut{}}
	for _, t := range tenants {
		book, err := jobs.LoadSeedBook(ctx, st.sw, t.ID)
		if err != nil {
			return err
		}
		for _, s := range book.Seeds {
			out.Seeds = append(out.Seeds, seedShowOut{Tenant: t.Name, SeedInfo: s})
		}
	}
	if g.json {
		return g.printJSON(out)
	}
	if len(out.Seeds) == 0 {
		fmt.Fprintln(g.stdout, "no seeds")
		return nil
	}
	fmt.Fprintf(g.stdout, "%-16s %-12s %-10s %-19s %8s %10s %s\n", "TENANT", "SEED", "STATE", "EXPORTED", "OBJECTS", "SIZE", "REPORT")
	for _, s := range out.Seeds {
		fmt.Fprintf(g.stdout, "%-16s %-12s %-10s %-19s %8d %10s %s\n", termtext.Clip(termtext.Clean(s.Tenant), 16), s.ID[:12], s.State,
			s.Created.UTC().Format(time.DateTime), s.Objects, humanize.IBytes(uint64(s.Bytes)), reportState(&s.SeedInfo))
	}
	return nil
}

// reportState sums up a seed's import report in a word or two.
func reportState(s *vaultapi.SeedInfo) string {
	switch {
	case s.State == vaultapi.SeedCancelled:
		return termtext.Clean(jobs.CancelText(s))
	case s.Report == nil:
		return "-"
	case s.Confirmed != nil:
		return "clean, confirmed"
	case s.Report.Clean:
		return "clean"
	}
	return "not clean"
}

func newSeedShowCmd(g *globals) *cobra.Command {
	var tenant string
	c := &cobra.Command{
		Use:   "show --tenant NAME ID",
		Short: "Show a seed and its import report",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if tenant == "" {
				return usageError{Err: errors.New("give the seed's tenant: --tenant NAME")}
			}
			return g.seedShow(c.Context(), tenant, args[0])
		},
	}
	c.Flags().StringVar(&tenant, "tenant", "", "the seed's tenant (name or id)")
	return c
}

func (g *globals) seedShow(ctx context.Context, tenant, id string) error {
	st, t, s, err := g.openSeed(ctx, tenant, id)
	if err != nil {
		return err
	}
	defer st.close()
	out := seedShowOut{Type: "seed", Tenant: t.Name, SeedInfo: *s}
	if g.json {
		return g.printJSON(out)
	}
	g.printSeed(&out)
	return nil
}

// findSeed finds a seed by its ID or a unique prefix of at least 8 hex
// digits.
func findSeed(book *jobs.SeedBook, t *registry.Tenant, id string) (*vaultapi.SeedInfo, error) {
	if len(id) < 8 || len(id) > 64 || strings.Trim(id, "0123456789abcdef") != "" {
		return nil, usageError{Err: fmt.Errorf("seed id %q: give at least 8 of its lower-case hex digits (cofferd seed list shows them)", termtext.Clip(id, 70))}
	}
	var found *vaultapi.SeedInfo
	for i := range book.Seeds {
		if strings.HasPrefix(book.Seeds[i].ID, id) {
			if found != nil {
				return nil, usageError{Err: fmt.Errorf("seed id %s names several seeds of tenant %s: give more digits", id, t.Name)}
			}
			found = &book.Seeds[i]
		}
	}
	if found == nil {
		return nil, vaultapi.Errorf(vaultapi.CodeNotFound, "tenant %s has no seed %s (cofferd seed list --tenant %s shows its seeds)", t.Name, id, t.Name)
	}
	return found, nil
}

func (g *globals) printSeed(s *seedShowOut) {
	w := g.stdout
	fmt.Fprintf(w, "seed %s of tenant %s: %s\n", s.ID, termtext.Clean(s.Tenant), s.State)
	fmt.Fprintf(w, "  exported %s from %s; registered %s\n", s.Created.UTC().Format(time.DateTime), termtext.Clean(s.Host), s.Registered.UTC().Format(time.DateTime))
	fmt.Fprintf(w, "  %d objects, %s, %d snapshots; signed by %s\n", s.Objects, humanize.IBytes(uint64(s.Bytes)), len(s.Snapshots), s.Signer)
	r := s.Report
	if s.State == vaultapi.SeedCancelled {
		fmt.Fprintf(w, "  %s: it will never be imported; snapshots that needed it cannot be restored\n", termtext.Clean(jobs.CancelText(&s.SeedInfo)))
		return
	}
	if r == nil {
		fmt.Fprintln(w, "  not imported yet")
		return
	}
	fmt.Fprintf(w, "  imported %s to %s (%.1f s): %d uploaded (%s), %d present\n", r.Started.UTC().Format(time.DateTime),
		r.Finished.UTC().Format(time.DateTime), r.Seconds, r.Uploaded, humanize.IBytes(uint64(r.UploadedBytes)), r.Present)
	printRepaired(g, r.Repaired)
	fmt.Fprintf(w, "  report: %s\n", reportState(&s.SeedInfo))
}

// seedProgress draws one bar per phase of an import (see checkProgress).
type seedProgress struct {
	g   *globals
	ctx context.Context
	cur atomic.Pointer[checkProgress]
}

func (g *globals) newSeedProgress(ctx context.Context) *seedProgress {
	return &seedProgress{g: g, ctx: ctx}
}

var seedPhaseLabels = map[string]string{jobs.PhaseCheck: "checking the seed", jobs.PhaseRepair: "repairing", jobs.PhaseUpload: "uploading"}

func (p *seedProgress) progress() jobs.ImportProgress {
	return jobs.ImportProgress{
		Phase: func(name string, files int, bytes int64) {
			p.stop()
			if bytes == 0 {
				if !p.g.json && writerIsTerminal(p.g.stderr) {
					fmt.Fprintf(p.g.stderr, "%s %d files…\n", seedPhaseLabels[name], files)
				}
				return
			}
			bar := p.g.newCheckProgress(p.ctx, seedPhaseLabels[name])
			bar.Total(files, bytes)
			p.cur.Store(&bar)
		},
		Done: func(n int64) {
			if bar := p.cur.Load(); bar != nil {
				bar.Done(n)
			}
		},
	}
}

func (p *seedProgress) stop() {
	if bar := p.cur.Swap(nil); bar != nil {
		bar.Stop()
	}
}

func newSeedCancelCmd(g *globals) *cobra.Command {
	var tenant, reason string
	c := &cobra.Command{
		Use:   "cancel --tenant NAME ID [--reason TEXT]",
		Short: "Declare a seed in transit lost (the disk lost, broken beyond its parity, or never sent)",
		Long: `Declare a seed in transit lost. The vault records which of its packs it does
not hold; the tenant's agents then upload those chunks again on their next
run, and its snapshots that needed the seed show as lost (never restorable,
never meeting the objective). A cancelled seed is never imported: export a
new one if the tenant still needs a seed. An imported seed cannot be
cancelled.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if tenant == "" {
				return usageError{Err: errors.New("give the seed's tenant: --tenant NAME")}
			}
			return g.seedCancel(c.Context(), tenant, args[0], reason)
		},
	}
	c.Flags().StringVar(&tenant, "tenant", "", "the seed's tenant (name or id)")
	c.Flags().StringVar(&reason, "reason", "", "why the seed is lost (shown to the tenant and in every refusal)")
	return c
}

func (g *globals) seedCancel(ctx context.Context, tenant, id, reason string) error {
	st, t, s, err := g.openSeed(ctx, tenant, id)
	if err != nil {
		return err
	}
	defer st.close()
	info, err := jobs.CancelSeed(ctx, st.sw, st.data, t.ID, s.ID, reason, g.clock.Now())
	if err != nil {
		return err
	}
	lost, err := jobs.LostPacks(ctx, st.data, t.ID, s.ID)
	if err != nil {
		return err
	}
	out := seedCancelOut{Type: "seed_cancel", Tenant: t.Name, Seed: *info, LostPacks: len(lost.Packs)}
	if g.json {
		return g.printJSON(out)
	}
	fmt.Fprintf(g.stdout, "seed %s of tenant %s: %s\n", info.ID, termtext.Clean(t.Name), termtext.Clean(jobs.CancelText(info)))
	fmt.Fprintf(g.stdout, "  %d of its packs are not in the vault: the tenant's agents upload their chunks again on their next run\n", out.LostPacks)
	return nil
}

// seedCancelOut is cofferd seed cancel's --json document.
type seedCancelOut struct {
	Type   string            `json:"type"` // "seed_cancel"
	Tenant string            `json:"tenant"`
	Seed   vaultapi.SeedInfo `json:"seed"`
	// LostPacks counts the seed's packs the vault did not hold.
	LostPacks int `json:"lost_packs"`
}

// openSeed opens the vault's state and finds a tenant's seed by its ID (or
// a unique prefix). The caller closes st.
func (g *globals) openSeed(ctx context.Context, tenant, id string) (st *seedState, t *registry.Tenant, s *vaultapi.SeedInfo, err error) {
	if st, err = g.openSeedState(ctx); err != nil {
		return nil, nil, nil, err
	}
	t, err = st.reg.Resolve(ctx, tenant)
	var book *jobs.SeedBook
	if err == nil {
		book, err = jobs.LoadSeedBook(ctx, st.sw, t.ID)
	}
	if err == nil {
		s, err = findSeed(book, t, id)
	}
	if err != nil {
		st.close()
		return nil, nil, nil, err
	}
	return st, t, s, nil
}
