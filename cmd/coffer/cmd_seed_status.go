package main

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

func newSeedStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show this tenant's seeds, their state and import reports",
		Long: `Show the seeds registered with the vault: travelling, or imported with the
vault's import report (files, bytes, repairs, the signer). Until a seed's
report is clean, keep the source it was exported from; once it is clean,
confirm it with coffer seed confirm ID. Like every seed command it first
sends the repository's signing key to the vault (for tenants enrolled
before seeds), which opens the repository: with the key this agent keeps,
else with the passphrase; if that fails it warns and goes on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			v, err := g.seedCommandVault(ctx)
			if err != nil {
				return err
			}
			defer v.Close()
			seeds, err := v.Seeds(ctx)
			if err != nil {
				return err
			}
			g.seedStatus(seeds)
			return nil
		},
	}
}

func newSeedConfirmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "confirm ID",
		Short: "Confirm a seed's clean import report (its source may then be released)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, id, err := g.onSeed(cmd.Context(), args[0], "confirming", (*vaultclient.Client).ConfirmSeed)
			if err != nil {
				return err
			}
			if g.json {
				g.printJSON(map[string]any{"type": "seed_confirm", "seed": info})
				return nil
			}
			g.say("confirmed seed %s: its import report is clean; the source it was exported from may be released", id[:12])
			return nil
		},
	}
}

func newSeedCancelCmd(g *globals) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "cancel ID [--reason TEXT]",
		Short: "Declare a seed in transit lost; the next run uploads what it held",
		Long: `Declare a seed in transit lost: the disk was lost, broken beyond its parity,
or never sent. The vault records which of its packs it does not hold; the
next backup or agent run of every machine of this repository uploads those
chunks again, and a XenServer VM's next night reads its disks in full.
Snapshots that needed the seed cannot be restored. An imported seed cannot
be cancelled; a cancelled seed is never imported.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, id, err := g.onSeed(cmd.Context(), args[0], "cancelling", func(v *vaultclient.Client, ctx context.Context, id string) (*vaultapi.SeedInfo, error) {
				return v.CancelSeed(ctx, id, reason)
			})
			if err != nil {
				return err
			}
			if g.json {
				g.printJSON(map[string]any{"type": "seed_cancel", "seed": info})
				return nil
			}
			g.say("seed %s %s", id[:12], cancelText(info))
			g.say("the next backup or agent run uploads the chunks it held; snapshots that needed it cannot be restored")
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why the seed is lost (shown by coffer seed status and cofferd)")
	return c
}

// cancelText says when and why a seed was cancelled.
func cancelText(s *vaultapi.SeedInfo) string {
	when := "at an unknown time"
	if s.Cancelled != nil {
		when = "on " + s.Cancelled.Local().Format(time.DateTime)
	}
	reason := s.Reason
	if reason == "" {
		reason = "no reason given"
	}
	return fmt.Sprintf("was cancelled %s (%s)", when, reason)
}

// seedCommandVault returns the vault client of a seed command, after
// sending the repository's signing key when this agent keeps the key
// (any seed command does, for tenants older than signing keys).
func (g *globals) seedCommandVault(ctx context.Context) (*vaultclient.Client, error) {
	u, err := g.repository()
	if err != nil {
		return nil, err
	}
	base := vaultURL(u)
	if base == nil {
		return nil, usageError{Err: fmt.Errorf("seeds are registered with a vault, and the repository %s is not in one", u)}
	}
	g.sendSigningKey(ctx, base)
	return g.seedVault(base, "")
}

// sendSigningKey registers the signing key when the repository opens;
// a failure is a warning.
func (g *globals) sendSigningKey(ctx context.Context, base *url.URL) {
	r, err := g.openRepo(ctx)
	if err == nil {
		err = g.registerSigningKey(ctx, base, "", r)
	}
	if err != nil {
		g.warn("could not send the repository's seed signing key to the vault: " + termtext.Clean(err.Error()))
	}
}

