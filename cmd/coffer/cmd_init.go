package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

func newInitCmd(g *globals) *cobra.Command {
	var token, tokenFile string
	var escrow, insecurePass bool
	cmd := &cobra.Command{
		Use:   "init --repo URL [--token T]",
		Short: "Create a repository and write the agent's config file",
		Long: `Create a new encrypted repository at --repo (file:///dir or
s3://host:port/bucket/prefix) with a fresh random master key, wrapped in a
key slot under your passphrase (COFFER_PASSWORD, --password-file, or a prompt).
The repository URL is saved in the config file (mode 0600) for later commands.
Keep the passphrase safe: without it the backups cannot be read by anyone.

For a repository in a vault (--repo https://vault-host[:port]), init first
enrolls the agent with the one-time token from your provider
(COFFER_ENROLL_TOKEN, --token-file, or --token): it makes an agent
credential, saves it in the config file, and sends the vault only its
SHA-256. The token is never saved. The keys are made here and leave this
machine only wrapped, as for any other repository.

With --escrow, init also seals the master key to the vault's escrow public
key (published by the vault; the MSP keeps the private half offline) and
stores that key slot in the repository, so your provider can recover the
backups if every passphrase is lost. It prints the escrow key's
fingerprint: compare it with the one your provider gives you. Without
--escrow no such slot is made, and the vault records that you declined.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.repoURL == "" {
				return usageError{Err: errors.New("init needs --repo URL")}
			}
			ctx := cmd.Context()
			// The config is read later from other directories (cron,
			// systemd): paths in it must not depend on this one.
			if err := g.absolutePaths(); err != nil {
				return err
			}
			if err := checkConfigWritable(g.configPath, g.repoURL); err != nil {
				return err
			}
			tok, err := readToken(token, tokenFile)
			if err != nil {
				return err
			}
			conf := agentConfig{Repository: g.repoURL}
			var enrolled *vaultapi.EnrollResponse
			target, err := storeurl.Parse(g.repoURL)
			if err != nil {
				return err
			}
			base := target.Vault
			if base == nil && tok != "" {
				return usageError{Err: errors.New("--token is for a repository in a vault (--repo https://…)")}
			}
			var escrowKey *vaultclient.EscrowKey
			if escrow {
				// Before anything is created: no escrow key, no init.
				if escrowKey, err = g.fetchEscrowKey(ctx, base); err != nil {
					return err
				}
			}
			var joinPass []byte
			if base != nil && tok != "" {
				// An agent that can read the repository already has its
				// passphrase checked before a token is spent.
				if joinPass, err = g.precheckPassphrase(ctx); err != nil {
					return err
				}
			}
			if base != nil {
				if conf, enrolled, err = g.enrollAgent(ctx, base, tok, escrow); err != nil {
					return err
				}
				if enrolled != nil {
					g.say("enrolled with the vault as tenant %s (credential %s saved in %s)", enrolled.TenantName, enrolled.CredentialID, g.configPath)
				}
			}
			st, err := g.openStore(ctx, g.repoURL, true)
			if err != nil {
				return err
			}
			defer st.Close()
			if base != nil {
				exists, err := vaultRepoExists(ctx, st)
				if err != nil {
					return err
				}
				if exists {
					// Another agent of this tenant made the repository: join it.
					return g.joinVaultRepo(ctx, st, conf, enrolled, escrow, joinPass)
				}
			}
			pw, err := g.passphrase("New passphrase: ", true)
			if err != nil {
				return err
			}
			if err := g.checkNewPassphrase(pw, insecurePass); err != nil { // unlock.go
				return err
			}
			r, err := repo.Init(ctx, st, pw, repo.DefaultConfig())
			if err != nil {
				return err
			}
			if err := writeConfig(g.configPath, conf); err != nil {
				return fmt.Errorf("the repository was created, but %w", err)
			}
			g.keepUnlocked(r) // unlock.go
			var escrowSlot string
			if escrowKey != nil {
				if escrowSlot, err = g.addEscrowSlot(ctx, r, base, conf, escrowKey); err != nil {
					return fmt.Errorf("the repository was created and your passphrase opens it, but escrow failed: %w", err)
				}
			}
			signing := g.initSigningKey(ctx, base, conf.Credential, r)
			if g.json {
				out := map[string]any{"type": "init", "repository": st.Location(), "id": r.Config().ID, "config": g.configPath}
				if base != nil {
					out["signing_key_registered"] = signing
				}
				if enrolled != nil {
					out["tenant"], out["tenant_id"], out["credential_id"] = enrolled.TenantName, enrolled.TenantID, enrolled.CredentialID
				}
				if escrowKey != nil {
					out["escrow_slot"], out["escrow_fingerprint"] = escrowSlot, escrowKey.Fingerprint
				}
				g.printJSON(out)
				return nil
			}
			g.say("created repository %s at %s", r.Config().ID[:8], st.Location())
			g.say("wrote %s", g.configPath)
			if escrowKey != nil {
				g.say("escrow: the master key is also sealed to your provider's escrow key %s (key slot %s)", escrowKey.Fingerprint, escrowSlot)
				g.say("keep your passphrase safe: without it only your provider's offline escrow key can read these backups")
				return nil
			}
			g.say("keep your passphrase safe: without it nobody can read these backups")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&token, "token", "", "one-time enrollment token for a vault (prefer env "+EnvEnrollToken+": argv is visible to other users)")
	f.StringVar(&tokenFile, "token-file", "", "read the enrollment token from this file")
	f.BoolVar(&insecurePass, "insecure-passphrase", false, "accept a passphrase that the strength check refuses")
	f.BoolVar(&escrow, "escrow", false, "also seal the master key to the vault's escrow key (your provider can then recover the backups)")
	return cmd
}

// fetchEscrowKey reads and checks the vault's escrow key for init
// --escrow, and prints its fingerprint for comparison out of band.
func (g *globals) fetchEscrowKey(ctx context.Context, base *url.URL) (*vaultclient.EscrowKey, error) {
	if base == nil {
		return nil, usageError{Err: errors.New("--escrow is for a repository in a vault (--repo https://…): the escrow key is the vault's")}
	}
	vc := vaultclient.Config{BaseURL: base, CAFile: g.vaultCA}
	if vc.CAFile == "" {
		vc.CAFile = os.Getenv(vaultclient.EnvVaultCA)
	}
	if vc.CAFile == "" {
		if c, err := g.loadConfig(); err == nil {
			vc.CAFile = c.VaultCA
		}
	}
	k, err := vaultclient.FetchEscrow(ctx, vc)
	if errors.Is(err, vaultclient.ErrNoEscrow) {
		return nil, usageError{Err: fmt.Errorf("--escrow: the vault at %s offers no escrow key (your provider makes one with cofferd escrow init); nothing was created", base)}
	}
	if err != nil {
		return nil, fmt.Errorf("--escrow: %w; nothing was created", err)
	}
	if _, err := crypto.ParseEscrowRecipient(k.Recipient); err != nil {
		return nil, fmt.Errorf("--escrow: the vault's escrow key is unusable (%v); nothing was created", err)
	}
	if fp := crypto.EscrowFingerprint(k.Recipient); fp != k.Fingerprint {
		return nil, fmt.Errorf("--escrow: the vault's escrow key does not match the fingerprint it sent (%s, computed %s); nothing was created", clipFP(k.Fingerprint), fp)
	}
	g.say("escrow key of the vault: fingerprint %s (compare it with the one your provider gave you)", k.Fingerprint)
	return k, nil
}

func clipFP(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// addEscrowSlot stores an escrow-age key slot for r's master key and
// records it with the vault. It returns the slot's name.
func (g *globals) addEscrowSlot(ctx context.Context, r *repo.Repo, base *url.URL, conf agentConfig, k *vaultclient.EscrowKey) (string, error) {
	name, err := r.AddEscrowSlot(ctx, k.Recipient)
	if err != nil {
		return "", err
	}
	opts, err := g.vaultOptions(false)
	if err != nil {
		return "", err
	}
	if opts.Credential == "" {
		opts.Credential = conf.Credential
	}
	v, err := vaultclient.New(vaultclient.Config{BaseURL: base, Credential: opts.Credential, CAFile: opts.CAFile})
	if err != nil {
		return "", err
	}
	defer v.Close()
	if err := v.RecordEscrowSlot(ctx, name); err != nil {
		return "", fmt.Errorf("the escrow key slot %s is stored, but the vault did not record it: %w", name, err)
	}
	return name, nil
}

// vaultRepoExists reports whether the tenant's repository exists already
// in the vault (another agent of the tenant made it).
func vaultRepoExists(ctx context.Context, st store.Store) (bool, error) {
	_, err := st.Stat(ctx, repo.ConfigName)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking for an existing repository in the vault: %w", err)
	}
	return true, nil
}

// joinVaultRepo makes this agent a second (third, ...) agent of a tenant
// whose repository exists: the tenant's passphrase must open it, then the
// agent's config is written. Nothing in the vault changes; the agents share
// the repository, and chunks one agent stored are not stored again by
// another.
// pw is the passphrase when precheckPassphrase checked it already.
func (g *globals) joinVaultRepo(ctx context.Context, st store.Store, conf agentConfig, enrolled *vaultapi.EnrollResponse, escrow bool, pw []byte) error {
	if escrow {
		return usageError{Err: errors.New("--escrow: this tenant's repository exists already, and escrow was decided when it was created; " +
			"this agent is enrolled: run init again without --escrow to join it")}
	}
	var err error
	if pw == nil {
		if pw, err = g.passphrase("Passphrase of the tenant's repository: ", false); err != nil {
			return err
		}
	}
	r, err := repo.Open(ctx, st, pw)
	if err != nil {
		// The vault accepted this agent, and the config keeps its
		// credential: the retry needs the passphrase, not a new token.
		return fmt.Errorf("joining the tenant's existing repository: %w; this agent is enrolled (credential saved in %s): "+
			"run coffer init again with the tenant's passphrase (the same token, or none)", err, g.configPath)
	}
	if err := writeConfig(g.configPath, conf); err != nil {
		return err
	}
	g.keepUnlocked(r) // unlock.go
	signing := g.initSigningKey(ctx, vaultURL(g.repoURL), conf.Credential, r)
	if g.json {
		out := map[string]any{"type": "init", "repository": st.Location(), "id": r.Config().ID, "config": g.configPath, "joined": true,
			"signing_key_registered": signing}
		if enrolled != nil {
			out["tenant"], out["tenant_id"], out["credential_id"] = enrolled.TenantName, enrolled.TenantID, enrolled.CredentialID
		}
		g.printJSON(out)
		return nil
	}
	g.say("joined the tenant's repository %s at %s", r.Config().ID[:8], st.Location())
	g.say("wrote %s", g.configPath)
	return nil
}

// checkConfigWritable refuses to replace a config that names another
// repository.
func checkConfigWritable(path, url string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var c agentConfig
	if yaml.Unmarshal(b, &c) == nil && (c.Repository == "" || c.Repository == url) {
		return nil
	}
	return usageError{Err: fmt.Errorf("config %s already names repository %s; pass --config to write a new one elsewhere", path, c.Repository)}
}

// writeConfig writes the agent config atomically with mode 0600.
func writeConfig(path string, c agentConfig) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating the config directory: %w", err)
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append([]byte("# Coffer agent config. Keep it private (mode 0600).\n"), b...), 0o600); err != nil {
		return fmt.Errorf("writing config %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// absolutePaths makes a repository given as a relative directory, and the
// vault CA file, absolute, as init saves them in the config.
func (g *globals) absolutePaths() error {
	t, err := storeurl.Parse(g.repoURL)
	if err != nil {
		return usageError{Err: err}
	}
	if t.Dir != "" && !strings.Contains(g.repoURL, "://") {
		if g.repoURL, err = filepath.Abs(t.Dir); err != nil {
			return fmt.Errorf("repository %s: %w", t.Dir, err)
		}
	}
	if g.vaultCA != "" {
		if g.vaultCA, err = filepath.Abs(g.vaultCA); err != nil {
			return fmt.Errorf("--vault-ca %s: %w", g.vaultCA, err)
		}
	}
	return nil
}

// precheckPassphrase checks the passphrase against the tenant's existing
// repository before init spends a token, when the agent can read it
// already (an enrolled credential in the config or COFFER_CREDENTIAL). It
// returns the passphrase that opened it, or nil when there was nothing to
// check it against (no credential, a refused one, no repository yet).
func (g *globals) precheckPassphrase(ctx context.Context) ([]byte, error) {
	c, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	if os.Getenv(vaultclient.EnvCredential) == "" && (c.Credential == "" || !c.Enrolled || c.Repository != g.repoURL) {
		return nil, nil
	}
	st, err := g.openStore(ctx, g.repoURL, false)
	if err != nil {
		return nil, nil // e.g. a revoked credential: the token decides
	}
	defer st.Close()
	if exists, err := vaultRepoExists(ctx, st); err != nil || !exists {
		return nil, nil
	}
	pw, err := g.passphrase("Passphrase of the tenant's repository: ", false)
	if err != nil {
		return nil, err
	}
	if _, err := repo.Open(ctx, st, pw); errors.Is(err, crypto.ErrWrongPassphrase) {
		return nil, fmt.Errorf("the tenant's repository at %s: %w; nothing was changed and the token was not used: run coffer init again with the tenant's passphrase", g.repoURL, err)
	} else if err != nil {
		return nil, nil
	}
	return pw, nil
}
