package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

func newEscrowCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "escrow",
		Short: "The vault's escrow key: init, show, verify a tenant's escrow slot",
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{Err: fmt.Errorf("unknown command %q for \"cofferd escrow\"", args[0])}
			}
			return usageError{Err: errors.New("cofferd escrow needs a subcommand: init, show or verify")}
		},
	}
	c.AddCommand(newEscrowInitCmd(g), newEscrowShowCmd(g), newEscrowVerifyCmd(g))
	return c
}

type escrowOut struct {
	Recipient   string    `json:"recipient"`
	Fingerprint string    `json:"fingerprint"`
	Created     time.Time `json:"created"`
	Identity    string    `json:"identity_file,omitempty"`
}

func newEscrowInitCmd(g *globals) *cobra.Command {
	var out string
	var classic bool
	c := &cobra.Command{
		Use:   "init --out FILE",
		Short: "Make the vault's escrow key pair: the secret half to FILE (keep it offline), the public half in the vault",
		Long: `Make the vault's escrow key pair.

The secret identity is written to FILE (mode 0600; FILE must not exist) and
nowhere else: keep it offline, cofferd never needs it. Only the public
recipient is stored in the vault (vault/escrow.json), published to agents at
GET /v1/escrow; agents enrolled with 'coffer init --escrow' seal their
repository's master key to it. The key is post-quantum hybrid (ML-KEM-768 +
X25519) unless --classic. It is made once: a second init fails.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if out == "" {
				return usageError{Err: errors.New("--out FILE is required: where to write the secret escrow identity")}
			}
			return g.withState(c.Context(), func(reg *registry.Registry, _ *ledger.Ledger) error {
				ctx := c.Context()
				if k, err := reg.Escrow(ctx); err == nil {
					return fmt.Errorf("an escrow key exists already (fingerprint %s, created %s); cofferd escrow show prints it", k.Fingerprint, k.Created.Format(time.RFC3339))
				} else if !errors.Is(err, store.ErrNotFound) {
					return err
				}
				kp, err := crypto.GenerateEscrowKey(classic)
				if err != nil {
					return err
				}
				if err := writeIdentity(out, kp, g.clock.Now()); err != nil {
					return err
				}
				k, err := reg.InitEscrow(ctx, kp.Recipient)
				if err != nil {
					// The identity matches nothing the vault publishes.
					_ = os.Remove(out)
					return err
				}
				if g.json {
					return g.printJSON(escrowOut{Recipient: k.Recipient, Fingerprint: k.Fingerprint, Created: k.Created, Identity: out})
				}
				fmt.Fprintf(g.stdout, "escrow key created\n  fingerprint: %s\n  recipient:   %s\n", k.Fingerprint, k.Recipient)
				fmt.Fprintf(g.stdout, "the secret identity is in %s: keep it offline (and a second copy somewhere safe); cofferd never needs it.\n", out)
				fmt.Fprintf(g.stdout, "agents show the fingerprint at 'coffer init --escrow': tell tenants to compare it.\n")
				return nil
			})
		},
	}
	c.Flags().StringVar(&out, "out", "", "file to write the secret escrow identity to (created, mode 0600)")
	c.Flags().BoolVar(&classic, "classic", false, "make an X25519 key instead of the post-quantum hybrid")
	return c
}

// writeIdentity creates path (0600, never overwriting) with the identity.
func writeIdentity(path string, kp *crypto.EscrowKeyPair, now time.Time) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return usageError{Err: fmt.Errorf("--out %s exists; cofferd never overwrites a key file", path)}
		}
		return fmt.Errorf("creating the identity file: %w", err)
	}
	_, err = fmt.Fprintf(f, "# Coffer vault escrow identity, created %s\n# fingerprint: %s\n# public key: %s\n# Keep offline: it opens every escrowed repository. cofferd never needs it.\n%s\n",
		now.UTC().Format(time.RFC3339), crypto.EscrowFingerprint(kp.Recipient), kp.Recipient, kp.Identity())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("writing the identity file: %w", err)
	}
	return nil
}

func newEscrowShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Print the vault's escrow public key and fingerprint",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return g.withState(c.Context(), func(reg *registry.Registry, _ *ledger.Ledger) error {
				k, err := reg.Escrow(c.Context())
				if errors.Is(err, store.ErrNotFound) {
					return vaultapi.Errorf(vaultapi.CodeNoEscrow, "this vault has no escrow key; make one with: cofferd escrow init --out FILE")
				}
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(escrowOut{Recipient: k.Recipient, Fingerprint: k.Fingerprint, Created: k.Created})
				}
				fmt.Fprintf(g.stdout, "fingerprint: %s\ncreated:     %s\nrecipient:   %s\n", k.Fingerprint, k.Created.Format(time.RFC3339), k.Recipient)
				return nil
			})
		},
	}
}

type verifyOut struct {
	Tenant      string `json:"tenant"`
	Slot        string `json:"slot"`
	Fingerprint string `json:"fingerprint"`
	OK          bool   `json:"ok"`
}

func newEscrowVerifyCmd(g *globals) *cobra.Command {
	var tenant, identity, slotName string
	c := &cobra.Command{
		Use:   "verify --tenant NAME --identity FILE",
		Short: "Check offline that a tenant's escrow slot opens its repository",
		Long: `Check that a tenant's escrow slot opens its repository.

Opens the slot (the one the vault recorded, or --slot) with the offline
identity from 'cofferd escrow init' and checks that the key it holds
authenticates the repository's config. The vault alone cannot check this:
it never sees the identity. Run it where the identity is, then take the
identity offline again. Exit 0: ok; 12: the identity does not open the
slot; 1: the slot does not open the repository (the message says why).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if tenant == "" || identity == "" {
				return usageError{Err: errors.New("--tenant NAME and --identity FILE are required")}
			}
			if slotName != "" {
				if k, err := vaultapi.ParseRepoName(slotName); err != nil || k != vaultapi.KindKey {
					return usageError{Err: errors.New("--slot must be keys/<sha256>")}
				}
			}
			f, err := os.Open(identity)
			if err != nil {
				return usageError{Err: fmt.Errorf("--identity: %w", err)}
			}
			ids, err := crypto.ParseEscrowIdentities(io.LimitReader(f, 1<<20))
			f.Close()
			if err != nil {
				return usageError{Err: fmt.Errorf("--identity %s: %w", identity, err)}
			}
			data, reg, _, err := g.openState(c.Context())
			if err != nil {
				return err
			}
			defer data.Close()
			t, err := reg.Resolve(c.Context(), tenant)
			if err != nil {
				return err
			}
			if slotName == "" {
				slotName = t.Escrow.Slot
			}
			if slotName == "" {
				return fmt.Errorf("tenant %s has no recorded escrow slot (escrow: %s); name one with --slot keys/<sha256>", t.Name, escrowText(t.Escrow))
			}
			fp, err := verifyEscrow(c.Context(), data, t.ID, slotName, ids)
			if err != nil {
				return fmt.Errorf("tenant %s, escrow slot %s: %w", t.Name, slotName, err)
			}
			if g.json {
				return g.printJSON(verifyOut{Tenant: t.Name, Slot: slotName, Fingerprint: fp, OK: true})
			}
			fmt.Fprintf(g.stdout, "ok: escrow slot %s of tenant %s opens its repository (escrow key %s)\n", slotName, t.Name, fp)
			return nil
		},
	}
	c.Flags().StringVar(&tenant, "tenant", "", "tenant name or id")
	c.Flags().StringVar(&identity, "identity", "", "the escrow identity file written by cofferd escrow init")
	c.Flags().StringVar(&slotName, "slot", "", "the escrow slot to check (default: the one the vault recorded)")
	return c
}

