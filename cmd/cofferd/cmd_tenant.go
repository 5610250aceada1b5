package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// EnvVaultURL is the agents' address of this vault, used in the enrollment
// hint that tenant create and tenant token print.
const EnvVaultURL = "COFFER_VAULT_URL"

func newTenantCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "tenant",
		Short: "Manage tenants: create, list, show, quotas, suspension, enrollment tokens, credentials, key slots",
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{Err: fmt.Errorf("unknown command %q for \"cofferd tenant\"", args[0])}
			}
			return usageError{Err: errors.New("cofferd tenant needs a subcommand: create, list, show, set-quota, set-rto, set-retention, suspend, resume, token, credentials, revoke, keys or remove-key")}
		},
	}
	c.AddCommand(newTenantCreateCmd(g), newTenantListCmd(g), newTenantShowCmd(g), newTenantSetQuotaCmd(g),
		newTenantSuspendCmd(g), newTenantResumeCmd(g), newTenantTokenCmd(g), newTenantCredentialsCmd(g), newTenantRevokeCmd(g),
		newTenantKeysCmd(g), newTenantRemoveKeyCmd(g))
	c.AddCommand(newTenantSetRTOCmd(g), newTenantSetRetentionCmd(g))
	c.AddCommand(newTenantSetRPOCmd(g))
	return c
}

