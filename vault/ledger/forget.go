package ledger

import (
	"context"
	"fmt"
	"slices"
)

// maxForgotten bounds Usage.Forgotten: the newest batches are kept, enough
// for any run to be retried many times over.
const maxForgotten = 512

// Removal is a batch of objects the vault deleted (garbage collection,
// retention), with what they added to the usage when they were stored.
type Removal struct {
	// Batch names the batch: applying one batch twice changes nothing, so
	// a job killed between deleting and recording reruns safely.
	Batch     string
	Objects   int64
	Bytes     int64 // stored bytes
	Packs     int64
	PackBytes int64
	Snapshots int64
	Logical   int64 // reported by agents, of the snapshots removed
	Data      int64
}

// Forget takes a removal off the tenant's usage, once per batch.
func (l *Ledger) Forget(ctx context.Context, tenantID string, rm Removal) error {
	if rm.Batch == "" {
		return fmt.Errorf("ledger: a removal needs a batch name")
	}
	return l.update(ctx, tenantID, func(cur *Usage, exists bool) (*Usage, error) {
		if !exists {
			cur = &Usage{Tenant: tenantID, Reserved: []Reserved{}}
		}
		if slices.Contains(cur.Forgotten, rm.Batch) {
			return cur, nil
		}
		next := clone(cur)
		next.Objects = max(0, next.Objects-rm.Objects)
		next.StoredBytes = max(0, next.StoredBytes-rm.Bytes)
		next.Packs = max(0, next.Packs-rm.Packs)
		next.PackBytes = max(0, next.PackBytes-rm.PackBytes)
		next.Snapshots = max(0, next.Snapshots-rm.Snapshots)
		next.LogicalBytes = max(0, next.LogicalBytes-rm.Logical)
		next.DataBytes = max(0, next.DataBytes-rm.Data)
		next.Forgotten = append(slices.Clone(cur.Forgotten), rm.Batch)
		if n := len(next.Forgotten); n > maxForgotten {
			next.Forgotten = next.Forgotten[n-maxForgotten:]
		}
		next.Updated = l.now()
		return next, nil
	})
}
