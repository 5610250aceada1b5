package seed

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cofferhq/coffer/internal/fsx"
)

// The export's own state, under root/state/ (never listed by the
// manifest): the seed's ID, drawn once, and the mark that the backup into
// the seed finished, so a rerun goes straight on to Finish.
const (
	idFile         = "seed-id"
	backedUpFile   = "backed-up"
	maxStateFileSz = 4 << 10
)

// StatePath is the export's state directory in the seed rooted at root:
// the backup's run marks live there too, so a killed export resumes.
func StatePath(root string) string { return filepath.Join(root, StateDir) }

// ExportID returns the ID of the seed being exported into root: the one
// kept in its state when an earlier run drew it, else a new random one,
// kept before it is returned.
func ExportID(root string) (string, error) {
	b, err := readLimited(filepath.Join(StatePath(root), idFile), maxStateFileSz)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if !isHex64(id) {
			return "", fmt.Errorf("%s is not a seed ID (64 hex digits): remove %s to start the export afresh", filepath.Join(StatePath(root), idFile), root)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading the seed's ID: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw[:])
	if err := fsx.WriteFileAtomic(StatePath(root), idFile, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("keeping the seed's ID: %w", err)
	}
	return id, nil
}

// MarkBackedUp records that the backup into the seed at root finished,
// with the snapshots it wrote.
func MarkBackedUp(root string, snapshots []string) error {
	return fsx.WriteFileAtomic(StatePath(root), backedUpFile, []byte(strings.Join(snapshots, "\n")+"\n"))
}

// BackedUp reports whether the backup into the seed at root finished, and
// the snapshots it wrote.
func BackedUp(root string) ([]string, bool, error) {
	b, err := readLimited(filepath.Join(StatePath(root), backedUpFile), 1<<20)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var ids []string
	for _, l := range strings.Fields(string(b)) {
		if !isHex64(l) {
			return nil, false, fmt.Errorf("%s names %q, not a snapshot ID", filepath.Join(StatePath(root), backedUpFile), clip(l))
		}
		ids = append(ids, l)
	}
	return ids, true, nil
}
