package xenapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseEndpoint(t *testing.T) {
	cases := []struct {
		url        string
		plain      bool
		base, host string
		errHas     string
	}{
		{url: "https://xen1.example.com", base: "https://xen1.example.com", host: "xen1.example.com"},
		{url: "https://10.0.0.5:8443/", base: "https://10.0.0.5:8443", host: "10.0.0.5"},
		{url: "https://[fe80::1]:443", base: "https://[fe80::1]:443", host: "fe80::1"},
		{url: "https://[fe80::1]", base: "https://[fe80::1]", host: "fe80::1"},
		{url: "http://127.0.0.1:8080", plain: true, base: "http://127.0.0.1:8080", host: "127.0.0.1"},
		{url: "http://localhost:8080", plain: true, base: "http://localhost:8080", host: "localhost"},
		{url: "http://127.0.0.1:8080", errHas: "plain http"},
		{url: "http://10.0.0.5", plain: true, errHas: "plain http"},
		{url: "ftp://xen1", errHas: "https://"},
		{url: "xen1.example.com", errHas: "https://host"},
		{url: "https://root:pw@xen1", errHas: "no user"},
		{url: "https://xen1/jsonrpc", errHas: "no user, path"},
		{url: "https://xen1?x=1", errHas: "no user, path"},
		{url: "https://bad_host!/", errHas: "no valid host"},
	}
	for _, c := range cases {
		ep, err := parseEndpoint(c.url, c.plain)
		if c.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("parseEndpoint(%q) err = %v, want %q", c.url, err, c.errHas)
			}
			if err != nil && strings.Contains(err.Error(), "pw@") {
				t.Errorf("error repeats the URL's password: %v", err)
			}
			continue
		}
		if err != nil || ep.base() != c.base || ep.host != c.host {
			t.Errorf("parseEndpoint(%q) = %q %q, %v; want %q %q", c.url, ep.base(), ep.host, err, c.base, c.host)
		}
	}
}

func TestMasterRedirectEndpoint(t *testing.T) {
	ep, _ := parseEndpoint("https://10.0.0.5:8443", false)
	cases := map[string]string{
		"10.0.0.1":       "https://10.0.0.1:8443", // keeps the port of the URL
		"10.0.0.1:9443":  "https://10.0.0.1:9443", // unless the address names one
		"master.example": "https://master.example:8443",
		"fe80::2":        "https://[fe80::2]:8443",
	}
	for addr, want := range cases {
		got, err := ep.withHost(addr)
		if err != nil || got.base() != want {
			t.Errorf("withHost(%q) = %q, %v; want %q", addr, got.base(), err, want)
		}
	}
	for _, bad := range []string{"", "a/b", "evil.com/x?y", "10.0.0.1:9443/x"} {
		if _, err := ep.withHost(bad); err == nil {
			t.Errorf("withHost(%q) accepted", bad)
		}
	}
}

func TestConfigNeverPrintsPassword(t *testing.T) {
	cfg := Config{URL: "https://xen1", User: "root", Password: testPassword}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		out := fmt.Sprintf(verb, cfg)
		if strings.Contains(out, testPassword) || !strings.Contains(out, "root") || !strings.Contains(out, "redacted") {
			t.Errorf("Sprintf(%s) = %s", verb, out)
		}
	}
	if out := fmt.Sprintf("%v", &cfg); strings.Contains(out, testPassword) {
		t.Errorf("pointer prints the password: %s", out)
	}
}

func TestParseFingerprint(t *testing.T) {
	hexs := strings.Repeat("ab", 32)
	for _, s := range []string{hexs, strings.ToUpper(hexs), "AB:" + strings.Repeat("ab:", 30) + "ab", "ab " + hexs[2:]} {
		if b, err := ParseFingerprint(s); err != nil || len(b) != 32 || b[0] != 0xab {
			t.Errorf("ParseFingerprint(%q) = %x, %v", s, b, err)
		}
	}
	for _, s := range []string{"", hexs[:62], hexs + "ab", "zz" + hexs[2:]} {
		if _, err := ParseFingerprint(s); err == nil {
			t.Errorf("ParseFingerprint(%q) accepted", s)
		}
	}
}

// writeCertPEM writes certificate DER as a PEM file.
func writeCertPEM(t *testing.T, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// otherCA is a self-signed CA the test servers do not use.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<33, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestTLSVerification(t *testing.T) {
	f := newFakeXapi(t)
	fp := Fingerprint(f.srv.Certificate())
	wrongPin := strings.Repeat("00", 32)
	localhostURL := strings.Replace(f.srv.URL, "127.0.0.1", "localhost", 1)
	cases := []struct {
		name   string
		mod    func(*Config)
		errHas []string // empty: must succeed
	}{
		{name: "right pin", mod: func(c *Config) {}},
		{name: "right pin lower case no colons", mod: func(c *Config) { c.Fingerprint = strings.ToLower(strings.ReplaceAll(fp, ":", "")) }},
		{name: "wrong pin", mod: func(c *Config) { c.Fingerprint = wrongPin }, errHas: []string{fp, "--xen-fingerprint"}},
		{name: "right CA", mod: func(c *Config) { c.Fingerprint, c.CAFile = "", writeCertPEM(t, f.srv.Certificate().Raw) }},
		{name: "wrong CA", mod: func(c *Config) { c.Fingerprint, c.CAFile = "", writeCertPEM(t, otherCA(t)) }, errHas: []string{fp, "--xen-ca"}},
		{name: "right CA wrong name", mod: func(c *Config) {
			c.Fingerprint, c.CAFile, c.URL = "", writeCertPEM(t, f.srv.Certificate().Raw), localhostURL
		}, errHas: []string{"localhost", "not valid"}},
		{name: "system roots", mod: func(c *Config) { c.Fingerprint = "" }, errHas: []string{fp, "--xen-fingerprint " + fp, "--xen-ca"}},
		{name: "CA file missing", mod: func(c *Config) { c.Fingerprint, c.CAFile = "", filepath.Join(t.TempDir(), "none.pem") }, errHas: []string{"CA file"}},
		{name: "bad pin", mod: func(c *Config) { c.Fingerprint = "12:34" }, errHas: []string{"not a SHA-256"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := f.config()
			c.mod(&cfg)
			s, err := Login(context.Background(), cfg)
			if len(c.errHas) == 0 {
				if err != nil {
					t.Fatalf("Login: %v", err)
				}
				if err := s.Logout(context.Background()); err != nil {
					t.Fatalf("Logout: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Login succeeded")
			}
			for _, want := range c.errHas {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

func TestPlainLoopbackOnlyWhenAllowed(t *testing.T) {
	f := newFakeXapi(t)
	plain := newPlainServer(t, f)
	cfg := f.config()
	cfg.URL = plain
	if _, err := Login(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Fatalf("plain Login without AllowPlainLoopback: %v", err)
	}
	cfg.AllowPlainLoopback = true
	s, err := Login(context.Background(), cfg)
	if err != nil {
		t.Fatalf("plain Login with AllowPlainLoopback: %v", err)
	}
	if s.Host() != "127.0.0.1" {
		t.Errorf("Host() = %q", s.Host())
	}
}
