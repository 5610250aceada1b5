package repo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// ErrForeign is wrapped by ForeignError.
var ErrForeign = errors.New("not an object of this repository")

// ForeignError is an object that is junk to this repository, not damage to
// it. Every object Coffer writes is named by the SHA-256 of its bytes and
// sealed with the repository's key; a foreign object has exactly the bytes
// that were stored under its name (so nothing changed them since), yet
// does not open with the key, is not in Coffer's format before
// authentication, or has a name no Coffer agent gives. It was written by
// someone without the key: planted with a stolen agent credential, or
// copied from another repository. It holds nothing of the user's, so
// readers skip it and check reports it as a warning. A damaged object
// (bytes that no longer match the name) is an error, never foreign.
type ForeignError struct {
	Name   string
	Reason string
	Err    error // what reading it failed with; may be nil
}

func (e *ForeignError) Error() string {
	return fmt.Sprintf("%s is not an object of this repository: %s, so nobody with the repository's key wrote it (junk planted in the store, or an object of another repository); it holds none of your data and is ignored", e.Name, e.Reason)
}

// Unwrap returns ErrForeign and the underlying error, if any.
func (e *ForeignError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrForeign}
	}
	return []error{ErrForeign, e.Err}
}

// IsForeign reports whether err is a ForeignError.
func IsForeign(err error) bool { return errors.Is(err, ErrForeign) }

// Reasons a ForeignError gives.
const (
	reasonKey = "its bytes match its name but do not open with this repository's key"
	// ReasonPack is the reason for a foreign pack.
	ReasonPack = "its bytes match its name but are not a pack sealed with this repository's key"
)

// isContentName reports whether name is prefix followed by a lower-case
// hex SHA-256, the only names Coffer gives content-named objects.
func isContentName(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || len(rest) != 64 {
		return false
	}
	return strings.Trim(rest, "0123456789abcdef") == ""
}

// RemovalHint says who can delete a foreign object in r's store: on a
// vault only the provider (agents can only add objects), elsewhere the
// user.
func (r *Repo) RemovalHint(name string) string {
	if isVault(r.st) {
		return fmt.Sprintf("agents cannot delete from a vault: ask your provider to remove %s from your repository in the vault", name)
	}
	return fmt.Sprintf("delete %s from %s when you have seen what it is", name, r.st.Location())
}

// isVault reports whether s is, below its decorators, a vault client.
func isVault(s store.Store) bool {
	for {
		if _, ok := s.(*vaultclient.Client); ok {
			return true
		}
		w, ok := s.(store.Wrapper)
		if !ok {
			return false
		}
		s = w.Unwrap()
	}
}

// errUnauthenticated marks a pack that failed before its header was
// authenticated (too short, no trailer): junk or damage, which
// ClassifyPackError tells apart.
var errUnauthenticated = errors.New("not shaped like a Coffer pack")

// ClassifyPackError takes an error of ReadPackHeader and, when the header
// failed to authenticate or the pack is not in Coffer's format, downloads
// the pack to tell junk from damage: bytes that match the pack's name are a
// ForeignError; bytes that do not are damage, and the error says so. Other
// errors (the store, a header that authenticated but is malformed) come
// back unchanged.
func (r *Repo) ClassifyPackError(ctx context.Context, id pack.ID, err error) error {
	if !errors.Is(err, crypto.ErrAuth) && !errors.Is(err, errUnauthenticated) {
		return err
	}
	name := PackName(id)
	var sum pack.ID
	gerr := r.st.Get(ctx, name, 0, -1, func(rd io.Reader) error {
		h := sha256.New()
		_, err := io.Copy(h, rd)
		h.Sum(sum[:0])
		return err
	})
	switch {
	case gerr != nil:
		return fmt.Errorf("%w (reading it whole to tell damage from junk: %v)", err, gerr)
	case sum == id:
		return &ForeignError{Name: name, Reason: ReasonPack, Err: err}
	}
	return fmt.Errorf("%w; its content does not match its name (SHA-256 is %s): the pack is damaged", err, sum)
}
