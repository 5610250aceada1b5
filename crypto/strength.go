package crypto

import (
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
	"golang.org/x/text/unicode/norm"
)

// Passphrase strength. Key slots sit in the object store, where whoever
// holds the bucket can guess passphrases offline at the speed of argon2id
// on their own hardware, so a new passphrase must resist that.
const (
	// MinPassphraseChars is the shortest passphrase accepted, in Unicode
	// characters after NFC normalisation.
	MinPassphraseChars = 12
	// MinPassphraseGuesses is the least number of guesses zxcvbn must
	// estimate (its score 4, "strong protection from an offline
	// slow-hash attack").
	MinPassphraseGuesses = 1e10
)

// WeakPassphraseError says why a new passphrase was refused. It never
// holds the passphrase.
type WeakPassphraseError struct {
	Reason string
}

func (e *WeakPassphraseError) Error() string { return "the new passphrase is too weak: " + e.Reason }

// CheckPassphraseStrength refuses a passphrase that is short or that the
// zxcvbn estimator expects to fall to fewer than MinPassphraseGuesses
// guesses. hints are words an attacker would try first (host name, tenant,
// repository URL).
func CheckPassphraseStrength(passphrase []byte, hints ...string) error {
	p := norm.NFC.Bytes(passphrase)
	if !utf8.Valid(p) {
		return &WeakPassphraseError{Reason: "it is not valid UTF-8 text, so its strength cannot be estimated"}
	}
	if n := utf8.RuneCount(p); n < MinPassphraseChars {
		return &WeakPassphraseError{Reason: fmt.Sprintf("it is %d characters long; use at least %d", n, MinPassphraseChars)}
	}
	r := zxcvbn.PasswordStrength(string(p), hints)
	if r.Guesses < MinPassphraseGuesses {
		return &WeakPassphraseError{Reason: fmt.Sprintf("the zxcvbn estimator expects it to fall to about 10^%d guesses (score %d of 4); "+
			"whoever holds the stored key slots can guess offline, so it needs at least 10^%d",
			int(math.Log10(max(r.Guesses, 1))), r.Score, int(math.Log10(MinPassphraseGuesses)))}
	}
	return nil
}
