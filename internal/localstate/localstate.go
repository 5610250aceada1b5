package localstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cofferhq/coffer/internal/repo"
)

// newestFile holds the memory: a JSON object from snapshot name to Entry.
const newestFile = "newest-snapshots.json"

// Entry is the newest snapshot this machine wrote under one name.
type Entry struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
}

// Dir returns the state directory of the repository with ID repoID:
// $XDG_STATE_HOME/coffer/<repoID>, with XDG_STATE_HOME defaulting to
// ~/.local/state. It returns "" when neither is known.
func Dir(repoID string) string {
	base := os.Getenv("XDG_STATE_HOME")
	if !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			return ""
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "coffer", repoID)
}

// Record remembers that this machine wrote snapshot id under name at t,
// unless it remembers a newer one for that name. Concurrent backups on the
// machine are serialised by an flock on the directory.
func Record(dir, name, id string, t time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("state directory %s: locking: %w", dir, err)
	}
	m, err := Load(dir)
	if err != nil {
		m = map[string]Entry{} // a damaged memory is replaced
	}
	if old, ok := m[name]; ok && old.Time.After(t) {
		return nil
	}
	m[name] = Entry{ID: id, Time: t.UTC()}
	return writeAtomic(dir, m)
}

// Load reads what dir remembers; nothing remembered is an empty map.
func Load(dir string) (map[string]Entry, error) {
	b, err := os.ReadFile(filepath.Join(dir, newestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Entry{}, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]Entry{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s is damaged: %v", filepath.Join(dir, newestFile), err)
	}
	return m, nil
}

func writeAtomic(dir string, m map[string]Entry) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".new-")
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, newestFile))
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("state directory: %w", err)
	}
	return nil
}

// Rollback is a name whose newest snapshot this machine wrote is missing
// from the repository, which shows only older ones (or none).
type Rollback struct {
	Name     string
	Expected Entry
	Newest   *repo.SnapshotInfo // the newest the repository shows; nil for none
}

// Check compares the snapshots a repository shows with what dir
// remembers, for one name ("" for every remembered name), and returns the
// rollbacks, sorted by name. A remembered snapshot that is present, or a
// snapshot of the name at least as new (from another machine), is fine.
func Check(dir string, snaps []*repo.SnapshotInfo, name string) ([]Rollback, error) {
	m, err := Load(dir)
	if err != nil {
		return nil, err
	}
	var out []Rollback
	for n, e := range m {
		if name != "" && n != name {
			continue
		}
		if rb, bad := checkName(n, e, snaps); bad {
			out = append(out, rb)
		}
	}
	slices.SortFunc(out, func(a, b Rollback) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func checkName(name string, e Entry, snaps []*repo.SnapshotInfo) (Rollback, bool) {
	rb := Rollback{Name: name, Expected: e}
	for _, s := range snaps {
		if s.ID == e.ID {
			return rb, false
		}
		if s.Name != name {
			continue
		}
		if !s.Time.Before(e.Time) {
			return rb, false
		}
		if rb.Newest == nil || s.Time.After(rb.Newest.Time) {
			rb.Newest = s
		}
	}
	return rb, true
}

// String is the warning for a rollback, naming the expected snapshot.
func (rb Rollback) String() string {
	shows := "no snapshot of that name"
	if rb.Newest != nil {
		shows = fmt.Sprintf("only older ones (newest %s of %s)", short(rb.Newest.ID), rb.Newest.Time.Local().Format(time.DateTime))
	}
	return fmt.Sprintf("this machine wrote snapshot %s of %q at %s, but the repository shows %s: the store may be hiding newer snapshots (rolled back), or they were deleted; ask your provider before relying on an older snapshot",
		short(rb.Expected.ID), rb.Name, rb.Expected.Time.Local().Format(time.DateTime), shows)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
