package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/internal/runrecord"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
)

// Record is one run's record (package runrecord).
type Record = runrecord.Record

// The results a record holds.
const (
	ResultOK          = runrecord.ResultOK
	ResultPartial     = runrecord.ResultPartial
	ResultFailed      = runrecord.ResultFailed
	ResultInterrupted = runrecord.ResultInterrupted
)

// finish sets a record's result from what the run returned.
func finish(r *Record, out Outcome, err error, stopped bool) {
	r.Bytes, r.Snapshots = out.Bytes, out.Snapshots
	if len(r.Snapshots) > runrecord.MaxSnapshots {
		r.Snapshots = r.Snapshots[:runrecord.MaxSnapshots]
	}
	if r.Snapshots == nil {
		r.Snapshots = []string{}
	}
	switch {
	case err == nil:
		r.Result = ResultOK
	case stopped:
		r.Result = ResultInterrupted
	case out.Partial:
		r.Result = ResultPartial
	default:
		r.Result = ResultFailed
	}
	if err != nil {
		r.Error = sanitize(err.Error())
		if r.Error == "" {
			r.Error = "failed without saying why"
		}
	}
}

// sanitize makes error text fit for a record others read: one line of
// printable text, clipped. Errors never hold secrets (house rule), so
// nothing more is taken out.
func sanitize(s string) string { return termtext.Clip(s, runrecord.MaxErrorRunes) }

// Publish puts r into the repository store st under runs/<sha256>, for the
// vault to read. The same record put twice is stored once.
func Publish(ctx context.Context, st store.Store, r Record) error {
	b, err := r.Marshal()
	if err != nil {
		return err
	}
	err = st.Put(ctx, runrecord.Name(b), store.Bytes(b), int64(len(b)))
	if err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("putting the run record into the repository: %w", err)
	}
	return nil
}