// findSeed resolves an ID or a unique prefix of one (at least 8 digits).
func findSeed(ctx context.Context, v *vaultclient.Client, arg string) (string, error) {
	p := strings.ToLower(strings.TrimSpace(arg))
	if vaultclient.ValidSeedID(p) {
		return p, nil
	}
	if len(p) < 8 || len(p) > 64 || strings.Trim(p, "0123456789abcdef") != "" {
		return "", usageError{Err: fmt.Errorf("%q is not a seed ID: give the ID coffer seed status shows (at least 8 hex digits)", termtext.Clip(arg, 70))}
	}
	seeds, err := v.Seeds(ctx)
	if err != nil {
		return "", err
	}
	var found []string
	for _, s := range seeds {
		if strings.HasPrefix(s.ID, p) {
			found = append(found, s.ID)
		}
	}
	switch len(found) {
	case 0:
		return "", usageError{Err: fmt.Errorf("no seed of this tenant starts with %s (coffer seed status lists them)", p)}
	case 1:
		return found[0], nil
	}
	return "", usageError{Err: fmt.Errorf("%s names %d seeds: give more digits", p, len(found))}
}

// seedAdvice says what the tenant should do about a seed.
func seedAdvice(s *vaultapi.SeedInfo) string {
	switch {
	case s.State == vaultapi.SeedCancelled:
		return "cancelled: never imported; its chunks are uploaded again, and snapshots that needed it cannot be restored"
	case s.Confirmed != nil:
		return "confirmed: the source may be released"
	case s.State == vaultapi.SeedTravelling:
		return "not imported yet: keep the source until the import report is clean"
	case s.Report == nil || !s.Report.Clean:
		return "the import report is not clean: keep the source until the import report is clean, and ask your provider"
	}
	return "the import report is clean: confirm it with coffer seed confirm " + s.ID[:12]
}

// seedStatusJSON is one seed in coffer seed status --json.
type seedStatusJSON struct {
	vaultapi.SeedInfo
	Advice string `json:"advice"`
}

func (g *globals) seedStatus(seeds []vaultapi.SeedInfo) {
	slices.SortFunc(seeds, func(a, b vaultapi.SeedInfo) int { return a.Registered.Compare(b.Registered) })
	if g.json {
		out := make([]seedStatusJSON, len(seeds))
		for i := range seeds {
			out[i] = seedStatusJSON{SeedInfo: seeds[i], Advice: seedAdvice(&seeds[i])}
		}
		g.printJSON(map[string]any{"type": "seed_status", "seeds": out})
		return
	}
	if len(seeds) == 0 {
		g.say("no seeds registered for this tenant")
	}
	for i := range seeds {
		g.printSeed(&seeds[i])
	}
}

func (g *globals) printSeed(s *vaultapi.SeedInfo) {
	g.say("seed %s  %s", s.ID, s.State)
	g.say("  exported  %s from %s: %d snapshots, %d objects, %s; signed by key %s", s.Created.Local().Format(time.DateTime), s.Host,
		len(s.Snapshots), s.Objects, humanBytes(s.Bytes), s.Signer)
	if s.State == vaultapi.SeedCancelled {
		g.say("  %s", cancelText(s))
	}
	if r := s.Report; r != nil {
		g.say("  imported  %s in %.0fs: %d uploaded (%s), %d present; clean: %t", r.Finished.Local().Format(time.DateTime), r.Seconds,
			r.Uploaded, humanBytes(r.UploadedBytes), r.Present, r.Clean)
		for _, f := range r.Repaired {
			how := "rebuilt from parity"
			if !f.Rebuilt {
				how = "not rebuilt"
			}
			g.say("  repaired  %s: %s, %s", f.Name, f.Problem, how)
		}
	}
	g.say("  %s", seedAdvice(s))
}

// onSeed runs one call on the seed ref names (its ID or a unique prefix)
// through the repository's vault; doing names the call in its error.
func (g *globals) onSeed(ctx context.Context, ref, doing string,
	call func(*vaultclient.Client, context.Context, string) (*vaultapi.SeedInfo, error)) (*vaultapi.SeedInfo, string, error) {
	v, err := g.seedCommandVault(ctx)
	if err != nil {
		return nil, "", err
	}
	defer v.Close()
	id, err := findSeed(ctx, v, ref)
	if err != nil {
		return nil, "", err
	}
	info, err := call(v, ctx, id)
	if err != nil {
		return nil, id, fmt.Errorf("%s seed %s: %w", doing, id[:12], err)
	}
	return info, id, nil
}
