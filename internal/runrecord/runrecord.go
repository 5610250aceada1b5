package runrecord

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// Version is the run record format this code writes and reads.
const Version = 1

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
	// MaxErrorRunes is the error text a writer keeps (Sanitize).
	MaxErrorRunes = 400
	maxErrorText  = 2000 // bytes of error text accepted
	// MaxSnapshots is the most snapshots one record lists.
	MaxSnapshots = 200
	maxVersion   = 100
	maxAttempts  = 1000
)

// Record is one run of the scheduled agent, as the vault reads it (plain
// JSON, no secrets, under runs/<sha256> in the repository; FORMAT.md "Run
// records"), and as the agent keeps the last ones. Its JSON field names
// are stable.
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

// Marshal encodes r as its record bytes.
func (r Record) Marshal() ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// Name is the repository name of record bytes b: Prefix + the SHA-256
// (hex) of b, a vaultapi.KindRun object.
func Name(b []byte) string {
	sum := sha256.Sum256(b)
	return Prefix + hex.EncodeToString(sum[:])
}

// Prefix is where run records live in a repository.
const Prefix = "runs/"

// Parse reads record bytes strictly: unknown fields, a second value,
// a wrong version or a field out of range are errors.
func Parse(b []byte) (Record, error) {
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
	case r.Version != Version:
		return bad("version %d, this agent reads version %d", r.Version, Version)
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
	case termtext.Clean(r.Error) != r.Error || termtext.Clean(r.AgentVersion) != r.AgentVersion:
		return bad("control characters in the error or version text")
	case (r.Error != "") == (r.Result == ResultOK):
		return bad("an error goes with every result but ok, and only with those")
	case len(r.Snapshots) > MaxSnapshots:
		return bad("%d snapshots, at most %d", len(r.Snapshots), MaxSnapshots)
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

// clip shortens outside input before it goes into a message.
func clip(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
