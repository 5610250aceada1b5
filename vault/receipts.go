package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/jobs"
)

// statPacksUpTo is the most packs a receipt check stats one by one; above
// it, one listing of the tenant's packs is cheaper.
const statPacksUpTo = 256

// acceptReceipt checks a receipt before the vault stores it: it parses,
// every pack it names exists (or travels on its seed, still in transit),
// and garbage collection gives back the packs
// it had marked (or refuses, when one is being deleted).
func (s *Server) acceptReceipt(ctx context.Context, r *http.Request, p *Principal, body []byte) *Error {
	rc, err := vaultapi.ParseReceipt(body)
	if err != nil {
		return Errorf(http.StatusUnprocessableEntity, vaultapi.CodeBadReceipt, "%v", err)
	}
	missing, err := s.missingPacks(ctx, p.TenantID, rc.Packs)
	if err != nil {
		return s.apiError(r, err)
	}
	if len(missing) > 0 {
		// Accepted only when they travel on the receipt's seed in transit.
		if e := s.seedExcuses(ctx, r, p, rc, missing); e != nil {
			return e
		}
	}
	sw := s.state
	if sw == nil {
		return Errorf(http.StatusInternalServerError, vaultapi.CodeInternal, "the vault's store does not support conditional writes")
	}
	rej, err := jobs.ClaimPacks(ctx, sw, p.TenantID, rc.Packs)
	if err != nil {
		return s.apiError(r, err)
	}
	if rej != nil {
		return Errorf(http.StatusConflict, vaultapi.CodeReceiptRefused,
			"the receipt of snapshot %s names %d packs that garbage collection is deleting (%s): back up again; the agent uploads their chunks anew",
			rc.Snapshot, len(rej.Deleting), firstFew(rej.Deleting))
	}
	return nil
}

// missingPacks returns the packs of ids the tenant's repository lacks.
func (s *Server) missingPacks(ctx context.Context, tenantID string, ids []string) ([]string, error) {
	key := func(id string) string { return objectKey(tenantID, "data/"+id[:2]+"/"+id) }
	if len(ids) > statPacksUpTo {
		have := map[string]bool{}
		err := s.data.List(ctx, objectKey(tenantID, "data/"), func(i store.Info) error {
			have[i.Name[strings.LastIndexByte(i.Name, '/')+1:]] = true
			return nil
		})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, id := range ids {
			if !have[id] {
				out = append(out, id)
			}
		}
		return out, nil
	}
	var mu sync.Mutex
	var out []string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, id := range ids {
		if _, ok := s.sizes.Get(key(id)); ok {
			continue
		}
		g.Go(func() error {
			_, err := s.data.Stat(gctx, key(id))
			if errors.Is(err, store.ErrNotFound) {
				mu.Lock()
				out = append(out, id)
				mu.Unlock()
				return nil
			}
			return err
		})
	}
	return out, g.Wait()
}

// firstFew names at most three of ids.
func firstFew(ids []string) string {
	if len(ids) <= 3 {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:3], ", "), len(ids)-3)
}
