package drill

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// Version is the evidence format version this code writes and reads.
const Version = 1

// Results.
const (
	Passed = "passed"
	Failed = "failed"
)

// Who ran the drill.
const (
	ByVault = "vault" // cofferd drill, with the escrow identity
	ByAgent = "agent" // coffer drill, with the tenant's own key
)

// RTO statuses: the recovery time achieved against the objective.
const (
	RTOMet         = "met"
	RTOMissed      = "missed"
	RTONoObjective = "no objective"
)

// Target names.
const (
	TargetVerifyOnly    = "verify-only"
	targetScratchPrefix = "scratch:"
)

// ScratchTarget names a restore into scratch directory dir.
func ScratchTarget(dir string) string { return targetScratchPrefix + dir }

// Limits on evidence read from outside.
const (
	MaxEvidenceSize = vaultapi.MaxDrillSize
	maxDisks        = 64
	maxText         = 200  // names, targets
	maxErrorText    = 1000 // the error of a failed drill
)

// Evidence is the record of one drill of one snapshot. Its JSON field
// names are stable (FORMAT.md, "Drill evidence"); it holds no secrets.
type Evidence struct {
	Version      int       `json:"version"`
	Tenant       string    `json:"tenant,omitempty"`    // the tenant's name, when the vault ran it
	TenantID     string    `json:"tenant_id,omitempty"` // likewise
	RunBy        string    `json:"run_by"`              // ByVault or ByAgent
	VM           string    `json:"vm"`                  // the snapshot's name
	Host         string    `json:"host,omitempty"`      // the host the snapshot was taken on
	SnapshotID   string    `json:"snapshot_id"`
	SnapshotTime time.Time `json:"snapshot_time"`
	Pick         string    `json:"pick"`   // PickNewest or PickRandom
	Target       string    `json:"target"` // TargetVerifyOnly or "scratch:DIR"
	Disks        []Disk    `json:"disks"`
	Size         int64     `json:"bytes_size"`    // all disks
	Fetched      int64     `json:"bytes_fetched"` // from the store
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished"`
	// DurationSeconds is Finished - Started: the recovery time achieved.
	DurationSeconds     float64 `json:"duration_seconds"`
	Result              string  `json:"result"` // Passed or Failed
	Error               string  `json:"error,omitempty"`
	RTOObjectiveSeconds float64 `json:"rto_objective_seconds"` // 0: no objective
	RTO                 string  `json:"rto"`                   // RTOMet, RTOMissed or RTONoObjective
}

// Disk is the evidence for one disk of the snapshot.
type Disk struct {
	Index    int    `json:"index"`
	Size     int64  `json:"size"`
	Fetched  int64  `json:"bytes_fetched"`
	Digest   string `json:"digest"` // recorded at backup
	Verified bool   `json:"verified"`
}

// Passed reports whether the drill passed.
func (e *Evidence) Passed() bool { return e.Result == Passed }

// Duration is the recovery time achieved.
func (e *Evidence) Duration() time.Duration {
	return time.Duration(e.DurationSeconds * float64(time.Second))
}

// finish sets the times, the result and the RTO status.
func (e *Evidence) finish(started, finished time.Time, objective time.Duration, err error) {
	e.Started, e.Finished = started.UTC(), finished.UTC()
	e.DurationSeconds = roundMillis(finished.Sub(started).Seconds())
	e.RTOObjectiveSeconds = roundMillis(objective.Seconds())
	e.Result = Passed
	if err != nil {
		e.Result = Failed
		e.Error = termtext.Clip(err.Error(), maxErrorText-1)
	}
	e.RTO = rtoStatus(e.Result, finished.Sub(started), objective)
}

// rtoStatus is the RTO status of a drill: a failed drill recovered
// nothing, so it misses any objective.
func rtoStatus(result string, achieved, objective time.Duration) string {
	switch {
	case objective <= 0:
		return RTONoObjective
	case result == Passed && achieved <= objective:
		return RTOMet
	}
	return RTOMissed
}

func roundMillis(s float64) float64 { return math.Round(s*1000) / 1000 }

// Marshal encodes the evidence as indented JSON, after checking it.
func (e *Evidence) Marshal() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(e, "", "  ")
}

// Parse decodes and checks evidence read from outside (an agent wrote it,
// or the store returned it): at most MaxEvidenceSize bytes, one JSON
// object, known fields only.
func Parse(b []byte) (*Evidence, error) {
	if len(b) > MaxEvidenceSize {
		return nil, fmt.Errorf("drill evidence is %d bytes, more than the %d allowed", len(b), MaxEvidenceSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var e Evidence
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("drill evidence is not valid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("drill evidence has data after its JSON object")
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}
