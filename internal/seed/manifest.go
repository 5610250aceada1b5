package seed

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// Format is the manifest's format string.
const Format = "coffer-seed/1"

// SignDomain separates the manifest's signature from any other use of the
// tenant's signing key.
const SignDomain = "coffer seed manifest v1"

// Limits on a manifest read from a disk: it is outside input.
const (
	// MaxManifestSize bounds SEED.json (a few million files).
	MaxManifestSize = 512 << 20
	// MaxFiles bounds the files a seed lists.
	MaxFiles = 4 << 20
	// MaxParityShare is the largest share of files parity may cover.
	MaxParityShare = 0.5
	// DefaultParityShare is the share of files an import survives losing.
	DefaultParityShare = 0.05
)

// File is one file of the seed: a repository object (its object name) or a
// parity file ("parity/<5+ digits>").
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Parity is the manifest's parity section.
type Parity struct {
	// Share is the share of all files (parity included) whose loss or
	// damage, in any combination, the parity repairs.
	Share float64 `json:"share"`
	// Layout places the objects in Reed-Solomon shards (internal/parity).
	Layout json.RawMessage `json:"layout"`
	// Files are the parity files, shard by shard.
	Files []File `json:"files"`
}

// Manifest describes a seed: SEED.json. Objects lists every repository
// object of the seed sorted by name; their bytes are under objects/ with
// the same names.
type Manifest struct {
	Format string `json:"format"`
	// ID names the seed: 64 hex digits drawn at random when the export
	// began, kept across its resumptions.
	ID string `json:"id"`
	// Tenant is the vault's tenant ID; TenantName its name then.
	Tenant     string `json:"tenant"`
	TenantName string `json:"tenant_name,omitempty"`
	// Repository is the repository's ID (its config).
	Repository string    `json:"repository"`
	Created    time.Time `json:"created"`
	Host       string    `json:"host,omitempty"`
	// Signer is the tenant's public signing key (crypto.PublicKeyText).
	Signer string `json:"signer"`
	// Snapshots are the IDs of the snapshots the seed holds.
	Snapshots []string `json:"snapshots"`
	Objects   []File   `json:"objects"`
	Parity    Parity   `json:"parity"`
}

// ErrBadManifest is wrapped by every error Parse returns.
var ErrBadManifest = errors.New("bad seed manifest")

