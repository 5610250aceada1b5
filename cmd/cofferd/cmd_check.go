package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/check"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/registry"
)

// checkOut is cofferd check's --json document.
type checkOut struct {
	Type   string `json:"type"` // "check"
	OK     bool   `json:"ok"`
	Errors int    `json:"errors"`
	// ReadDataPercent is the share of packs read (0 to 100), by the keyless
	// check or, for tenants checked with the escrow identity, the full one;
	// SampleSeed picks them.
	ReadDataPercent float64          `json:"read_data_percent"`
	SampleSeed      string           `json:"sample_seed"`
	Tenants         []tenantCheckOut `json:"tenants"`
}

// tenantCheckOut is one tenant's findings: the keyless check always, the
// full one (internal/check, with the escrow identity) when asked for.
type tenantCheckOut struct {
	Tenant  string              `json:"tenant"`
	ID      string              `json:"id"`
	Errors  int                 `json:"errors"`
	Keyless *jobs.KeylessReport `json:"keyless"`
	Full    *check.Report       `json:"full,omitempty"`
	// FullSkipped says why a full check was asked for but not run.
	FullSkipped string `json:"full_skipped,omitempty"`
}

// checkFlags are cofferd check's flags.
type checkFlags struct {
	tenant, readData, seed, escrowKey, maxObject string
	percent                                      float64
	maxPack                                      int64
}

