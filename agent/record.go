package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// RecordVersion is the run record format this code writes and reads.
const RecordVersion = 1

// Run results.
const (
	ResultOK          = "ok"
	ResultPartial     = "partial"     // some sources failed, the others were saved
	ResultFailed      = "failed"      // after every try
	ResultInterrupted = "interrupted" // the agent was stopped; the next run resumes
)

// Limits on a record read from outside.
const (
	MaxRecordSize = vaultapi.MaxRunSize
	errorRunes    = 400  // the error text kept
	maxErrorText  = 2000 // bytes of error text accepted
	maxSnapshots  = 200
	maxVersion    = 100
)

// Record is one run, as the vault reads it (plain JSON, no secrets, under
// runs/<sha256> in the repository; FORMAT.md "Run records"), and as the
// agent keeps the last ones.
type Record struct {
	Version      int       `json:"version"`
	AgentVersion string    `json:"agent_version"`
	Scheduled    time.Time `json:"scheduled"`
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished"`
	Result       string    `json:"result"`
	Error        string    `json:"error,omitempty"`
	Attempts     int       `json:"attempts"`
	Bytes        int64     `json:"bytes_stored_new"`
	Snapshots    []string  `json:"snapshots"`
	NextRun      time.Time `json:"next_run,omitzero"`
}

// finish sets the result from what the run returned.
func (r *Record) finish(out Outcome, err error, stopped bool) {
	r.Bytes, r.Snapshots = out.Bytes, out.Snapshots
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
	}
}

// sanitize makes error text fit for a record others read: one line of
// printable text, clipped. Errors never hold secrets (house rule), so
// nothing more is taken out.
func sanitize(s string) string { return termtext.Clip(s, errorRunes) }

// Marshal encodes r as its record bytes.
func (r Record) Marshal() ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// Name is the repository name of record bytes b: runs/<sha256 of b>.
func Name(b []byte) string {
	sum := sha256.Sum256(b)
	return RunsPrefix + hex.EncodeToString(sum[:])
}

// RunsPrefix is where run records live in a repository.
const RunsPrefix = "runs/"

// ParseRecord reads record bytes strictly: unknown fields, a second value,
// a wrong version or a field out of range are errors.
func ParseRecord(b []byte) (Record, error) {
	var r Record
	if len(b) > MaxRecordSize {
		return r, fmt.Errorf("run record of %d bytes is over the %d allowed", len(b), MaxRecordSize)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return r, fmt.Errorf("run record is not valid: %v", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return r, errors.New("run record is not valid: data after the record")
	}
	if err := r.check(); err != nil {
		return r, err
	}
	return r, nil
}

func (r Record) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("run record is not valid: "+format, a...)
	}
	switch {
	case r.Version != RecordVersion:
		return bad("version %d, this agent reads version %d", r.Version, RecordVersion)
	case r.Result != ResultOK && r.Result != ResultPartial && r.Result != ResultFailed && r.Result != ResultInterrupted:
		return bad("result %q is none of ok, partial, failed, interrupted", clip(r.Result))
	case r.Started.IsZero() || r.Finished.Before(r.Started):
		return bad("it finished (%s) before it started (%s)", r.Finished.Format(time.RFC3339), r.Started.Format(time.RFC3339))
	case r.Attempts < 1 || r.Attempts > maxAttempts:
		return bad("%d attempts", r.Attempts)
	case r.Bytes < 0:
		return bad("%d bytes", r.Bytes)
	case len(r.Error) > maxErrorText || len(r.AgentVersion) > maxVersion:
		return bad("error or version text too long")
	case len(r.Snapshots) > maxSnapshots:
		return bad("%d snapshots, at most %d", len(r.Snapshots), maxSnapshots)
	}
	for _, id := range r.Snapshots {
		if !isHex64(id) {
			return bad("snapshot ID %q is not 64 lower-case hex digits", clip(id))
		}
	}
	return nil
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Publish puts r into the repository store st under runs/<sha256>, for the
// vault to read. The same record put twice is stored once.
func Publish(ctx context.Context, st store.Store, r Record) error {
	b, err := r.Marshal()
	if err != nil {
		return err
	}
	err = st.Put(ctx, Name(b), store.Bytes(b), int64(len(b)))
	if err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("putting the run record into the repository: %w", err)
	}
	return nil
}
