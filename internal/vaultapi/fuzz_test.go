package vaultapi

import (
	"strings"
	"testing"
)

// safeStoreName mirrors store.ValidName (which this package cannot import in
// tests: internal/store imports vaultapi).
func safeStoreName(name string) bool {
	if name == "" || len(name) > 256 {
		return false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg[0] == '.' {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}

func FuzzParseRepoName(f *testing.F) {
	for _, s := range []string{"config", "keys/" + hex64, "data/ab/" + hex64, "data/cd/" + hex64, "index/" + hex64,
		"snapshots/" + hex64, "../config", "data/ab/../" + hex64, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		k, err := ParseRepoName(name)
		if err != nil {
			if k != KindInvalid {
				t.Fatalf("kind %v with error", k)
			}
			return
		}
		// Every accepted name is a safe store name and lives under a fixed
		// prefix: the vault may join it to repos/<tid>/ without more checks.
		if !safeStoreName(name) {
			t.Fatalf("accepted %q, which is not a safe store name", name)
		}
		if strings.Contains(name, "..") || k.MaxSize() <= 0 {
			t.Fatalf("accepted %q", name)
		}
		if k.ContentNamed() && !ValidSHA256Hex(NameDigest(name)) {
			t.Fatalf("content-named %q has no digest", name)
		}
	})
}

func FuzzParseCredential(f *testing.F) {
	f.Add("cfa1_0123456789abcdef01234567_" + strings.Repeat("A", 43))
	f.Add("cft1_0123456789abcdef01234567_" + strings.Repeat("_", 43))
	f.Add("cfa1_")
	f.Fuzz(func(t *testing.T, s string) {
		for _, parse := range []func(string) (string, []byte, error){ParseCredential, ParseToken} {
			id, secret, err := parse(s)
			if err != nil {
				if id != "" || secret != nil || strings.Contains(err.Error(), s[min(len(s), 5):]) && len(s) > 10 {
					t.Fatalf("bad failure for %q: %v", s, err)
				}
				continue
			}
			if !ValidID(id) || len(secret) != 32 {
				t.Fatalf("accepted %q: id %q, %d bytes", s, id, len(secret))
			}
			// Canonical: re-encoding gives back the input.
			if got := s[:5] + id + "_" + secretEncoding.EncodeToString(secret); got != s {
				t.Fatalf("not canonical: %q -> %q", s, got)
			}
		}
	})
}
