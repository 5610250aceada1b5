package main

import (
	"context"
	"fmt"
	"net/url"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// seedVault returns a client of the vault at base for the seed calls,
// retried under the agent's retry policy. cred is used when neither
// COFFER_CREDENTIAL nor the config names one (init, before it wrote it).
func (g *globals) seedVault(base *url.URL, cred vaultapi.Secret) (*vaultclient.Client, error) {
	policy, err := g.retryPolicy()
	if err != nil {
		return nil, err
	}
	o, err := g.vaultOptions(false)
	if o.Credential == "" && cred != "" {
		o.Credential, err = cred, nil
	}
	if err != nil {
		return nil, err
	}
	return vaultclient.New(vaultclient.Config{BaseURL: base, Credential: o.Credential, CAFile: o.CAFile, Retry: policy})
}

// registerSigningKey tells the vault at base the public half of r's seed
// signing key (the vault keeps the first it learns).
func (g *globals) registerSigningKey(ctx context.Context, base *url.URL, cred vaultapi.Secret, r *repo.Repo) error {
	v, err := g.seedVault(base, cred)
	if err != nil {
		return err
	}
	defer v.Close()
	return v.RegisterSigningKey(ctx, r.Keys().SigningKey().Public())
}

// initSigningKey registers the signing key at init: a failure is a
// warning saying how to retry, since the repository is made and usable.
// It reports whether the vault has the key.
func (g *globals) initSigningKey(ctx context.Context, base *url.URL, cred vaultapi.Secret, r *repo.Repo) bool {
	if base == nil {
		return false
	}
	if err := g.registerSigningKey(ctx, base, cred, r); err != nil {
		g.warn(fmt.Sprintf("the vault did not learn this repository's seed signing key (%s); "+
			"seeds cannot be registered until it does: run coffer seed status to send it again", termtext.Clean(err.Error())))
		return false
	}
	return true
}
