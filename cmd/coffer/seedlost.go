package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cofferhq/coffer/internal/fsx"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// A seed lost on the road. Once the tenant's seed is cancelled, the index
// files in the vault still name its packs that never arrived. After every
// index load through a vault the agent forgets those packs (the vault's
// lost list of each cancelled seed, fetched once and kept in the cache
// directory), so a backup stores their chunks again and a restore never
// looks for them there. A changed-block night must not patch a parent
// snapshot whose receipt names a cancelled seed: those snapshots (found
// once per seed in the receipts, and kept too) are read in full.

// lostSeed is one cancelled seed as the agent keeps it.
type lostSeed struct {
	info  vaultapi.SeedInfo
	packs []pack.ID
}

// maxLostSnapshots bounds a kept list of snapshots naming a lost seed.
const maxLostSnapshots = 1 << 20

// forgetLostSeeds drops the lost packs of the tenant's cancelled seeds
// from r's loaded index and remembers the seeds (g.lostSeeds) for the
// night's parent choice. A repository outside a vault, or a vault without
// seed routes, has none.
func (g *globals) forgetLostSeeds(ctx context.Context, r *repo.Repo) error {
	g.lostSeeds = nil
	v, list, err := g.vaultSeeds(ctx, "the packs of cancelled seeds never arrived")
	if v == nil || err != nil {
		return err
	}
	defer v.Close()
	var ids []pack.ID
	for _, s := range list {
		if s.State != vaultapi.SeedCancelled {
			continue
		}
		ls, err := g.lostPackList(ctx, v, r, s)
		if err != nil {
			return err
		}
		g.lostSeeds = append(g.lostSeeds, ls)
		ids = append(ids, ls.packs...)
	}
	if len(ids) > 0 {
		r.Index.ForgetPacks(ids)
	}
	return nil
}

// seedCache is the directory where the agent keeps what it learned of
// seeds ("" when there is none).
func seedCache(r *repo.Repo) string {
	if dir := cacheDir(r); dir != "" {
		return filepath.Join(dir, "seeds")
	}
	return ""
}

// lostPackList loads the lost packs of cancelled seed s: kept in the
// cache directory, else from the vault (then kept). A kept list is
// checked as one from the vault is.
func (g *globals) lostPackList(ctx context.Context, v *vaultclient.Client, r *repo.Repo, s vaultapi.SeedInfo) (lostSeed, error) {
	dir := seedCache(r)
	lost := g.cachedLostPacks(dir, s.ID)
	if lost == nil {
		var err error
		if lost, err = v.SeedLostPacks(ctx, s.ID); err != nil {
			return lostSeed{}, fmt.Errorf("loading the lost packs of cancelled seed %s: %w", s.ID[:12], err)
		}
		if b, err := json.Marshal(lost); err == nil && dir != "" {
			if err := fsx.WriteFileAtomic(dir, s.ID+".lost", b); err != nil {
				g.warn(fmt.Sprintf("could not keep the lost packs of seed %s in %s: %v", s.ID[:12], dir, err))
			}
		}
	}
	ls := lostSeed{info: s, packs: make([]pack.ID, 0, len(lost.Packs))}
	for _, h := range lost.Packs {
		p, err := pack.ParseID(h)
		if err != nil {
			return lostSeed{}, fmt.Errorf("seed %s: %w", s.ID[:12], err)
		}
		ls.packs = append(ls.packs, p)
	}
	return ls, nil
}

// cachedLostPacks reads the kept lost list of seed id, or nil; one that
// does not parse, or is another seed's, is removed with a warning.
func (g *globals) cachedLostPacks(dir, id string) *vaultapi.SeedLostPacks {
	b := readKept(dir, id+".lost", vaultapi.MaxSeedLostPacks)
	if b == nil {
		return nil
	}
	lost, err := vaultapi.ParseSeedLostPacks(b, id)
	if err != nil {
		g.dropKept(dir, id+".lost", err)
		return nil
	}
	return lost
}