func newCheckCmd(g *globals) *cobra.Command {
	var f checkFlags
	c := &cobra.Command{
		Use:   "check [--tenant NAME] [--read-data[=PERCENT]] [--escrow-key FILE]",
		Short: "Verify tenants' repositories in the vault's store, without their keys",
		Long: `Verify each tenant's repository (or --tenant's) without its keys: every
object's name is one an agent gives, its size one its kind can have, and the
SHA-256 of every key slot, index file, snapshot and drill record matches its
name. --read-data downloads and hashes every pack too; --read-data=10% a
sample of them, the same for the same --read-data-seed (default: today's date,
so each day's sample differs). With --escrow-key (the file cofferd escrow init
wrote), the repositories of tenants that chose escrow are also opened
read-only and checked in full as coffer check does: index, pack headers,
snapshots, and with --read-data every sampled chunk decrypted and verified.
Objects with names no agent gives are reported as foreign and do not fail
the check.
Exit 0: nothing damaged or missing; 1: something is (each object named);
12: the escrow identity does not open a tenant's repository.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := f.parse(c); err != nil {
				return err
			}
			return g.check(c.Context(), &f)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.tenant, "tenant", "", "check only this tenant (name or id)")
	fl.StringVar(&f.readData, "read-data", "", "download and verify every pack, or PERCENT of them (--read-data=10%)")
	fl.Lookup("read-data").NoOptDefVal = "100"
	fl.StringVar(&f.seed, "read-data-seed", "", "which sample --read-data=PERCENT takes (default: today's date, UTC)")
	fl.StringVar(&f.escrowKey, "escrow-key", "", "also check tenants that chose escrow in full, with this escrow identity file (cofferd escrow init)")
	fl.StringVar(&f.maxObject, "max-object-size", "300MiB", "the largest pack the vault accepts: cofferd serve's --max-object-size")
	return c
}

// parse checks the flags.
func (f *checkFlags) parse(c *cobra.Command) error {
	if f.readData != "" {
		p, err := jobs.ParsePercent(f.readData)
		if err != nil {
			return usageError{Err: err}
		}
		f.percent = p
	}
	if c.Flags().Changed("read-data-seed") && f.readData == "" {
		return usageError{Err: errors.New("--read-data-seed picks the sample of --read-data=PERCENT: give --read-data too")}
	}
	size, err := humanize.ParseBytes(f.maxObject)
	if err != nil || size < 1<<20 || size > 5<<30 {
		return usageError{Err: fmt.Errorf("--max-object-size %q: want a size from 1MiB to 5GiB, as cofferd serve was given", f.maxObject)}
	}
	f.maxPack = int64(size)
	return nil
}

// check runs the checks and prints them.
func (g *globals) check(ctx context.Context, f *checkFlags) error {
	if f.seed == "" {
		f.seed = g.clock.Now().UTC().Format(time.DateOnly)
	}
	out, err := g.runChecks(ctx, f)
	if err != nil {
		return err
	}
	if g.json {
		err = g.printJSON(out)
	} else {
		printChecks(g, out)
	}
	if err == nil && out.Errors > 0 {
		err = fmt.Errorf("check found %d damaged, missing or unreadable object(s) (named above): restore them from a copy of the store", out.Errors)
	}
	return err
}

// runChecks checks every tenant (or f.tenant).
func (g *globals) runChecks(ctx context.Context, f *checkFlags) (*checkOut, error) {
	if f.escrowKey != "" {
		if _, err := readEscrowIdentity(f.escrowKey); err != nil {
			return nil, err
		}
	}
	stack, reg, err := g.openVaultStack(ctx)
	if err != nil {
		return nil, err
	}
	defer stack.Provider.Close()
	tenants, err := selectTenants(ctx, reg, f.tenant)
	if err != nil {
		return nil, err
	}
	out := &checkOut{Type: "check", ReadDataPercent: f.percent, SampleSeed: f.seed, Tenants: []tenantCheckOut{}}
	for _, t := range tenants {
		tc, err := g.checkTenant(ctx, stack.Retry, t, f)
		if err != nil {
			return nil, err
		}
		out.Errors += tc.Errors
		out.Tenants = append(out.Tenants, *tc)
	}
	out.OK = out.Errors == 0
	return out, nil
}

// checkTenant checks tenant t's repository in data: keyless, then in full
// when f.escrowKey is given and t chose escrow.
func (g *globals) checkTenant(ctx context.Context, data store.Store, t *registry.Tenant, f *checkFlags) (*tenantCheckOut, error) {
	sub, err := store.ReadOnlySub(data, "repos/"+t.ID+"/")
	if err != nil {
		return nil, err
	}
	tc := &tenantCheckOut{Tenant: t.Name, ID: t.ID}
	receipts := jobs.Receipts{}
	if sw, ok := store.As[store.Swapper](data); ok {
		// Snapshots waiting on a seed in transit, or lost with a cancelled
		// one, are counted and listed, not errors.
		if receipts.Seeds, err = jobs.LoadTenantSeeds(ctx, sw, jobs.NewSeedPacks(data), t.ID); err != nil {
			return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
		}
	}
	keyless := jobs.KeylessOptions{SampleSeed: f.seed, MaxPackSize: f.maxPack, Receipts: receipts}
	if f.escrowKey == "" || t.Escrow.Status != vaultapi.EscrowYes {
		keyless.ReadDataPercent = f.percent // else the full check reads the sample
	}
	bar := g.newCheckProgress(ctx, "tenant "+t.Name)
	keyless.ToRead, keyless.Read = bar.Total, bar.Done
	tc.Keyless, err = jobs.CheckKeyless(ctx, sub, keyless)
	bar.Stop()
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
	}
	tc.Errors = tc.Keyless.Errors()
	if f.escrowKey == "" {
		return tc, nil
	}
	if err := g.checkFull(ctx, sub, t, f, tc, receipts.Seeds); err != nil {
		return nil, err
	}
	return tc, nil
}

// checkFull opens t's repository with the escrow identity and runs
// internal/check on it, reading the same sample of packs the keyless check
// would have. A tenant without escrow or without a repository is skipped,
// saying why; a wrong identity stops the command (exit 12).
func (g *globals) checkFull(ctx context.Context, sub store.Store, t *registry.Tenant, f *checkFlags, tc *tenantCheckOut, seeds *jobs.TenantSeeds) error {
	if t.Escrow.Status != vaultapi.EscrowYes {
		tc.FullSkipped = "the tenant did not choose escrow: its agent checks it in full (coffer check)"
		return nil
	}
	if tc.Keyless.Empty {
		tc.FullSkipped = "the tenant has no repository yet (its agent has not run coffer init)"
		return nil
	}
	tr, err := g.openTenantRepo(ctx, t.ID, f.escrowKey)
	switch {
	case errors.Is(err, crypto.ErrEscrowIdentity) || errors.As(err, new(usageError)):
		return err
	case err != nil:
		tc.FullSkipped = err.Error()
		tc.Errors++
		return nil
	}
	defer tr.close()
	opt := check.Options{ReadData: f.percent > 0, Elsewhere: travelling(ctx, seeds)}
	if f.percent > 0 && f.percent < 100 {
		sample, err := packSample(ctx, sub, f.percent, f.seed)
		if err != nil {
			return fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		opt.ReadPack = func(name string) bool { return sample[name] }
	}
	bar := g.newCheckProgress(ctx, "tenant "+t.Name+" (escrow)")
	opt.PacksFound, opt.PackDone = bar.Total, bar.Done
	rep, err := check.Run(ctx, tr.repo, opt)
	bar.Stop()
	if err != nil {
		return fmt.Errorf("tenant %s: checking with the escrow identity: %w", t.Name, err)
	}
	tc.Full = rep
	tc.Errors += rep.Errors()
	return nil
}

// packSample is the set of pack names --read-data=PERCENT reads.
func packSample(ctx context.Context, sub store.Store, percent float64, seed string) (map[string]bool, error) {
	var packs []store.Info
	if err := sub.List(ctx, repo.DataPrefix, func(i store.Info) error {
		packs = append(packs, i)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing packs: %w", err)
	}
	set := map[string]bool{}
	for _, p := range jobs.SamplePacks(packs, percent, seed) {
		set[p.Name] = true
	}
	return set, nil
}

// printChecks writes the findings for people; names and messages from the
// store are made terminal-safe.
func printChecks(g *globals, out *checkOut) {
	for _, tc := range out.Tenants {
		k := tc.Keyless
		fmt.Fprintf(g.stdout, "tenant %s (%s): %d objects, %s, %d packs", tc.Tenant, tc.ID, k.Objects, humanize.IBytes(uint64(k.Bytes)), k.Packs)
		if k.PacksRead > 0 {
			fmt.Fprintf(g.stdout, ", %d read (%.4g%%, seed %s)", k.PacksRead, k.ReadDataPercent, termtext.Clean(k.SampleSeed))
		}
		fmt.Fprintf(g.stdout, ": %d error(s)", tc.Errors)
		if k.Waiting > 0 {
			fmt.Fprintf(g.stdout, ", %d snapshot(s) waiting on a seed in transit", k.Waiting)
		}
		if k.Lost > 0 {
			fmt.Fprintf(g.stdout, ", %d snapshot(s) lost with a cancelled seed", k.Lost)
		}
		fmt.Fprintln(g.stdout)
		if k.Empty {
			fmt.Fprintln(g.stdout, "  no repository yet (its agent has not run coffer init)")
		}
		for _, p := range k.Problems {
			fmt.Fprintf(g.stdout, "  %s: %s\n", p.Kind, termtext.Clean(p.Message))
		}
		if tc.FullSkipped != "" {
			fmt.Fprintf(g.stdout, "  full check not run: %s\n", termtext.Clean(tc.FullSkipped))
		}
		if r := tc.Full; r != nil {
			fmt.Fprintf(g.stdout, "  full check (escrow identity): %d key slots, %d index files, %d packs, %d snapshots, %d chunks read\n",
				r.Keys, r.IndexFiles, r.Packs, r.Snapshots, r.Blobs)
			for _, p := range r.Problems {
				fmt.Fprintf(g.stdout, "  %s: %s: %s\n", fullKind(p), termtext.Clean(p.Object), termtext.Clean(p.Message))
			}
		}
	}
	fmt.Fprintf(g.stdout, "%d tenant(s) checked, %d error(s)\n", len(out.Tenants), out.Errors)
}

// fullKind names a full check's problem as the keyless ones are named.
func fullKind(p check.Problem) string {
	switch {
	case p.Foreign:
		return jobs.ProblemForeign
	case p.Warning:
		return "warning"
	}
	return "error"
}

// travelling tells the full check which missing packs travel on a seed of
// the tenant that the vault has not imported yet: those are expected, not
// damage. Packs of a cancelled seed stay errors: they will never come.
func travelling(ctx context.Context, seeds *jobs.TenantSeeds) func(pack.ID) string {
	if seeds == nil {
		return nil
	}
	return func(id pack.ID) string {
		s, err := seeds.PendingPack(ctx, id.String())
		if err != nil || s == nil || s.State != vaultapi.SeedTravelling {
			return ""
		}
		return fmt.Sprintf("it travels on seed %s (exported %s), which the vault has not imported", s.ID[:12], s.Created.UTC().Format(time.DateOnly))
	}
}
