package crypto

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckPassphraseStrength(t *testing.T) {
	weak := map[string]string{
		"pw":                   "2 characters long; use at least 12",
		"correct horse":        "10^8 guesses",
		"passwordpassword":     "score",
		"web01coffer2026":      "score", // the hints count as known words
		"caf\u00e9caf\u00e9ab": "10 characters",
		"\xff\xfe valid? no ":  "not valid UTF-8",
	}
	for pw, why := range weak {
		err := CheckPassphraseStrength([]byte(pw), "web01", "coffer")
		var we *WeakPassphraseError
		if !errors.As(err, &we) || !strings.Contains(err.Error(), why) {
			t.Errorf("%q: %v; want a refusal saying %q", pw, err, why)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("the refusal repeats the passphrase: %v", err)
		}
	}
	for _, pw := range []string{"correct horse battery staple", "tulip-orbit-canyon-mosaic", "xK9#mQ2$vL7!"} {
		if err := CheckPassphraseStrength([]byte(pw), "web01"); err != nil {
			t.Errorf("%q refused: %v", pw, err)
		}
	}
}
