package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cofferhq/coffer/internal/fsx"
	"github.com/cofferhq/coffer/internal/runrecord"
)

// HistoryFile is the file in the agent's state directory that keeps the
// last runs.
const HistoryFile = "agent-history.json"

// maxHistoryFile caps the history file read.
const maxHistoryFile = maxHistory * runrecord.MaxRecordSize / 16

// History is the last runs kept on this machine, oldest first.
type History struct {
	Dir  string // the state directory
	Keep int    // how many records to keep
}

// Load reads the kept records; a missing file is none. Every record is
// checked as runrecord.Parse checks one.
func (h History) Load() ([]Record, error) {
	p := filepath.Join(h.Dir, HistoryFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	recs, err := ParseHistory(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (move it aside to start a new history)", p, err)
	}
	return recs, nil
}

// ParseHistory reads a history file's bytes: a JSON array of records.
func ParseHistory(b []byte) ([]Record, error) {
	if len(b) > maxHistoryFile {
		return nil, fmt.Errorf("history of %d bytes is over the %d allowed", len(b), maxHistoryFile)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("history is not a JSON array of run records: %v", err)
	}
	if len(raw) > maxHistory {
		return nil, fmt.Errorf("history holds %d records, at most %d", len(raw), maxHistory)
	}
	recs := make([]Record, 0, len(raw))
	for i, m := range raw {
		r, err := runrecord.Parse(m)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// Add appends r and keeps the last Keep records, replacing the file
// atomically (a crash leaves the old one or the new one).
func (h History) Add(r Record) error {
	recs, err := h.Load()
	if err != nil {
		return err
	}
	recs = append(recs, r)
	if keep := max(h.Keep, 1); len(recs) > keep {
		recs = recs[len(recs)-keep:]
	}
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	return fsx.WriteFileAtomic(h.Dir, HistoryFile, b)
}

// LastScheduled is when the newest kept run was scheduled (zero: none).
func LastScheduled(recs []Record) time.Time {
	var t time.Time
	for _, r := range recs {
		if r.Scheduled.After(t) {
			t = r.Scheduled
		}
	}
	return t
}

// LockFile is the file in the state directory an agent holds while it
// runs, so that two agents (the service and a manual --once) never run
// backups side by side.
const LockFile = "agent.lock"

// ErrLocked is returned by Lock when another agent holds the lock.
var ErrLocked = errors.New("another coffer agent is running with this state directory")

// Lock takes the agent's lock in dir (an flock the kernel drops however
// the process ends) and returns its release.
func Lock(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s): stop it first, or wait for its run to end", ErrLocked, dir)
		}
		return nil, fmt.Errorf("locking %s: %w", filepath.Join(dir, LockFile), err)
	}
	return func() { f.Close() }, nil
}
