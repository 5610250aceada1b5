package vaultapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const hex64 = "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"

func TestParseRepoName(t *testing.T) {
	cases := []struct {
		name string
		want Kind
	}{
		{"config", KindConfig},
		{"keys/" + hex64, KindKey},
		{"data/ab/" + hex64, KindPack},
		{"index/" + hex64, KindIndex},
		{"snapshots/" + hex64, KindSnapshot},
		{"drills/" + hex64, KindDrill},
		{"drills/" + hex64[:63], KindInvalid},
		{"drills/x.json", KindInvalid},
		{"runs/" + hex64, KindRun},
		{"runs/" + hex64[:63], KindInvalid},
		{"runs/" + strings.ToUpper(hex64), KindInvalid},
		{"data/cd/" + hex64, KindInvalid}, // shard mismatch
		{"data/AB/" + strings.ToUpper(hex64), KindInvalid},
		{"keys/" + hex64[:63], KindInvalid},
		{"keys/" + hex64 + "0", KindInvalid},
		{"keys/" + strings.ToUpper(hex64), KindInvalid},
		{"Config", KindInvalid},
		{"config/", KindInvalid},
		{"", KindInvalid},
		{"locks/x", KindInvalid},
		{"vault/tenants/x.json", KindInvalid},
		{"data/" + hex64, KindInvalid},
		{"data/ab" + hex64, KindInvalid},
		{"keys/../" + hex64[:61], KindInvalid},
		{"snapshots/" + hex64[:62] + "g0", KindInvalid},
	}
	for _, c := range cases {
		k, err := ParseRepoName(c.name)
		if k != c.want {
			t.Errorf("ParseRepoName(%q) = %v, want %v", c.name, k, c.want)
		}
		if (err != nil) != (c.want == KindInvalid) || (err != nil && !errors.Is(err, ErrBadName)) {
			t.Errorf("ParseRepoName(%q) err = %v", c.name, err)
		}
	}
}

func TestKindProperties(t *testing.T) {
	if KindConfig.ContentNamed() || KindInvalid.ContentNamed() {
		t.Error("config/invalid must not be content-named")
	}
	for _, k := range []Kind{KindKey, KindPack, KindIndex, KindSnapshot, KindDrill, KindRun} {
		if !k.ContentNamed() {
			t.Errorf("%v must be content-named", k)
		}
	}
	want := map[Kind]int64{KindConfig: 64 << 10, KindKey: 64 << 10, KindPack: 300 << 20, KindIndex: 64 << 20, KindSnapshot: 16 << 20, KindDrill: 64 << 10, KindRun: 64 << 10, KindInvalid: 0}
	for k, w := range want {
		if k.MaxSize() != w {
			t.Errorf("%v.MaxSize() = %d, want %d", k, k.MaxSize(), w)
		}
	}
	if NameDigest("data/ab/"+hex64) != hex64 || NameDigest("config") != "" || NameDigest("x") != "" {
		t.Error("NameDigest")
	}
}