// readKept reads a kept file of at most limit bytes, or nil.
func readKept(dir, name string, limit int64) []byte {
	if dir == "" {
		return nil
	}
	p := filepath.Join(dir, name)
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Size() > limit {
		return nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	return b
}

func (g *globals) dropKept(dir, name string, err error) {
	p := filepath.Join(dir, name)
	g.warn(fmt.Sprintf("removing the kept file %s (%v); it is fetched again", p, err))
	_ = os.Remove(p)
}

// lostSnapshots is the kept list of snapshots whose receipt names a
// cancelled seed.
type lostSnapshots struct {
	Seed      string   `json:"seed"`
	Snapshots []string `json:"snapshots"`
}

// unusableParents names the snapshots a changed-block night must not
// patch: those whose receipt names a cancelled seed, with why.
func (g *globals) unusableParents(ctx context.Context, r *repo.Repo) (map[string]string, error) {
	lost, err := g.lostSnapshots(ctx, r)
	if err != nil || len(lost) == 0 {
		return nil, err
	}
	out := make(map[string]string, len(lost))
	for id, ls := range lost {
		out[id] = fmt.Sprintf("the last snapshot's seed was cancelled (seed %s %s)", ls.info.ID[:12], cancelText(&ls.info))
	}
	return out, nil
}

// lostSnapshotError refuses to restore snapshot id when its receipt names
// a cancelled seed: chunks it needs never arrived.
func (g *globals) lostSnapshotError(ctx context.Context, r *repo.Repo, id string) error {
	lost, err := g.lostSnapshots(ctx, r)
	if err != nil {
		return err
	}
	if ls := lost[id]; ls != nil {
		return fmt.Errorf("snapshot %s needed seed %s, which %s: it cannot be restored; restore another snapshot (coffer snapshots lists them)",
			id[:12], ls.info.ID[:12], cancelText(&ls.info))
	}
	return nil
}

// lostSnapshots maps the snapshots whose receipt names a cancelled seed
// to that seed. Each seed's list is read from the receipts once, then
// kept in the cache directory (no receipt can name a cancelled seed
// later: the vault refuses it).
func (g *globals) lostSnapshots(ctx context.Context, r *repo.Repo) (map[string]*lostSeed, error) {
	if len(g.lostSeeds) == 0 {
		return nil, nil
	}
	out := map[string]*lostSeed{}
	var rcs []*vaultapi.Receipt
	loaded := false
	dir := seedCache(r)
	for i := range g.lostSeeds {
		ls := &g.lostSeeds[i]
		snaps := g.cachedLostSnapshots(dir, ls.info.ID)
		if snaps == nil {
			if !loaded {
				var err error
				if rcs, err = repo.Receipts(ctx, r.Store(), func(string, error) {}); err != nil {
					return nil, fmt.Errorf("reading the receipts to find the snapshots of cancelled seed %s: %w", ls.info.ID[:12], err)
				}
				loaded = true
			}
			snaps = namingSeed(rcs, ls.info.ID)
			g.keepLostSnapshots(dir, snaps)
		}
		for _, id := range snaps.Snapshots {
			out[id] = ls
		}
	}
	return out, nil
}

// namingSeed is the snapshots whose receipt names seed id.
func namingSeed(rcs []*vaultapi.Receipt, id string) *lostSnapshots {
	out := &lostSnapshots{Seed: id, Snapshots: []string{}}
	for _, rc := range rcs {
		if rc.Seed == id {
			out.Snapshots = append(out.Snapshots, rc.Snapshot)
		}
	}
	slices.Sort(out.Snapshots)
	out.Snapshots = slices.Compact(out.Snapshots)
	return out
}

func (g *globals) keepLostSnapshots(dir string, s *lostSnapshots) {
	if dir == "" {
		return
	}
	b, err := json.Marshal(s)
	if err == nil {
		err = fsx.WriteFileAtomic(dir, s.Seed+".snapshots", b)
	}
	if err != nil {
		g.warn(fmt.Sprintf("could not keep the snapshots of seed %s in %s: %v", s.Seed[:12], dir, err))
	}
}

// cachedLostSnapshots reads the kept snapshots of seed id, or nil.
func (g *globals) cachedLostSnapshots(dir, id string) *lostSnapshots {
	b := readKept(dir, id+".snapshots", 70*maxLostSnapshots)
	if b == nil {
		return nil
	}
	s, err := parseLostSnapshots(b, id)
	if err != nil {
		g.dropKept(dir, id+".snapshots", err)
		return nil
	}
	return s
}

// parseLostSnapshots checks a kept list: its seed is id, every snapshot
// 64 lower-case hex digits, sorted, none twice.
func parseLostSnapshots(b []byte, id string) (*lostSnapshots, error) {
	var s lostSnapshots
	if err := decodeStrict(b, &s); err != nil {
		return nil, err
	}
	switch {
	case s.Seed != id:
		return nil, fmt.Errorf("it is not the list of seed %s", id[:12])
	case s.Snapshots == nil || len(s.Snapshots) > maxLostSnapshots:
		return nil, errors.New("no snapshots array, or too long a one")
	}
	for i, sn := range s.Snapshots {
		if !vaultapi.ValidSHA256Hex(sn) || i > 0 && s.Snapshots[i-1] >= sn {
			return nil, fmt.Errorf("snapshot %d is not an ID in order", i)
		}
	}
	return &s, nil
}

// decodeStrict decodes one JSON value, refusing unknown fields and
// trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not valid JSON: %v", err)
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	return nil
}
