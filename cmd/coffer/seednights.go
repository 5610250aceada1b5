package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/internal/fsx"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// seedPacks are the packs of one seed in transit.
type seedPacks struct {
	id    string
	packs map[pack.ID]struct{}
}

// watchSeeds prepares a night through a vault while a seed travels: the
// receipts of snapshots that need any pack of a seed in transit name that
// seed, so the vault takes them (their packs are on the disk) and shows
// them as waiting. A vault without seed routes (older) has no seeds.
func (g *globals) watchSeeds(ctx context.Context, r *repo.Repo) error {
	v, list, err := g.vaultSeeds(ctx, "receipts must name the seeds in transit")
	if v == nil || err != nil {
		return err
	}
	defer v.Close()
	var travelling []seedPacks
	for _, s := range list {
		if s.State != vaultapi.SeedTravelling {
			continue
		}
		sp, err := g.seedPackList(ctx, v, r, s.ID)
		if err != nil {
			return err
		}
		travelling = append(travelling, sp)
	}
	if len(travelling) > 0 {
		r.SetReceiptSeed(receiptSeedOf(travelling))
	}
	return nil
}

// receiptSeedOf names the first seed holding any of a snapshot's packs.
func receiptSeedOf(seeds []seedPacks) func([]pack.ID) string {
	return func(packs []pack.ID) string {
		for _, s := range seeds {
			for _, p := range packs {
				if _, ok := s.packs[p]; ok {
					return s.id
				}
			}
		}
		return ""
	}
}

// seedPackList loads the packs of seed id: from its manifest kept in the
// agent's cache directory, else from the vault (then kept there). A kept
// manifest is checked as one from the vault is: it is a file on disk.
func (g *globals) seedPackList(ctx context.Context, v *vaultclient.Client, r *repo.Repo, id string) (seedPacks, error) {
	dir := seedCache(r)
	m := g.cachedSeedManifest(dir, id)
	if m == nil {
		var body []byte
		var err error
		if m, body, err = v.SeedManifest(ctx, id); err != nil {
			return seedPacks{}, fmt.Errorf("loading the pack list of seed %s in transit: %w", id[:12], err)
		}
		if dir != "" {
			if err := fsx.WriteFileAtomic(dir, id+".json", body); err != nil {
				g.warn(fmt.Sprintf("could not keep the manifest of seed %s in %s: %v", id[:12], dir, err))
			}
		}
	}
	sp := seedPacks{id: id, packs: map[pack.ID]struct{}{}}
	for _, h := range m.Packs() {
		p, err := pack.ParseID(h)
		if err != nil {
			return seedPacks{}, fmt.Errorf("seed %s: %w", id[:12], err)
		}
		sp.packs[p] = struct{}{}
	}
	return sp, nil
}

// cachedSeedManifest reads the kept manifest of seed id, or nil; one that
// does not parse or is another seed's is removed with a warning.
func (g *globals) cachedSeedManifest(dir, id string) *seed.Manifest {
	if dir == "" {
		return nil
	}
	p := filepath.Join(dir, id+".json")
	if fi, err := os.Stat(p); err != nil || fi.Size() > seed.MaxManifestSize {
		return nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	m, err := seed.Parse(b)
	if err == nil && m.ID != id {
		err = fmt.Errorf("it is the manifest of seed %s", m.ID[:12])
	}
	if err != nil {
		g.warn(fmt.Sprintf("removing the kept manifest %s (%v); it is fetched again", p, err))
		_ = os.Remove(p)
		return nil
	}
	return m
}

// vaultSeeds asks the repository's vault for the tenant's seeds; why says
// what for in an error. v is nil (and err too) outside a vault and with a
// vault without seed routes (an older one): no seeds. The caller closes v.
func (g *globals) vaultSeeds(ctx context.Context, why string) (v *vaultclient.Client, list []vaultapi.SeedInfo, err error) {
	u, err := g.repository()
	if err != nil || vaultURL(u) == nil {
		return nil, nil, nil
	}
	if v, err = g.seedVault(vaultURL(u), ""); err != nil {
		return nil, nil, err
	}
	list, err = v.Seeds(ctx)
	if err != nil {
		v.Close()
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("asking the vault for the tenant's seeds (%s): %w", why, err)
	}
	return v, list, nil
}