func TestValidListPrefix(t *testing.T) {
	for _, p := range []string{"", "config", "keys/", "data/", "data/00/", "data/ff/", "index/", "snapshots/", "drills/", "runs/"} {
		if err := ValidListPrefix(p); err != nil {
			t.Errorf("ValidListPrefix(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"keys", "data", "data/0/", "data/FF/", "data/gg/", "data/ab/cd", "../x/", "repos/", "vault/", "/", "index", "data/ab", "drills", "runs"} {
		if ValidListPrefix(p) == nil {
			t.Errorf("ValidListPrefix(%q) accepted", p)
		}
	}
	if err := ValidListAfter("keys/", "keys/"+hex64); err != nil {
		t.Error(err)
	}
	if ValidListAfter("keys/", "index/"+hex64) == nil || ValidListAfter("", "../x") == nil {
		t.Error("ValidListAfter accepted a bad after")
	}
}

func TestCredentialRoundTrip(t *testing.T) {
	cred, id, sha, err := NewCredential()
	if err != nil {
		t.Fatal(err)
	}
	gid, secret, err := ParseCredential(cred.Reveal())
	if err != nil || gid != id || SecretSHA256(secret) != sha {
		t.Fatalf("ParseCredential: %v %q %q", err, gid, id)
	}
	if _, _, err := ParseToken(cred.Reveal()); err == nil {
		t.Error("a credential parsed as a token")
	}
	tok, tid, tsha, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	gid, secret, err = ParseToken(tok.Reveal())
	if err != nil || gid != tid || SecretSHA256(secret) != tsha || !strings.HasPrefix(tok.Reveal(), "cft1_") {
		t.Fatalf("ParseToken: %v", err)
	}
}

func TestParseCredentialRejects(t *testing.T) {
	good := "cfa1_0123456789abcdef01234567_" + strings.Repeat("A", 43)
	if _, _, err := ParseCredential(good); err != nil {
		t.Fatalf("good credential refused: %v", err)
	}
	bad := []string{
		"",
		"cfa1_0123456789abcdef01234567_" + strings.Repeat("A", 42),          // 42 chars
		"cfa1_0123456789abcdef01234567_" + strings.Repeat("A", 44),          // 44 chars
		"cfa2_0123456789abcdef01234567_" + strings.Repeat("A", 43),          // prefix
		"cfa1_0123456789ABCDEF01234567_" + strings.Repeat("A", 43),          // upper hex id
		"cfa1_0123456789abcdef01234567-" + strings.Repeat("A", 43),          // separator
		"cfa1_0123456789abcdef01234567_" + strings.Repeat("A", 42) + "=",    // padding char
		"cfa1_0123456789abcdef01234567_" + strings.Repeat("A", 42) + "+",    // std alphabet
		"cfa1_0123456789abcdef01234567_" + strings.Repeat("A", 42) + "B",    // non-zero trailing bits
		" cfa1_0123456789abcdef01234567_" + strings.Repeat("A", 42),         // leading space
		"cfa1_0123456789abcdef01234567_" + strings.Repeat("A", 42) + "\x00", // NUL
	}
	for _, s := range bad {
		_, _, err := ParseCredential(s)
		if !errors.Is(err, ErrMalformedCredential) {
			t.Errorf("ParseCredential(%q) = %v", s, err)
		}
		if err != nil && strings.Contains(err.Error(), "AAAA") {
			t.Errorf("error echoes the secret: %v", err)
		}
	}
}

func TestSecretRedacts(t *testing.T) {
	s := Secret("cfa1_topsecret")
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "cred", s)
	req := EnrollRequest{Token: Secret("cft1_topsecret"), CredentialID: "id"}
	j, _ := json.Marshal(req)
	out := fmt.Sprintf("%v %s %q %x %#v %+v %d", s, s, s, s, s, req, s) + buf.String() + string(j)
	if strings.Contains(out, "topsecret") {
		t.Fatalf("secret leaked: %s", out)
	}
	if !strings.Contains(string(j), Redacted) {
		t.Fatalf("json: %s", j)
	}
	enc, err := req.Encode()
	if err != nil || !strings.Contains(string(enc), "cft1_topsecret") {
		t.Fatalf("Encode: %s %v", enc, err)
	}
	var back EnrollRequest
	if err := json.Unmarshal(enc, &back); err != nil || back.Token.Reveal() != "cft1_topsecret" || back.CredentialID != "id" {
		t.Fatalf("decode: %+v %v", back, err)
	}
}

func TestTenantNamesAndIDs(t *testing.T) {
	for _, n := range []string{"a", "acme", "acme-2", "0", strings.Repeat("a", 63)} {
		if !ValidTenantName(n) {
			t.Errorf("%q refused", n)
		}
	}
	for _, n := range []string{"", "-a", "a-", "Acme", "a_b", "a.b", strings.Repeat("a", 64), "ä"} {
		if ValidTenantName(n) {
			t.Errorf("%q accepted", n)
		}
	}
	id, err := NewID()
	if err != nil || !ValidTenantID(id) {
		t.Fatalf("NewID %q %v", id, err)
	}
	if ValidTenantID("0123456789abcdef0123456") || ValidTenantID("0123456789abcdef0123456G") {
		t.Error("bad id accepted")
	}
}

func TestErrorBodyJSON(t *testing.T) {
	b, _ := json.Marshal(ErrorBody{ErrorDetail{Code: CodeRateLimited, Message: "m", RequestID: "r", RetryAfterSeconds: 2}})
	want := `{"error":{"code":"rate_limited","message":"m","request_id":"r","retry_after_seconds":2}}`
	if string(b) != want {
		t.Fatalf("got %s", b)
	}
	e := Errorf(CodeQuotaExceeded, "tenant %s: quota", "acme")
	if e.Status != 507 || e.Error() != "tenant acme: quota" || StatusOf("nope") != 500 || StatusOf(CodeTokenUsed) != 409 {
		t.Fatalf("%+v", e)
	}
}