// withState opens the vault state for one command.
func (g *globals) withState(ctx context.Context, fn func(*registry.Registry, *ledger.Ledger) error) error {
	s, reg, l, err := g.openState(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(reg, l)
}

// parseQuota reads a quota: "unlimited" (or "none") for no quota, else a
// size such as 10GiB, 500MB or a byte count. A size of 0 is refused: it
// used to mean no quota, which nobody can tell from reading it.
func parseQuota(s string) (int64, error) {
	if s == "unlimited" || s == "none" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n > 1<<62 {
		return 0, usageError{Err: fmt.Errorf("quota %q: want a size such as 10GiB or 500MB, or unlimited", s)}
	}
	if n == 0 {
		return 0, usageError{Err: fmt.Errorf("quota %q: a quota of 0 would refuse every upload; for no quota write unlimited", s)}
	}
	return int64(n), nil
}

func quotaText(q int64) string {
	if q == 0 {
		return "unlimited"
	}
	return ledger.FormatSize(q)
}

type tokenOut struct {
	Tenant  vaultapi.TenantInfo `json:"tenant"`
	Token   string              `json:"token"`
	Expires time.Time           `json:"token_expires"`
}

func (g *globals) printToken(t *registry.Tenant, tok vaultapi.Secret, exp time.Time, vaultURL string) error {
	if g.json {
		return g.printJSON(tokenOut{Tenant: vaultapi.TenantInfo{ID: t.ID, Name: t.Name, State: t.State, Quota: t.Quota, QuotaUnlimited: t.Quota == 0},
			Token: tok.Reveal(), Expires: exp})
	}
	w := g.stdout
	fmt.Fprintf(w, "enrollment token (single use, shown once, valid until %s):\n  %s\n", exp.Format(time.RFC3339), tok.Reveal())
	fmt.Fprintf(w, "enroll an agent on the host to back up (prefer the environment: a command line is visible to other users):\n")
	fmt.Fprintf(w, "  COFFER_ENROLL_TOKEN=%s coffer init --repo %s\n", tok.Reveal(), vaultURL)
	fmt.Fprintf(w, "  or: coffer init --repo %s --token %s\n", vaultURL, tok.Reveal())
	return nil
}

func vaultURLFlag(c *cobra.Command, p *string) {
	c.Flags().StringVar(p, "vault-url", envOr(EnvVaultURL, "https://VAULT-HOST"),
		"the vault's address as agents reach it, for the enrollment hint (env "+EnvVaultURL+")")
}

func newTenantCreateCmd(g *globals) *cobra.Command {
	var quota, vaultURL string
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a tenant and print its first enrollment token",
		Long: `Create a tenant and print its first enrollment token.

NAME is 1 to 63 lower-case letters, digits and '-'. The token is shown once
(the vault keeps only its SHA-256), is valid for --token-ttl and enrolls one
agent: coffer init --repo https://VAULT-HOST with the token in
COFFER_ENROLL_TOKEN. 'cofferd tenant token NAME' makes another.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			q, err := parseQuota(quota)
			if err != nil {
				return err
			}
			if ttl <= 0 {
				return usageError{Err: errors.New("--token-ttl must be positive")}
			}
			if !vaultapi.ValidTenantName(args[0]) {
				return usageError{Err: fmt.Errorf("tenant name %q is not valid: use 1 to 63 lower-case letters, digits and '-', starting and ending with a letter or digit", args[0])}
			}
			return g.withState(c.Context(), func(reg *registry.Registry, _ *ledger.Ledger) error {
				t, tok, exp, err := reg.CreateTenant(c.Context(), args[0], q, ttl)
				if err != nil {
					return err
				}
				if !g.json {
					fmt.Fprintf(g.stdout, "tenant %s created\n  id:    %s\n  quota: %s\n", t.Name, t.ID, quotaText(t.Quota))
				}
				return g.printToken(t, tok, exp, vaultURL)
			})
		},
	}
	c.Flags().StringVar(&quota, "quota", "unlimited", "storage quota, e.g. 10GiB, or unlimited")
	c.Flags().DurationVar(&ttl, "token-ttl", registry.DefaultTokenTTL, "how long the enrollment token stays valid")
	vaultURLFlag(c, &vaultURL)
	return c
}

func newTenantTokenCmd(g *globals) *cobra.Command {
	var vaultURL string
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "token NAME",
		Short: "Make a new single-use enrollment token for a tenant",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if ttl <= 0 {
				return usageError{Err: errors.New("--token-ttl must be positive")}
			}
			return g.withState(c.Context(), func(reg *registry.Registry, _ *ledger.Ledger) error {
				t, err := reg.Resolve(c.Context(), args[0])
				if err != nil {
					return err
				}
				tok, exp, err := reg.NewToken(c.Context(), t.ID, ttl)
				if err != nil {
					return err
				}
				return g.printToken(t, tok, exp, vaultURL)
			})
		},
	}
	c.Flags().DurationVar(&ttl, "token-ttl", registry.DefaultTokenTTL, "how long the token stays valid")
	vaultURLFlag(c, &vaultURL)
	return c
}

func newTenantListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List tenants with their quota and usage",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.withState(c.Context(), func(reg *registry.Registry, l *ledger.Ledger) error {
				ts, err := reg.List(c.Context())
				if err != nil {
					return err
				}
				infos := make([]*vaultapi.TenantInfo, 0, len(ts))
				for _, t := range ts {
					i, err := l.TenantInfo(c.Context(), t)
					if err != nil {
						return err
					}
					infos = append(infos, i)
				}
				if g.json {
					return g.printJSON(infos)
				}
				if len(infos) == 0 {
					fmt.Fprintln(g.stdout, "no tenants yet: cofferd tenant create NAME")
					return nil
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tID\tSTATE\tQUOTA\tSTORED\tSNAPSHOTS\tIN FLIGHT\tLOGICAL (REPORTED)\tESCROW")
				for _, i := range infos {
					esc := i.Escrow.Status
					if esc == "" {
						esc = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", i.Name, i.ID, i.State, quotaText(i.Quota),
						ledger.FormatSize(i.Usage.StoredBytes), i.Usage.Snapshots, ledger.FormatSize(i.Usage.ReservedBytes),
						ledger.FormatSize(i.Usage.Reported.LogicalBytes), esc)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, "STORED, SNAPSHOTS and IN FLIGHT are measured by the vault; LOGICAL is what agents reported (not measured, not billed).")
				return nil
			})
		},
	}
}

func printTenant(w io.Writer, i *vaultapi.TenantInfo) {
	fmt.Fprintf(w, "tenant %s\n  id:        %s\n  state:     %s", i.Name, i.ID, i.State)
	if i.State == vaultapi.StateSuspended {
		fmt.Fprintf(w, " since %s", i.SuspendedAt.Format(time.RFC3339))
		if i.Reason != "" {
			fmt.Fprintf(w, ": %s", i.Reason)
		}
	}
	u := i.Usage
	fmt.Fprintf(w, "\n  quota:     %s\n  measured by the vault:\n    stored:    %s in %d objects (%d packs, %s)\n    snapshots: %d\n    in flight: %s\n",
		quotaText(i.Quota), ledger.FormatSize(u.StoredBytes), u.Objects, u.Packs, ledger.FormatSize(u.PackBytes), u.Snapshots,
		ledger.FormatSize(u.ReservedBytes))
	fmt.Fprintf(w, "  reported by agents (not measured, not billed):\n    logical:   %s\n    data:      %s\n",
		reportedText(u.Reported.LogicalBytes, u.StoredBytes), ledger.FormatSize(u.Reported.DataBytes))
	fmt.Fprintf(w, "  escrow:    %s\n", escrowText(i.Escrow))
	fmt.Fprintf(w, "  rto:       %s\n", rtoText(time.Duration(i.RTOSeconds*float64(time.Second))))
}

// reportedText shows a reported logical size, with its ratio to what the
// vault stores when both are known.
func reportedText(logical, stored int64) string {
	if logical > 0 && stored > 0 {
		return fmt.Sprintf("%s, %.1fx the stored bytes", ledger.FormatSize(logical), float64(logical)/float64(stored))
	}
	return ledger.FormatSize(logical)
}

func newTenantShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME|ID",
		Short: "Show a tenant's state, quota and usage",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.withState(c.Context(), func(reg *registry.Registry, l *ledger.Ledger) error {
				t, err := reg.Resolve(c.Context(), args[0])
				if err != nil {
					return err
				}
				return g.showTenant(c.Context(), l, t)
			})
		},
	}
}

func (g *globals) showTenant(ctx context.Context, l *ledger.Ledger, t *registry.Tenant) error {
	i, err := l.TenantInfo(ctx, t)
	if err != nil {
		return err
	}
	if g.json {
		return g.printJSON(i)
	}
	printTenant(g.stdout, i)
	return nil
}

// tenantChange runs one registry change on a resolved tenant and shows it.
func (g *globals) tenantChange(c *cobra.Command, nameOrID string, fn func(*registry.Registry, *registry.Tenant) (*registry.Tenant, error)) error {
	return g.withState(c.Context(), func(reg *registry.Registry, l *ledger.Ledger) error {
		t, err := reg.Resolve(c.Context(), nameOrID)
		if err != nil {
			return err
		}
		if t, err = fn(reg, t); err != nil {
			return err
		}
		return g.showTenant(c.Context(), l, t)
	})
}

func newTenantSetQuotaCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "set-quota NAME|ID SIZE|unlimited",
		Short: "Set a tenant's storage quota (below the usage refuses new uploads; nothing is deleted)",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			q, err := parseQuota(args[1])
			if err != nil {
				return err
			}
			return g.tenantChange(c, args[0], func(reg *registry.Registry, t *registry.Tenant) (*registry.Tenant, error) {
				return reg.SetQuota(c.Context(), t.ID, q)
			})
		},
	}
}

func newTenantSuspendCmd(g *globals) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "suspend NAME|ID",
		Short: "Suspend a tenant: its agents are refused (reads too) until resume",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.tenantChange(c, args[0], func(reg *registry.Registry, t *registry.Tenant) (*registry.Tenant, error) {
				return reg.Suspend(c.Context(), t.ID, reason)
			})
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "reason shown to the tenant's agents")
	return c
}

func newTenantResumeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "resume NAME|ID",
		Short: "Resume a suspended tenant",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.tenantChange(c, args[0], func(reg *registry.Registry, t *registry.Tenant) (*registry.Tenant, error) {
				return reg.Resume(c.Context(), t.ID)
			})
		},
	}
}

type credOut struct {
	ID      string    `json:"id"`
	Host    string    `json:"host,omitempty"`
	Created time.Time `json:"created"`
	Revoked time.Time `json:"revoked,omitzero"`
}

func newTenantCredentialsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "credentials NAME|ID",
		Short: "List a tenant's agent credentials",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.withState(c.Context(), func(reg *registry.Registry, _ *ledger.Ledger) error {
				t, err := reg.Resolve(c.Context(), args[0])
				if err != nil {
					return err
				}
				cs, err := reg.Credentials(c.Context(), t.ID)
				if err != nil {
					return err
				}
				out := make([]credOut, 0, len(cs))
				for _, c := range cs {
					out = append(out, credOut{c.ID, c.Host, c.Created, c.Revoked})
				}
				if g.json {
					return g.printJSON(out)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "CREDENTIAL\tHOST\tCREATED\tREVOKED")
				for _, c := range out {
					rev := "-"
					if !c.Revoked.IsZero() {
						rev = c.Revoked.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, c.Host, c.Created.Format(time.RFC3339), rev)
				}
				return tw.Flush()
			})
		},
	}
}

type revokeOut struct {
	Tenant   string `json:"tenant"`
	TenantID string `json:"tenant_id"`
	Revoked  string `json:"revoked"` // the credential id
}

func newTenantRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME|ID CREDENTIAL-ID",
		Short: "Revoke an agent credential (servers notice within their auth cache TTL)",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return g.withState(c.Context(), func(reg *registry.Registry, _ *ledger.Ledger) error {
				t, err := reg.Resolve(c.Context(), args[0])
				if err != nil {
					return err
				}
				if err := reg.Revoke(c.Context(), t.ID, args[1]); err != nil {
					return err
				}
				if g.json {
					return g.printJSON(revokeOut{Tenant: t.Name, TenantID: t.ID, Revoked: args[1]})
				}
				fmt.Fprintf(g.stdout, "credential %s of tenant %s revoked\n", args[1], t.Name)
				return nil
			})
		},
	}
}

func (g *globals) printJSON(v any) error {
	e := json.NewEncoder(g.stdout)
	e.SetIndent("", "  ")
	return e.Encode(v)
}
