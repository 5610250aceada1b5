package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/keycache"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

func newKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage the repository's key slots and the key this agent keeps",
	}
	cmd.AddCommand(newKeyPasswdCmd(g), newKeyListCmd(g), newKeyForgetCmd(g))
	return cmd
}

// keyPasswdJSON is the --json output of key passwd.
type keyPasswdJSON struct {
	Type           string `json:"type"` // "key_passwd"
	Repository     string `json:"repository"`
	NewSlot        string `json:"new_slot"`
	OldSlot        string `json:"old_slot"`
	OldSlotRemoved bool   `json:"old_slot_removed"`
	// OperatorCommand is the command the provider runs to remove the old
	// slot, when the vault kept it.
	OperatorCommand string `json:"operator_command,omitempty"`
}

func newKeyPasswdCmd(g *globals) *cobra.Command {
	var newFile string
	var insecure bool
	passwd := &cobra.Command{
		Use:   "passwd",
		Short: "Change the passphrase (re-wraps the master key; data is untouched)",
		Long: `Add a key slot for the new passphrase (COFFER_NEW_PASSWORD,
--new-password-file, or a prompt) and remove the slot the current passphrase
opened. The master key, and so every stored object, stays the same. The
current passphrase is always asked for (a kept key is not enough), and the
key this agent keeps is refreshed. A weak new passphrase is refused unless
--insecure-passphrase is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.keyPasswd(cmd.Context(), newFile, insecure)
		},
	}
	passwd.Flags().StringVar(&newFile, "new-password-file", "", "read the new passphrase from this file")
	passwd.Flags().BoolVar(&insecure, "insecure-passphrase", false, "accept a new passphrase that the strength check refuses")
	return passwd
}

func (g *globals) keyPasswd(ctx context.Context, newFile string, insecure bool) error {
	r, err := g.openRepoWith(ctx, false)
	if err != nil {
		return err
	}
	pw, err := readSecret(EnvNewPassword, newFile, "New passphrase: ", true, g.stderr)
	if err != nil {
		return err
	}
	if err := g.checkNewPassphrase(pw, insecure); err != nil {
		return err
	}
	base := vaultURL(r.Store().Location())
	name, err := r.AddPassphraseSlotClaimed(ctx, pw, repo.SlotClaim{Note: "coffer key passwd", Credential: g.credentialID(base)})
	if err != nil {
		return err
	}
	out := keyPasswdJSON{Type: "key_passwd", Repository: r.Config().ID, NewSlot: name, OldSlot: r.OpenedSlot()}
	if out.OldSlot != "" && out.OldSlot != name {
		err := r.RemoveSlot(ctx, out.OldSlot)
		switch {
		case err == nil:
			out.OldSlotRemoved = true
		case errors.Is(err, store.ErrDenied) && base != nil:
			// Agents cannot delete through a vault.
			out.OperatorCommand = fmt.Sprintf("cofferd tenant remove-key %s %s", g.vaultTenant(ctx, base), strings.TrimPrefix(out.OldSlot, repo.KeysPrefix))
			g.warn(fmt.Sprintf("the vault is append-only, so the old key slot %s stays and the OLD passphrase still opens the repository; ask your provider to remove it with: %s",
				out.OldSlot, out.OperatorCommand))
		default:
			return fmt.Errorf("the new passphrase works, but removing the old slot %s failed: %w", out.OldSlot, err)
		}
	}
	ro, err := repo.OpenWithKey(ctx, r.Store(), r.Keys().Master(), name)
	if err != nil {
		return fmt.Errorf("the new key slot %s was stored, but the repository does not show it: %w", name, err)
	}
	g.keepUnlocked(ro)
	if g.json {
		g.printJSON(out)
		return nil
	}
	g.say("passphrase changed (new key slot %s)", name)
	return nil
}

// credentialID returns the id (never the secret) of the vault credential,
// or "" when the repository is not in a vault.
func (g *globals) credentialID(base *url.URL) string {
	if base == nil {
		return ""
	}
	o, err := g.vaultOptions(false)
	if err != nil {
		return ""
	}
	id, _, err := vaultapi.ParseCredential(o.Credential.Reveal())
	if err != nil {
		return ""
	}
	return id
}

// keySlotJSON is one slot in the --json output of key list.
type keySlotJSON struct {
	ID      string `json:"id"` // hex after keys/
	Type    string `json:"type,omitempty"`
	State   string `json:"state"` // "ok", "over_limit" or "damaged"
	Current bool   `json:"current"`
	Error   string `json:"error,omitempty"`
	Created string `json:"created,omitempty"`
	// Claimed is what the slot says about its writer; nobody checked it.
	Claimed *keyClaimJSON `json:"claimed,omitempty"`
	KDF     *keyKDFJSON   `json:"kdf,omitempty"`
}

// keyKDFJSON is a slot's argon2id parameters, without the salt.
type keyKDFJSON struct {
	Name      string `json:"name"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

type keyClaimJSON struct {
	Host       string `json:"host,omitempty"`
	Note       string `json:"note,omitempty"`
	Credential string `json:"credential,omitempty"`
}

func newKeyListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List key slots and who each claims to be from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			slots, err := repo.ListSlots(ctx, r.Store())
			if err != nil {
				return err
			}
			out := make([]keySlotJSON, 0, len(slots))
			for _, s := range slots {
				out = append(out, slotJSON(s, r.OpenedSlot()))
			}
			if g.json {
				g.printJSON(struct {
					Type       string        `json:"type"`
					Repository string        `json:"repository"`
					Slots      []keySlotJSON `json:"slots"`
				}{"key_list", r.Config().ID, out})
				return nil
			}
			return g.printSlots(out)
		},
	}
}

