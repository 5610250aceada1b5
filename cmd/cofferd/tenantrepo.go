package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/vault/registry"
)

// tenantRepo is a tenant's repository opened read-only by the provider:
// restores, instant access and drills.
type tenantRepo struct {
	tenant *registry.Tenant
	repo   *repo.Repo
	vault  store.Store // the vault's store (receipts, seed records)
	close  func()
}

// openTenantRepo opens a tenant's repository with the provider's escrow
// identity (the file cofferd escrow init wrote), read-only, its index
// loaded. A tenant that did not choose escrow can only be restored by its
// own agent.
func (g *globals) openTenantRepo(ctx context.Context, tenant, escrowKey string) (*tenantRepo, error) {
	if escrowKey == "" {
		return nil, usageError{Err: errors.New("--escrow-key FILE is required: the vault opens a tenant's repository with the escrow identity that cofferd escrow init wrote (a tenant without escrow restores with its own agent: coffer restore)")}
	}
	ids, err := readEscrowIdentity(escrowKey)
	if err != nil {
		return nil, err
	}
	stack, reg, err := g.openVaultStack(ctx)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*tenantRepo, error) { stack.Provider.Close(); return nil, err }
	t, err := reg.Resolve(ctx, tenant)
	if err != nil {
		return fail(err)
	}
	sub, err := store.ReadOnlySub(stack.Retry, "repos/"+t.ID+"/")
	if err != nil {
		return fail(err)
	}
	r, err := repo.OpenWithUnlocker(ctx, sub, repo.EscrowIdentity{Identities: ids, Slot: t.Escrow.Slot})
	switch {
	case errors.Is(err, repo.ErrNoEscrowSlot):
		return fail(fmt.Errorf("tenant %s: %w (escrow: %s)", t.Name, err, escrowText(t.Escrow)))
	case errors.Is(err, repo.ErrNoRepository):
		return fail(fmt.Errorf("tenant %s has no repository yet (its agent has not run coffer init): %w", t.Name, err))
	case err != nil:
		return fail(fmt.Errorf("tenant %s: %w", t.Name, err))
	}
	if err := r.LoadIndex(ctx, func(name string, err error) {
		g.log.Warn("index file skipped; its packs are found from their headers", "tenant", t.Name, "object", name, "err", err.Error())
	}); err != nil {
		return fail(fmt.Errorf("tenant %s: loading the index: %w", t.Name, err))
	}
	if err := forgetLostPacks(ctx, stack.Retry, r, t); err != nil {
		return fail(fmt.Errorf("tenant %s: the packs of its cancelled seeds: %w", t.Name, err))
	}
	return &tenantRepo{tenant: t, repo: r, vault: stack.Retry, close: func() { stack.Provider.Close() }}, nil
}

// openVaultStack opens the vault's store (its retry layer for reading
// tenants' objects) and the registry over it. The caller closes
// stack.Provider.
func (g *globals) openVaultStack(ctx context.Context) (*storeurl.Stack, *registry.Registry, error) {
	raw, err := g.storeTarget()
	if err != nil {
		return nil, nil, err
	}
	stack, err := g.openStore(ctx, raw, 0)
	if err != nil {
		return nil, nil, err
	}
	reg, err := registry.New(stack.Retry, g.clock)
	if err == nil {
		err = g.checkVault(ctx, reg, stack.Provider)
	}
	if err != nil {
		stack.Provider.Close()
		return nil, nil, err
	}
	return stack, reg, nil
}

// readEscrowIdentity reads the escrow identity file.
func readEscrowIdentity(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError{Err: fmt.Errorf("--escrow-key: %w", err)}
	}
	defer f.Close()
	ids, err := crypto.ParseEscrowIdentities(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, usageError{Err: fmt.Errorf("--escrow-key %s: %w", path, err)}
	}
	return ids, nil
}

// oneSnapshot is the argument check of a command that takes one SNAPSHOT.
func oneSnapshot(verb string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError{Err: fmt.Errorf("%s needs exactly one SNAPSHOT (an ID prefix, or latest)", verb)}
		}
		return nil
	}
}

// tenantSnapshot opens a tenant's repository (openTenantRepo) and finds a
// snapshot in it (an ID prefix, or latest with name). The caller closes
// the repository.
func (g *globals) tenantSnapshot(ctx context.Context, tenant, escrowKey, ref, name string) (*tenantRepo, *repo.SnapshotInfo, error) {
	tr, err := g.openTenantRepo(ctx, tenant, escrowKey)
	if err != nil {
		return nil, nil, err
	}
	snap, err := tr.repo.FindSnapshot(ctx, ref, name)
	if err == nil {
		err = tr.seedWait(ctx, snap.ID)
	}
	if err != nil {
		tr.close()
		return nil, nil, fmt.Errorf("tenant %s: %w", tr.tenant.Name, err)
	}
	return tr, snap, nil
}