// verifyEscrow opens a tenant's escrow slot and checks the key against the
// repository config's MAC. It returns the slot's key fingerprint.
func verifyEscrow(ctx context.Context, data store.Store, tenantID, slotName string, ids []age.Identity) (string, error) {
	prefix := "repos/" + tenantID + "/"
	raw, err := store.ReadAll(ctx, data, prefix+slotName)
	if errors.Is(err, store.ErrNotFound) {
		return "", errors.New("the slot is not in the tenant's repository")
	}
	if err != nil {
		return "", err
	}
	s, err := crypto.ParseSlot(raw, slotName)
	if err != nil {
		return "", err
	}
	mk, err := s.OpenWithIdentity(ids...)
	if err != nil {
		return "", err
	}
	cfgRaw, err := store.ReadAll(ctx, data, prefix+repo.ConfigName)
	if errors.Is(err, store.ErrNotFound) {
		return "", errors.New("the tenant's repository has no config (coffer init did not finish)")
	}
	if err != nil {
		return "", err
	}
	_, body, mac, err := repo.ParseConfig(cfgRaw)
	if err != nil {
		return "", err
	}
	keys, err := crypto.Derive(mk)
	if err != nil {
		return "", err
	}
	if !keys.CheckConfigMAC(body, mac) {
		return "", errors.New("the slot opens, but the key in it does NOT authenticate the repository's config: it is not this repository's master key")
	}
	return s.EscrowFingerprint(), nil
}

// escrowText is the one-word escrow state shown by tenant list/show.
func escrowText(e vaultapi.Escrow) string {
	switch e.Status {
	case vaultapi.EscrowYes:
		return fmt.Sprintf("yes (slot %.17s…, key %s)", e.Slot, e.Fingerprint)
	case vaultapi.EscrowPending:
		return "chosen, slot pending"
	case vaultapi.EscrowNo:
		return "no"
	}
	return "undecided"
}
