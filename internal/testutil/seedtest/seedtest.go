package seedtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/seed"
)

// Key returns a fresh signing key, derived from a new master key as a
// repository's is.
func Key(t testing.TB) *crypto.SigningKey {
	t.Helper()
	mk, err := crypto.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := crypto.Derive(mk)
	if err != nil {
		t.Fatal(err)
	}
	return k.SigningKey()
}

// Signed is a manifest with its SEED.json bytes and SEED.sig contents.
type Signed struct {
	Manifest *seed.Manifest
	Body     []byte
	Sig      []byte
}

// SigHex is the signature as the Coffer-Seed-Signature header carries it.
func (s *Signed) SigHex() string { return strings.TrimSpace(string(s.Sig)) }

// New returns a manifest of tenant tenantID holding the packs with the
// given IDs (64 hex digits each), a random seed ID, signed with key.
func New(t testing.TB, key *crypto.SigningKey, tenantID string, packs ...string) *Signed {
	t.Helper()
	var idb [32]byte
	_, _ = rand.Read(idb[:])
	objs := make([]seed.File, 0, len(packs))
	for _, p := range packs {
		objs = append(objs, seed.File{Name: "data/" + p[:2] + "/" + p, Size: 4096, SHA256: p})
	}
	slices.SortFunc(objs, func(a, b seed.File) int { return strings.Compare(a.Name, b.Name) })
	m := &seed.Manifest{Format: seed.Format, ID: hex.EncodeToString(idb[:]), Tenant: tenantID, TenantName: "acme",
		Repository: strings.Repeat("cd", 32), Created: time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC), Host: "agent-1",
		Signer: key.Public(), Snapshots: []string{}, Objects: objs,
		Parity: seed.Parity{Share: seed.DefaultParityShare, Layout: json.RawMessage(`{}`),
			Files: []seed.File{{Name: seed.ParityName(0), Size: 4096, SHA256: strings.Repeat("0", 64)}}}}
	return Sign(t, key, m)
}

// Sign marshals m and signs it with key.
func Sign(t testing.TB, key *crypto.SigningKey, m *seed.Manifest) *Signed {
	t.Helper()
	body, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seed.Parse(body); err != nil {
		t.Fatalf("seedtest: the test manifest does not parse: %v", err)
	}
	return &Signed{Manifest: m, Body: body, Sig: seed.Sign(key, body)}
}
