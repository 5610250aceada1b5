package crypto

import (
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"
)

// KDFParams are the argon2id parameters of a passphrase slot. They are stored
// in the slot, so they can be raised for new slots without breaking old ones.
type KDFParams struct {
	Name      string `json:"name"`       // always "argon2id"
	Time      uint32 `json:"time"`       // passes (RFC 9106 t)
	MemoryKiB uint32 `json:"memory_kib"` // memory in KiB (RFC 9106 m)
	Threads   uint8  `json:"threads"`    // lanes (RFC 9106 p)
	Salt      []byte `json:"salt"`       // 32 random bytes (base64 in JSON)
}

// DefaultKDF returns the argon2id parameters for new passphrase slots: 3
// passes over 64 MiB with 4 lanes, the RFC 9106 second recommendation.
//
// The environment variable COFFER_INSECURE_TEST_KDF=1 selects tiny
// parameters so test suites can create many repositories quickly. It prints a
// warning, and the weak parameters are recorded in the slot for all to see.
func DefaultKDF() KDFParams {
	if InsecureTestKDF() {
		fmt.Fprintln(os.Stderr, "warning: COFFER_INSECURE_TEST_KDF=1: this key slot uses test-only KDF parameters and is easy to brute-force")
		return KDFParams{Name: "argon2id", Time: 1, MemoryKiB: 64, Threads: 1}
	}
	return KDFParams{Name: "argon2id", Time: 3, MemoryKiB: 64 * 1024, Threads: 4}
}

// InsecureTestKDF reports whether COFFER_INSECURE_TEST_KDF=1 selects the
// test-only KDF parameters for new slots.
func InsecureTestKDF() bool { return os.Getenv("COFFER_INSECURE_TEST_KDF") == "1" }

// validate checks the parameters against the format, which follows RFC
// 9106: t >= 1, 1 <= p (a uint8 here, so at most 255), m >= 8*p KiB, and
// a 32-byte salt. It sets no upper bound on cost: that is KDFLimit's job,
// because a reader skips a slot above its limit instead of calling it
// damaged.
func (p KDFParams) validate() error {
	switch {
	case p.Name != "argon2id":
		return fmt.Errorf("unknown KDF %q", p.Name)
	case p.Time < 1:
		return fmt.Errorf("argon2id time %d: must be at least 1", p.Time)
	case p.Threads < 1:
		return fmt.Errorf("argon2id threads %d: must be at least 1", p.Threads)
	case uint64(p.MemoryKiB) < 8*uint64(p.Threads):
		return fmt.Errorf("argon2id memory %d KiB: must be at least 8 KiB per thread (%d threads, RFC 9106)", p.MemoryKiB, p.Threads)
	case len(p.Salt) != 32:
		return fmt.Errorf("salt is %d bytes, want 32", len(p.Salt))
	}
	return nil
}

// Work is the slot's cost in KiB-passes: time × memory_kib.
func (p KDFParams) Work() uint64 { return uint64(p.Time) * uint64(p.MemoryKiB) }

// KDFLimit bounds what an agent spends on one passphrase slot. Anyone who can
// add a key slot (any agent credential of the tenant, through the vault) could
// otherwise make every command of every agent pay for a slot asking for
// gigabytes and minutes. A slot over the limit is skipped, not run.
type KDFLimit struct {
	MaxMemoryKiB uint32 // largest memory_kib run
	MaxWork      uint64 // largest time × memory_kib run
}

// DefaultKDFLimit is the limit agents apply (FORMAT.md, "Key slots"): at
// most 256 MiB, and at most time × memory of 1 GiB-pass (the default
// parameters are 3 passes over 64 MiB, 192 MiB-passes).
var DefaultKDFLimit = KDFLimit{MaxMemoryKiB: 256 << 10, MaxWork: 1 << 20}

// Check returns an error saying how p exceeds the limit, or nil.
func (l KDFLimit) Check(p KDFParams) error {
	switch {
	case p.MemoryKiB > l.MaxMemoryKiB:
		return fmt.Errorf("argon2id memory %d KiB is over this agent's limit of %d KiB", p.MemoryKiB, l.MaxMemoryKiB)
	case p.Work() > l.MaxWork:
		return fmt.Errorf("argon2id time × memory %d × %d KiB is over this agent's limit of %d KiB-passes", p.Time, p.MemoryKiB, l.MaxWork)
	}
	return nil
}

// kdfRuns counts argon2id runs in this process.
var kdfRuns atomic.Uint64

// KDFRuns returns how many times this process has run argon2id: tests use
// it to show that a command did not pay for the KDF.
func KDFRuns() uint64 { return kdfRuns.Load() }

// deriveSlotKey runs argon2id on the passphrase bytes the slot's form asks
// for.
func deriveSlotKey(passphrase []byte, p *KDFParams, form string) []byte {
	kdfRuns.Add(1)
	return argon2.IDKey(passphraseBytes(passphrase, form), p.Salt, p.Time, p.MemoryKiB, p.Threads, KeySize)
}

// Passphrase forms: how a slot turns the passphrase into argon2id's input.
const (
	// FormRaw (the field absent): the bytes as given. Slots written
	// before passphrases were normalised have this form.
	FormRaw = ""
	// FormNFC: the Unicode NFC normalisation of the bytes (invalid UTF-8
	// sequences are left as they are). Every new slot has this form, so a
	// passphrase typed on systems that compose accents differently opens
	// it.
	FormNFC = "nfc"
)

func passphraseBytes(passphrase []byte, form string) []byte {
	if form == FormNFC {
		return norm.NFC.Bytes(passphrase)
	}
	return passphrase
}
