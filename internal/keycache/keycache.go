package keycache

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cofferhq/coffer/crypto"
)

// Version is the version of the file format this code writes and reads.
const Version = 1

// Entry is one repository's file.
type Entry struct {
	Version    int    `json:"version"`
	Repository string `json:"repository"` // the repository ID
	Slot       string `json:"slot"`       // keys/<64 hex>: the slot last opened or made
	// Key is the master key (base64), absent when the cache is off.
	Key   []byte    `json:"master_key,omitempty"`
	Saved time.Time `json:"saved"`
}

// String keeps the key out of logs and panics.
func (e Entry) String() string {
	return fmt.Sprintf("keycache.Entry(repository %s, slot %s, key kept: %v)", e.Repository, e.Slot, len(e.Key) > 0)
}

// GoString is String for %#v.
func (e Entry) GoString() string { return e.String() }

// MasterKey returns the kept key, or nil when there is none.
func (e *Entry) MasterKey() (*crypto.MasterKey, error) {
	if len(e.Key) == 0 {
		return nil, nil
	}
	return crypto.MasterKeyFromBytes(e.Key)
}

// Path returns the file of a repository in dir. The ID comes from the
// repository's config, which anyone holding the store can write: it must
// be 32 lower-case hex digits.
func Path(dir, repoID string) (string, error) {
	if b, err := hex.DecodeString(repoID); err != nil || len(b) != 16 || hex.EncodeToString(b) != repoID {
		return "", fmt.Errorf("repository ID %q is not 32 lower-case hex digits", repoID)
	}
	return filepath.Join(dir, repoID+".json"), nil
}

// Load reads the file of repository repoID in dir. It returns an error
// wrapping os.ErrNotExist when there is none, and an error saying what is
// wrong with one that cannot be trusted: readable by others, not parsable,
// or for another repository.
func Load(dir, repoID string) (*Entry, error) {
	p, err := Path(dir, repoID)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %v, open to other users: not used", p, fi.Mode())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: not used", p)
	}
	switch {
	case e.Version != Version:
		return nil, fmt.Errorf("%s has version %d, this coffer reads %d: not used", p, e.Version, Version)
	case e.Repository != repoID:
		return nil, fmt.Errorf("%s is for repository %q, not %s: not used", p, e.Repository, repoID)
	case len(e.Key) != 0 && len(e.Key) != crypto.KeySize:
		return nil, fmt.Errorf("%s holds a key of %d bytes, not %d: not used", p, len(e.Key), crypto.KeySize)
	}
	return &e, nil
}

// Save writes e atomically (a temporary file, then a rename) with mode
// 0600, creating dir with mode 0700.
func Save(dir string, e Entry) error {
	p, err := Path(dir, e.Repository)
	if err != nil {
		return err
	}
	e.Version = Version
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("writing the key file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// Forget removes the file of repository repoID in dir. It reports whether
// there was one.
func Forget(dir, repoID string) (bool, error) {
	p, err := Path(dir, repoID)
	if err != nil {
		return false, err
	}
	err = os.Remove(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
