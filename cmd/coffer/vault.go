package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// EnvEnrollToken holds the one-time enrollment token for coffer init.
const EnvEnrollToken = "COFFER_ENROLL_TOKEN"

// vaultURL returns the vault base URL when raw names a vault, else nil.
func vaultURL(raw string) *url.URL {
	t, err := storeurl.Parse(raw)
	if err != nil {
		return nil
	}
	return t.Vault
}

// vaultOptions returns how to reach a vault: the credential from
// COFFER_CREDENTIAL or the config file, the CA from --vault-ca /
// COFFER_VAULT_CA or the config file.
func (g *globals) vaultOptions(create bool) (storeurl.Options, error) {
	o := storeurl.Options{Create: create, Credential: vaultapi.Secret(os.Getenv(vaultclient.EnvCredential)), CAFile: g.vaultCA}
	if o.Credential != "" && o.CAFile != "" {
		return o, nil
	}
	c, err := g.loadConfig()
	if err != nil {
		return o, err
	}
	if o.Credential == "" {
		o.Credential = c.Credential
	}
	if o.CAFile == "" {
		o.CAFile = c.VaultCA
	}
	if o.Credential == "" {
		return o, usageError{Err: fmt.Errorf("no agent credential for the vault: enroll with coffer init --repo URL --token TOKEN (or set %s), config %s has none", vaultclient.EnvCredential, g.configPath)}
	}
	return o, nil
}

// readToken returns the enrollment token from --token, --token-file or
// COFFER_ENROLL_TOKEN ("" when none is given). It is checked for form
// only; the error never repeats it.
func readToken(flag, file string) (vaultapi.Secret, error) {
	tok := flag
	if tok == "" && file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading the token file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		tok = os.Getenv(EnvEnrollToken)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", nil
	}
	if _, _, err := vaultapi.ParseToken(tok); err != nil {
		return "", usageError{Err: fmt.Errorf("the enrollment token is not valid: %w (copy it exactly as cofferd tenant create printed it)", err)}
	}
	return vaultapi.Secret(tok), nil
}

// enrollAgent makes sure the agent has an enrolled credential for the vault
// at base. A new credential is made here and written to the config (0600)
// as pending before the vault hears of it, so a lost reply is retried with
// the same credential and never burns the token; it becomes the config's
// credential only once the vault accepted it, so a failed enrollment (a
// wrong, used or expired token) never replaces a working credential. A
// token that already enrolled this agent is not sent again. escrow is the
// tenant's escrow choice, recorded by the vault. It returns the config to
// keep.
func (g *globals) enrollAgent(ctx context.Context, base *url.URL, tok vaultapi.Secret, escrow bool) (agentConfig, *vaultapi.EnrollResponse, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return cfg, nil, err
	}
	cfg.Repository = g.repoURL
	if g.vaultCA != "" {
		cfg.VaultCA = g.vaultCA
	}
	if cfg.Credential != "" && !cfg.Enrolled && cfg.PendingCredential == "" {
		// Written by an older agent before the vault accepted it.
		cfg.PendingCredential, cfg.Credential = cfg.Credential, ""
	}
	if tok == "" {
		switch {
		case os.Getenv(vaultclient.EnvCredential) != "" || cfg.Credential != "" && cfg.Enrolled:
			return cfg, nil, nil // enrolled before; init goes on
		case cfg.PendingCredential != "":
			return cfg, nil, usageError{Err: fmt.Errorf("the enrollment of this agent did not finish: run coffer init again with the same token (%s or --token)", EnvEnrollToken)}
		}
		return cfg, nil, usageError{Err: fmt.Errorf("a repository in a vault needs an enrollment token: set %s (or pass --token or --token-file); your provider makes one with cofferd tenant create or cofferd tenant token", EnvEnrollToken)}
	}
	tokID, _, err := vaultapi.ParseToken(tok.Reveal())
	if err != nil {
		return cfg, nil, usageError{Err: fmt.Errorf("the enrollment token is not valid: %w", err)}
	}
	if cfg.Credential != "" && cfg.Enrolled && cfg.EnrollTokenID == tokID {
		return cfg, nil, nil // this token enrolled this agent: a retry of init
	}
	resp, err := g.sendEnrollment(ctx, base, tok, escrow, &cfg)
	if err != nil {
		return cfg, nil, err
	}
	cfg.Credential, cfg.PendingCredential, cfg.Enrolled, cfg.EnrollTokenID = cfg.PendingCredential, "", true, tokID
	if err := writeConfig(g.configPath, cfg); err != nil {
		return cfg, nil, err
	}
	return cfg, resp, nil
}

