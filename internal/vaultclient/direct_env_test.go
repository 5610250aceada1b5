package vaultclient

import "testing"

func TestDirectFromEnv(t *testing.T) {
	for v, want := range map[string]bool{"": false, "on": false, "1": false, "TRUE": false, "off": true, "0": true, "false": true, "Off": true} {
		t.Setenv(EnvDirectDownloads, v)
		if got, err := DirectFromEnv(); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", v, got, err, want)
		}
	}
	t.Setenv(EnvDirectDownloads, "sometimes")
	if _, err := DirectFromEnv(); err == nil {
		t.Error("sometimes accepted")
	}
}
