package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// A seed lost on the road. Cancelling a travelling seed records which of
// its packs the vault does not hold, beside its manifest, before the book
// changes:
//
//	vault/seeds/<tid>/<seed>.lost    SeedLostPacks (JSON)
//
// so agents learn exactly which packs will never come and upload their
// chunks again. A cancelled seed is never imported; snapshots whose
// receipt names it are lost (never restorable, never safe).

func seedLostKey(tenantID, id string) string {
	return "vault/seeds/" + tenantID + "/" + id + ".lost"
}

// CheckCancelReason validates the reason given for a cancel: at most
// vaultapi.MaxSeedCancelReason bytes of printable UTF-8 on one line. It
// returns the reason trimmed of surrounding space.
func CheckCancelReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case len(reason) > vaultapi.MaxSeedCancelReason:
		return "", vaultapi.Errorf(vaultapi.CodeBadRequest, "the reason is %d bytes, over the limit of %d: say it shorter", len(reason), vaultapi.MaxSeedCancelReason)
	case !utf8.ValidString(reason):
		return "", vaultapi.Errorf(vaultapi.CodeBadRequest, "the reason is not valid UTF-8")
	case strings.IndexFunc(reason, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return "", vaultapi.Errorf(vaultapi.CodeBadRequest, "the reason holds control characters: give it on one line of plain text")
	}
	return reason, nil
}

// CancelSeed declares seed id of the tenant lost: travelling turns
// cancelled, with reason and the time now. It first lists the tenant's
// packs in data and stores which of the seed's packs are missing
// (LostPacks). An imported seed is refused; a cancelled one is returned
// unchanged. data is the vault's data store (the tenants' repositories
// and the seed manifests), sw its compare-and-swap for the seed book.
func CancelSeed(ctx context.Context, sw store.Swapper, data store.Store, tenantID, id, reason string, now time.Time) (*vaultapi.SeedInfo, error) {
	reason, err := CheckCancelReason(reason)
	if err != nil {
		return nil, err
	}
	book, err := LoadSeedBook(ctx, sw, tenantID)
	if err != nil {
		return nil, err
	}
	s := book.Find(id)
	if err := cancelRefusal(s, id); err != nil || s.State == vaultapi.SeedCancelled {
		return s, err
	}
	if err := recordLostPacks(ctx, data, tenantID, id); err != nil {
		return nil, err
	}
	var out vaultapi.SeedInfo
	_, err = updateSeedBook(ctx, sw, tenantID, func(b *SeedBook) (bool, error) {
		s := b.Find(id)
		if err := cancelRefusal(s, id); err != nil {
			return false, err
		}
		if s.State == vaultapi.SeedTravelling {
			t := now.UTC()
			s.State, s.Cancelled, s.Reason = vaultapi.SeedCancelled, &t, reason
		}
		out = *s
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// cancelRefusal is why seed id (s its record) cannot be cancelled, or nil.
func cancelRefusal(s *vaultapi.SeedInfo, id string) error {
	switch {
	case s == nil:
		return vaultapi.Errorf(vaultapi.CodeNotFound, "no seed %s registered", short(id))
	case s.State == vaultapi.SeedImported:
		return vaultapi.Errorf(vaultapi.CodeBadRequest,
			"seed %s was imported on %s: every object of it is in the vault, so it cannot be cancelled", short(id), importDate(s))
	}
	return nil
}

func importDate(s *vaultapi.SeedInfo) string {
	if s.Report == nil {
		return "an earlier run"
	}
	return s.Report.Finished.UTC().Format(time.DateOnly)
}

// recordLostPacks stores the seed's packs that the tenant's data lacks.
// A list stored by an earlier, interrupted cancel is kept.
func recordLostPacks(ctx context.Context, data store.Store, tenantID, id string) error {
	m, _, _, err := SeedManifest(ctx, data, tenantID, id)
	if err != nil {
		return err
	}
	sub, err := store.ReadOnlySub(data, tenantPrefix(tenantID))
	if err != nil {
		return err
	}
	have := map[string]bool{}
	if err := sub.List(ctx, repo.DataPrefix, func(i store.Info) error {
		if p, err := repo.ParsePackName(i.Name); err == nil {
			have[p.String()] = true
		}
		return nil
	}); err != nil {
		return fmt.Errorf("listing the packs of tenant %s: %w", tenantID, err)
	}
	lost := vaultapi.SeedLostPacks{Seed: id, Packs: []string{}}
	for _, p := range m.Packs() {
		if !have[p] {
			lost.Packs = append(lost.Packs, p)
		}
	}
	slices.Sort(lost.Packs)
	b, err := json.Marshal(lost)
	if err != nil {
		return err
	}
	err = data.Put(ctx, seedLostKey(tenantID, id), bytes.NewReader(b), int64(len(b)))
	if err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("storing the lost packs of seed %s: %w", short(id), err)
	}
	return nil
}

// LostPacks reads the packs recorded when seed id of the tenant was
// cancelled (store.ErrNotFound when it was not).
func LostPacks(ctx context.Context, data store.Store, tenantID, id string) (*vaultapi.SeedLostPacks, error) {
	b, err := store.ReadAllLimit(ctx, data, seedLostKey(tenantID, id), vaultapi.MaxSeedLostPacks)
	if err != nil {
		return nil, fmt.Errorf("reading the lost packs of seed %s: %w", short(id), err)
	}
	lost, err := vaultapi.ParseSeedLostPacks(b, id)
	if err != nil {
		return nil, fmt.Errorf("the stored lost packs of seed %s: %w", short(id), err)
	}
	return lost, nil
}