// Parse reads a manifest strictly: known fields only, every name in the
// object grammar, sorted without duplicates, sizes within the vault's
// limits, content-named objects whose name is their SHA-256. It does not
// check the parity layout against the objects (Seed.Layout does) nor the
// signature (Verify).
func Parse(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, badf("over %d bytes", MaxManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	m := new(Manifest)
	if err := dec.Decode(m); err != nil {
		return nil, badf("not the JSON of a seed manifest: %v", err)
	}
	if dec.More() {
		return nil, badf("trailing data after the manifest")
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadManifest, fmt.Sprintf(format, args...))
}

func (m *Manifest) validate() error {
	switch {
	case m.Format != Format:
		return badf("format %q, want %q (a newer coffer wrote it?)", clip(m.Format), Format)
	case !isHex64(m.ID):
		return badf("seed id %q is not 64 lower-case hex digits", clip(m.ID))
	case !vaultapi.ValidTenantID(m.Tenant):
		return badf("tenant id %q is malformed", clip(m.Tenant))
	case len(m.TenantName) > 255 || len(m.Host) > 255:
		return badf("tenant or host name over 255 bytes")
	case !validRepositoryID(m.Repository):
		return badf("repository id %q is not 32 lower-case hex digits", clip(m.Repository))
	case m.Created.IsZero():
		return badf("no creation time")
	case len(m.Objects) == 0:
		return badf("it lists no objects")
	case len(m.Objects)+len(m.Parity.Files) > MaxFiles:
		return badf("over %d files", MaxFiles)
	case !(m.Parity.Share > 0 && m.Parity.Share <= MaxParityShare):
		return badf("parity share %v outside (0, %v]", m.Parity.Share, MaxParityShare)
	}
	if _, err := crypto.ParsePublicKey(m.Signer); err != nil {
		return badf("signer: %v", err)
	}
	if err := m.validateObjects(); err != nil {
		return err
	}
	return m.validateParityFiles()
}

func (m *Manifest) validateObjects() error {
	snaps := map[string]bool{}
	for i, f := range m.Objects {
		k, err := vaultapi.ParseRepoName(f.Name)
		if err != nil {
			return badf("object %d: %v", i, err)
		}
		switch k {
		case vaultapi.KindPack, vaultapi.KindIndex, vaultapi.KindSnapshot, vaultapi.KindReceipt:
		default:
			return badf("object %s: a seed holds packs, index files, snapshots and receipts, not a %s", f.Name, k)
		}
		if i > 0 && m.Objects[i-1].Name >= f.Name {
			return badf("objects are not sorted by name without duplicates at %s", f.Name)
		}
		if f.Size < 0 || f.Size > k.MaxSize() {
			return badf("object %s: size %d outside 0..%d", f.Name, f.Size, k.MaxSize())
		}
		if !isHex64(f.SHA256) {
			return badf("object %s: sha256 %q is not 64 lower-case hex digits", f.Name, clip(f.SHA256))
		}
		if k.ContentNamed() && vaultapi.NameDigest(f.Name) != f.SHA256 {
			return badf("object %s: its sha256 %s is not its name", f.Name, f.SHA256)
		}
		if k == vaultapi.KindSnapshot {
			snaps[vaultapi.NameDigest(f.Name)] = true
		}
	}
	if len(m.Snapshots) != len(snaps) {
		return badf("it names %d snapshots but holds %d", len(m.Snapshots), len(snaps))
	}
	for _, id := range m.Snapshots {
		if !snaps[id] {
			return badf("snapshot %q is named but not held", clip(id))
		}
	}
	return nil
}

func (m *Manifest) validateParityFiles() error {
	if len(m.Parity.Files) == 0 {
		return badf("no parity files")
	}
	for j, f := range m.Parity.Files {
		if f.Name != ParityName(j) {
			return badf("parity file %d is named %q, want %q", j, clip(f.Name), ParityName(j))
		}
		if f.Size < 0 || f.Size != m.Parity.Files[0].Size {
			return badf("parity file %s: size %d, but parity files are all %d bytes", f.Name, f.Size, m.Parity.Files[0].Size)
		}
		if !isHex64(f.SHA256) {
			return badf("parity file %s: sha256 %q is not 64 lower-case hex digits", f.Name, clip(f.SHA256))
		}
	}
	return nil
}

// ParityName is the name of parity file j.
func ParityName(j int) string { return fmt.Sprintf("parity/%05d", j) }

// Files returns the objects then the parity files: the numbering parity
// layouts and damage reports use.
func (m *Manifest) Files() []File {
	return slices.Concat(m.Objects, m.Parity.Files)
}

// Bytes is the size of the seed's objects (parity not counted).
func (m *Manifest) Bytes() int64 {
	var n int64
	for _, f := range m.Objects {
		n += f.Size
	}
	return n
}

// Packs returns the IDs of the packs the seed holds.
func (m *Manifest) Packs() []string {
	var out []string
	for _, f := range m.Objects {
		if strings.HasPrefix(f.Name, "data/") {
			out = append(out, vaultapi.NameDigest(f.Name))
		}
	}
	return out
}

// Marshal encodes the manifest as SEED.json holds it.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Sign signs manifest bytes with the tenant's signing key: the contents of
// SEED.sig.
func Sign(k *crypto.SigningKey, manifest []byte) []byte {
	return []byte(hex.EncodeToString(k.Sign(SignDomain, manifest)) + "\n")
}

// Verify checks SEED.sig's contents over manifest bytes against the public
// signing key the vault holds for the tenant.
func Verify(public string, manifest, sigFile []byte) error {
	sig, err := hex.DecodeString(strings.TrimSpace(string(sigFile)))
	if err != nil {
		return fmt.Errorf("the seed's signature file is not hex: %w", crypto.ErrBadSignature)
	}
	return crypto.VerifySignature(public, SignDomain, manifest, sig)
}

// validRepositoryID accepts a repository's config ID: 32 lower-case hex
// digits as repo.Init draws them (64 are accepted too: the first test
// manifests used them).
func validRepositoryID(s string) bool {
	return len(s) == 32 && isHex64(s+s) || isHex64(s)
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// clip shortens outside text quoted in an error.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
