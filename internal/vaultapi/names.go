package vaultapi

import (
	"errors"
	"fmt"
	"strings"
)

// Kind is the kind of an object in a tenant's repository.
type Kind uint8

// Object kinds. KindInvalid is the zero value and names nothing.
const (
	KindInvalid Kind = iota
	KindConfig
	KindKey
	KindPack
	KindIndex
	KindSnapshot
	// KindDrill is the evidence of a restore drill the agent ran (coffer
	// drill): plain JSON, no secrets, so the vault reads it without keys
	// (cofferd drill --report). Named by its SHA-256 like the others.
	KindDrill
	// KindReceipt is a snapshot's receipt (Receipt): plain JSON the vault
	// reads without keys, written before the snapshot it describes.
	KindReceipt
	// KindRun is the record of one run of the scheduled agent (coffer
	// agent): plain JSON, no secrets, for the vault to read without keys.
	KindRun
)

// Size limits per kind.
const (
	MaxConfigSize   = 64 << 10
	MaxKeySize      = 64 << 10
	MaxIndexSize    = 64 << 20
	MaxSnapshotSize = 16 << 20
	MaxDrillSize    = 64 << 10
	MaxRunSize      = 64 << 10
	// DefaultMaxPackSize is the default of cofferd's --max-object-size:
	// the largest pack (256 MiB) plus one chunk and the header, rounded up.
	DefaultMaxPackSize = 300 << 20
)

// String returns the kind's lower-case name ("config", "key", "pack",
// "index", "snapshot", "drill", "receipt", "run"; "invalid" for anything else).
func (k Kind) String() string {
	switch k {
	case KindConfig:
		return "config"
	case KindKey:
		return "key"
	case KindPack:
		return "pack"
	case KindIndex:
		return "index"
	case KindSnapshot:
		return "snapshot"
	case KindDrill:
		return "drill"
	case KindReceipt:
		return "receipt"
	case KindRun:
		return "run"
	}
	return "invalid"
}

// ContentNamed reports whether objects of this kind are named by the
// SHA-256 of their bytes, so the vault checks the digest while streaming.
// Only config is not.
func (k Kind) ContentNamed() bool {
	return k == KindKey || k == KindPack || k == KindIndex || k == KindSnapshot || k == KindDrill || k == KindReceipt || k == KindRun
}

// MaxSize returns the largest object of this kind the vault accepts, with
// the default pack limit (cofferd's --max-object-size overrides it for
// packs). It is 0 for KindInvalid.
func (k Kind) MaxSize() int64 {
	switch k {
	case KindConfig:
		return MaxConfigSize
	case KindKey:
		return MaxKeySize
	case KindPack:
		return DefaultMaxPackSize
	case KindIndex:
		return MaxIndexSize
	case KindSnapshot:
		return MaxSnapshotSize
	case KindDrill:
		return MaxDrillSize
	case KindReceipt:
		return MaxReceiptSize
	case KindRun:
		return MaxRunSize
	}
	return 0
}

// ErrBadName is returned (wrapped) by ParseRepoName for a name outside the
// grammar.
var ErrBadName = errors.New("not a repository object name")

// ParseRepoName checks name against the object grammar of a repository:
//
//	config
//	keys/<64 hex>
//	data/<hh>/<64 hex>   hh = the first two hex digits of the name
//	index/<64 hex>
//	snapshots/<64 hex>
//	drills/<64 hex>      drill evidence (plain JSON)
//	receipts/<64 hex>    a snapshot's receipt (plain JSON)
//	runs/<64 hex>        agent run records (plain JSON)
//
// Hex is lower case. Anything else is an error wrapping ErrBadName.
func ParseRepoName(name string) (Kind, error) {
	switch {
	case name == "config":
		return KindConfig, nil
	case strings.HasPrefix(name, "keys/") && isHex64(name[len("keys/"):]):
		return KindKey, nil
	case strings.HasPrefix(name, "index/") && isHex64(name[len("index/"):]):
		return KindIndex, nil
	case strings.HasPrefix(name, "snapshots/") && isHex64(name[len("snapshots/"):]):
		return KindSnapshot, nil
	case strings.HasPrefix(name, "drills/") && isHex64(name[len("drills/"):]):
		return KindDrill, nil
	case strings.HasPrefix(name, "receipts/") && isHex64(name[len("receipts/"):]):
		return KindReceipt, nil
	case strings.HasPrefix(name, "runs/") && isHex64(name[len("runs/"):]):
		return KindRun, nil
	case len(name) == len("data/hh/")+64 && strings.HasPrefix(name, "data/") && name[7] == '/' &&
		isHex64(name[8:]) && name[5:7] == name[8:10]:
		return KindPack, nil
	}
	return KindInvalid, fmt.Errorf("%w: %q (want config, keys/<sha256>, data/<hh>/<sha256>, index/<sha256>, snapshots/<sha256>, drills/<sha256>, receipts/<sha256> or runs/<sha256>)",
		ErrBadName, clip(name))
}

// NameDigest returns the hex SHA-256 that a content-named object's name
// ends with ("" for config or an invalid name).
func NameDigest(name string) string {
	k, err := ParseRepoName(name)
	if err != nil || !k.ContentNamed() {
		return ""
	}
	return name[len(name)-64:]
}

// ValidListPrefix accepts the prefixes an agent may list: "", "config",
// "keys/", "data/", "data/<hh>/", "index/", "snapshots/", "drills/", "receipts/" and "runs/".
func ValidListPrefix(p string) error {
	switch p {
	case "", "config", "keys/", "data/", "index/", "snapshots/", "drills/", "receipts/", "runs/":
		return nil
	}
	if len(p) == len("data/hh/") && strings.HasPrefix(p, "data/") && p[7] == '/' && isLowerHex(p[5:7]) {
		return nil
	}
	return fmt.Errorf("list prefix %q not allowed (want \"\", config, keys/, data/, data/<hh>/, index/, snapshots/, drills/, receipts/ or runs/)", clip(p))
}

// ValidListAfter checks the after= parameter of a list request: empty, or
// a valid object name that starts with prefix.
func ValidListAfter(prefix, after string) error {
	if after == "" {
		return nil
	}
	if _, err := ParseRepoName(after); err != nil {
		return fmt.Errorf("list after: %w", err)
	}
	if !strings.HasPrefix(after, prefix) {
		return fmt.Errorf("list after %q does not start with the prefix %q", clip(after), prefix)
	}
	return nil
}

func isHex64(s string) bool { return len(s) == 64 && isLowerHex(s) }

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// clip shortens outside input before it goes into an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