// sendEnrollment enrolls cfg's pending credential (drawing and saving one
// if there is none) with the token.
func (g *globals) sendEnrollment(ctx context.Context, base *url.URL, tok vaultapi.Secret, escrow bool, cfg *agentConfig) (*vaultapi.EnrollResponse, error) {
	policy, err := g.retryPolicy()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	vc := vaultclient.Config{BaseURL: base, CAFile: cfg.VaultCA}
	if vc.CAFile == "" {
		vc.CAFile = os.Getenv(vaultclient.EnvVaultCA)
	}
	for redraw := 0; ; redraw++ {
		if cfg.PendingCredential == "" {
			cred, _, _, err := vaultapi.NewCredential()
			if err != nil {
				return nil, err
			}
			cfg.PendingCredential = cred
			if err := writeConfig(g.configPath, *cfg); err != nil {
				return nil, err
			}
		}
		id, secret, err := vaultapi.ParseCredential(cfg.PendingCredential.Reveal())
		if err != nil {
			return nil, fmt.Errorf("config %s: pending_credential: %w", g.configPath, err)
		}
		sum := vaultapi.SecretSHA256(secret)
		req := vaultapi.EnrollRequest{Token: tok, CredentialID: id, CredentialSHA256: hex.EncodeToString(sum[:]), Host: host, Escrow: escrow}
		resp, err := enrollRetrying(ctx, vc, req, policy)
		if errors.Is(err, store.ErrExists) && redraw < 2 {
			cfg.PendingCredential = "" // credential id taken: draw another
			continue
		}
		return resp, err
	}
}

// enrollRetrying sends the enrollment, retrying transient failures as
// every store request is retried (policy): the request is idempotent (same
// token, same credential hash).
func enrollRetrying(ctx context.Context, vc vaultclient.Config, req vaultapi.EnrollRequest, policy store.RetryPolicy) (*vaultapi.EnrollResponse, error) {
	var resp *vaultapi.EnrollResponse
	err := store.Do(ctx, policy, nil, nil, "enroll", vc.BaseURL.String(), func() error {
		var err error
		resp, err = vaultclient.Enroll(ctx, vc, req)
		return err
	})
	return resp, err
}

// EnvRetryPatience sets --retry-patience.
const EnvRetryPatience = "COFFER_RETRY_PATIENCE"

// retryPolicy is how the agent retries a store or vault that fails or is
// away: store.DefaultRetry for up to --retry-patience (env
// COFFER_RETRY_PATIENCE, else the config's retry_patience, else
// store.DefaultPatience), which also bounds waiting on a throttling vault
// from below.
func (g *globals) retryPolicy() (store.RetryPolicy, error) {
	p := store.DefaultRetry
	p.Patience = store.DefaultPatience
	v, from := g.retryPatience, "--retry-patience (or "+EnvRetryPatience+")"
	if v == "" {
		c, err := g.loadConfig()
		if err != nil {
			return p, err
		}
		v, from = c.RetryPatience, "retry_patience in "+g.configPath
	}
	if v == "" {
		return p, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return p, usageError{Err: fmt.Errorf("%s is %q; give a positive duration such as 10m or 1h", from, v)}
	}
	p.Patience = d
	p.ThrottleBudget = max(p.ThrottleBudget, d)
	return p, nil
}

// quotaHint completes a quota refusal with what the user can do.
func quotaHint(err error) error {
	var qe *store.QuotaError
	if !errors.As(err, &qe) {
		return err
	}
	return fmt.Errorf("%w. Nothing stored was lost; ask your provider to raise the quota (cofferd tenant set-quota), then run the backup again: it resumes where it stopped", err)
}