func slotJSON(s repo.SlotInfo, current string) keySlotJSON {
	j := keySlotJSON{ID: strings.TrimPrefix(s.Name, repo.KeysPrefix), State: "ok", Current: s.Name == current}
	if s.Err != nil {
		j.State, j.Error = "damaged", s.Err.Error()
		return j
	}
	j.Type, j.Created = s.Slot.Type, s.Slot.Created.Format(time.RFC3339)
	if s.Slot.Host != "" || s.Slot.Note != "" || s.Slot.Credential != "" {
		j.Claimed = &keyClaimJSON{Host: s.Slot.Host, Note: s.Slot.Note, Credential: s.Slot.Credential}
	}
	if k := s.Slot.KDF; k != nil {
		j.KDF = &keyKDFJSON{Name: k.Name, Time: k.Time, MemoryKiB: k.MemoryKiB, Threads: k.Threads}
		if crypto.DefaultKDFLimit.Check(*k) != nil {
			j.State = "over_limit"
		}
	}
	return j
}

func (g *globals) printSlots(slots []keySlotJSON) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tTYPE\tCREATED\tCLAIMED HOST\tCLAIMED CREDENTIAL\tNOTE\tSTATE")
	for _, s := range slots {
		c := keyClaimJSON{}
		if s.Claimed != nil {
			c = *s.Claimed
		}
		state := s.State
		switch s.State {
		case "damaged":
			state = "DAMAGED: " + s.Error
		case "over_limit":
			state = "over this agent's KDF limit: skipped"
		}
		if s.Current {
			state += " (current)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID[:min(12, len(s.ID))], dash(s.Type), dash(s.Created),
			dash(termtext.Clip(c.Host, 80)), dash(termtext.Clip(c.Credential, 80)), dash(termtext.Clip(c.Note, 80)), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	g.say("Host, credential and note are what each slot claims; nobody checked them.")
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newKeyForgetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "forget",
		Short: "Remove the unlocked key this agent keeps for the repository",
		Long: `Remove this agent's key file for the repository (in the config
directory, beside the config file): the kept master key and the slot it
remembers. The next command asks for the passphrase again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			url, err := g.repository()
			if err != nil {
				return err
			}
			st, err := g.openStore(ctx, url, false)
			if err != nil {
				return err
			}
			defer st.Close()
			cfg, _, _, err := repo.ReadConfig(ctx, st)
			if err != nil {
				return err
			}
			removed, err := keycache.Forget(g.keyDir(), cfg.ID)
			if err != nil {
				return fmt.Errorf("removing the key kept for repository %s: %w", cfg.ID, err)
			}
			if g.json {
				g.printJSON(map[string]any{"type": "key_forget", "repository": cfg.ID, "removed": removed})
				return nil
			}
			if removed {
				g.say("removed the key kept for repository %s", cfg.ID[:8])
			} else {
				g.say("no key kept for repository %s", cfg.ID[:8])
			}
			return nil
		},
	}
}

// vaultTenant names the tenant of this agent's credential for operator
// commands, or "<tenant>" when the vault does not say.
func (g *globals) vaultTenant(ctx context.Context, base *url.URL) string {
	t, err := g.vaultTenantInfo(ctx, base)
	if err != nil || t.Name == "" {
		return "<tenant>"
	}
	return t.Name
}

// vaultTenantInfo asks the vault at base about this agent's tenant.
func (g *globals) vaultTenantInfo(ctx context.Context, base *url.URL) (*vaultapi.TenantInfo, error) {
	o, err := g.vaultOptions(false)
	if err != nil {
		return nil, err
	}
	v, err := vaultclient.New(vaultclient.Config{BaseURL: base, Credential: o.Credential, CAFile: o.CAFile})
	if err != nil {
		return nil, err
	}
	defer v.Close()
	return v.Tenant(ctx)
}
