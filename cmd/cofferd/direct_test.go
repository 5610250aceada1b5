package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/miniotest"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// TestServeDirectDownloads: `cofferd serve --direct-downloads` over a real
// MinIO, with the store named for agents by another address and a read
// rate cap, redirects an agent's large pack read to a presigned URL of that
// address, and the agent's client reads the right bytes from it.
func TestServeDirectDownloads(t *testing.T) {
	srv := miniotest.Start(t)
	raw := srv.URL("coffer-serve-direct", "vault")
	if r := runStore(raw, "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	tok := tokenRE.FindString(runStore(raw, "tenant", "create", "acme").stdout)
	if tok == "" {
		t.Fatal("no token")
	}
	public := "http://" + strings.Replace(srv.Endpoint, "127.0.0.1", "localhost", 1)
	sv := startServeArgs(t, "--store", raw, "serve", "--direct-downloads", "--direct-downloads-endpoint", public, "--store-read-rate", "100")
	base, _ := url.Parse("http://" + sv.listen)
	cred, id, sum, _ := vaultapi.NewCredential()
	body, _ := vaultapi.EnrollRequest{Token: vaultapi.Secret(tok), CredentialID: id, CredentialSHA256: hex.EncodeToString(sum[:]), Host: "xen1"}.Encode()
	resp, err := http.Post(base.String()+"/v1/enroll", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("enroll: %v %v", err, resp)
	}
	resp.Body.Close()

	var failures []error
	v, err := vaultclient.New(vaultclient.Config{BaseURL: base, Credential: cred, OnDirectFailure: func(err error) { failures = append(failures, err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	pack := make([]byte, 6<<20)
	_, _ = rand.Read(pack)
	h := sha256.Sum256(pack)
	name := "data/" + hex.EncodeToString(h[:1]) + "/" + hex.EncodeToString(h[:])
	if err := v.Put(t.Context(), name, store.Bytes(pack), int64(len(pack))); err != nil {
		t.Fatal(err)
	}
	got, err := store.ReadRange(t.Context(), v, name, 1000, 5<<20)
	if err != nil || !bytes.Equal(got, pack[1000:1000+5<<20]) || len(failures) != 0 {
		t.Fatalf("direct read: %v, failures %v", err, failures)
	}
	resp, err = http.Get("http://" + sv.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(mb), "cofferd_tenant_direct_downloads_total{tenant=") ||
		!strings.Contains(string(mb), "cofferd_tenant_direct_download_bytes_total{tenant=") || !strings.Contains(string(mb), "} 5.24288e+06") {
		t.Fatalf("metrics lack the direct download:\n%s", grepLines(string(mb), "direct"))
	}
	// The pack's bytes went from the store to the agent, not through cofferd.
	for _, l := range strings.Split(grepLines(string(mb), "cofferd_tenant_bytes_out_total{"), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			if n, err := strconv.ParseFloat(f[1], 64); err != nil || n >= 1<<20 {
				t.Fatalf("cofferd sent the pack's bytes itself: %s", l)
			}
		}
	}
}

// TestServeDirectDownloadsRefused: direct downloads need an s3:// store,
// and the endpoint flag needs the switch and a sound URL.
func TestServeDirectDownloadsRefused(t *testing.T) {
	dir := t.TempDir()
	raw := "file://" + dir
	if r := runStore(raw, "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--direct-downloads"}, "presign"},
		{[]string{"serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--direct-downloads-endpoint", "https://s3.example.com"}, "needs --direct-downloads"},
		{[]string{"serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--direct-downloads", "--direct-downloads-endpoint", "http://s3.example.com"}, "plain http"},
	} {
		r := runStore(raw, c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error about %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
