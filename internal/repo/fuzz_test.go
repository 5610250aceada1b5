package repo

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func configObject(t testing.TB, cfg Config, mac []byte) []byte {
	t.Helper()
	body, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(configFile{Config: body, MAC: hex.EncodeToString(mac)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// configsEqual compares configs, the creation time as an instant.
func configsEqual(a, b Config) bool {
	if !a.Created.Equal(b.Created) {
		return false
	}
	a.Created, b.Created = time.Time{}, time.Time{}
	return a == b
}

// FuzzParseConfig: ParseConfig never panics; a config it accepts is valid,
// returns a 32-byte MAC and the body it parsed, and survives re-encoding.
func FuzzParseConfig(f *testing.F) {
	cfg := DefaultConfig()
	cfg.ID = strings.Repeat("0123456789abcdef", 2)
	cfg.Created = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	f.Add(configObject(f, cfg, bytes.Repeat([]byte{0xab}, 32)))
	bad := cfg
	bad.Version = 2
	f.Add(configObject(f, bad, bytes.Repeat([]byte{1}, 32)))
	f.Add(configObject(f, cfg, bytes.Repeat([]byte{1}, 31)))
	f.Add([]byte(`{"config":null,"mac":""}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, body, mac, err := ParseConfig(raw)
		if err != nil {
			if body != nil || mac != nil {
				t.Fatal("ParseConfig returned a body or MAC with an error")
			}
			return
		}
		if err := got.validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
		if len(mac) != 32 {
			t.Fatalf("accepted a %d-byte MAC", len(mac))
		}
		var fromBody Config
		if err := json.Unmarshal(body, &fromBody); err != nil || !configsEqual(fromBody, got) {
			t.Fatalf("the returned body is not what was parsed: %v", err)
		}
		again, body2, mac2, err := ParseConfig(configObject(t, got, mac))
		if err != nil {
			t.Fatalf("re-encoded config: %v", err)
		}
		if !configsEqual(again, got) || !bytes.Equal(mac2, mac) {
			t.Fatalf("config changed across re-encoding: %+v vs %+v", again, got)
		}
		if len(body2) == 0 {
			t.Fatal("empty body")
		}
	})
}
