package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// A pack read at any offset gives the same bytes as the whole stream, and
// its name is a valid pack name.
func TestPackSource(t *testing.T) {
	const size = 1<<20 + 7
	p, err := newPackSource(size)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := io.ReadAll(io.NewSectionReader(p, 0, size))
	if err != nil || len(whole) != size {
		t.Fatalf("read %d bytes, %v", len(whole), err)
	}
	for _, off := range []int64{0, 1, 15, 16, 17, 4095, 65536 + 3, size - 5} {
		buf := make([]byte, 100)
		n, err := p.ReadAt(buf, off)
		want := whole[off:min(off+100, size)]
		if n != len(want) || !bytes.Equal(buf[:n], want) {
			t.Errorf("ReadAt(%d) = %d bytes, differ from the stream", off, n)
		}
		if n < len(buf) && err != io.EOF {
			t.Errorf("short ReadAt(%d) returned %v, want io.EOF", off, err)
		}
	}
	name, err := p.name()
	if err != nil {
		t.Fatal(err)
	}
	if k, err := vaultapi.ParseRepoName(name); err != nil || k != vaultapi.KindPack {
		t.Errorf("name %q: kind %v, %v", name, k, err)
	}
	q, _ := newPackSource(size)
	if qn, _ := q.name(); qn == name {
		t.Error("two packs have the same content")
	}
}

func TestVaultChecks(t *testing.T) {
	r := &Results{Config: config{Tools: []string{toolCoffer}, Targets: []string{targetS3, targetVault}}}
	s3 := fakeSession(toolCoffer, targetS3, 100, 200, 100, 1000, 10, 1000)
	v := fakeSession(toolCoffer, targetVault, 85, 200, 70, 1000, 10, 1000)
	for _, st := range v.Steps {
		st.VaultCPU, st.VaultRSSKiB = 1, 20<<10
	}
	r.Sessions = []*Session{s3, v}
	r.Storm = &Storm{Tenants: 4, Clients: 16, Rounds: 2, Puts: 32, MaxInFlight: 16, PeakRSSKiB: 300 << 10}
	got := map[string]Check{}
	for _, c := range checks(r) {
		if c.Target == targetVault {
			got[c.Name] = c
		}
	}
	for name, want := range map[string]string{
		"vault full backup throughput vs coffer on s3":      "PASS", // 0.85
		"vault restore throughput vs coffer on s3":          "FAIL", // 0.70
		"cofferd peak RSS during the coffer session (MiB)":  "PASS",
		"cofferd peak RSS, 16 pack uploads in flight (MiB)": "FAIL", // 300 MiB
		"cofferd CPU seconds (both nights and the restore)": "info",
	} {
		if c, ok := got[name]; !ok || c.Status != want {
			t.Errorf("%s: %+v, want %s", name, c, want)
		}
	}
	var out strings.Builder
	report(&out, r)
	if !strings.Contains(out.String(), "16 uploads in flight") || !strings.Contains(out.String(), "cofferd CPU s") {
		t.Errorf("report lacks the vault rows:\n%s", out.String())
	}
	// Without the s3 session the ratio is unknown, not a failure.
	r.Sessions = []*Session{v}
	r.Storm.PeakRSSKiB = 20 << 10
	for _, c := range checks(r) {
		if strings.Contains(c.Name, "vs coffer on s3") && c.Status != "n/a" {
			t.Errorf("%s without s3: %s", c.Name, c.Status)
		}
		if strings.Contains(c.Name, "in flight") && c.Status != "PASS" {
			t.Errorf("%s at 20 MiB: %s", c.Name, c.Status)
		}
	}
}
