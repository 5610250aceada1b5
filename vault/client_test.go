package vault

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"sort"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// TestAgentClient drives the server with the agent's vault client:
// the two sides of the wire contract must agree.
func TestAgentClient(t *testing.T) {
	lim := DefaultLimits()
	f := newFixture(t, lim)
	f.ledger.quota[tenantA] = 1 << 20
	ts := httptest.NewServer(f.h)
	defer ts.Close()
	u, _ := url.Parse(ts.URL)
	v, err := vaultclient.New(vaultclient.Config{BaseURL: u, Credential: f.credA})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	pack := randBytes(200 << 10)
	name := packName(pack)
	if err := v.Put(ctx, name, store.Bytes(pack), int64(len(pack))); err != nil {
		t.Fatal(err)
	}
	if err := v.Put(ctx, name, store.Bytes(pack), int64(len(pack))); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second put: %v", err)
	}
	got, err := store.ReadRange(ctx, v, name, 1000, 5000)
	if err != nil || !bytes.Equal(got, pack[1000:6000]) {
		t.Fatalf("range: %v", err)
	}
	all, err := store.ReadAll(ctx, v, name)
	if err != nil || !bytes.Equal(all, pack) {
		t.Fatalf("read all: %v", err)
	}
	if fi, err := v.Stat(ctx, name); err != nil || fi.Size != int64(len(pack)) {
		t.Fatalf("stat: %v %v", fi, err)
	}
	var names []string
	if err := v.List(ctx, "data/", func(fi store.Info) error { names = append(names, fi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	want := []string{f.packA, name}
	sort.Strings(want)
	if len(names) != 2 || names[0] != want[0] || names[1] != want[1] {
		t.Fatalf("list %v, want %v", names, want)
	}
	if err := v.Delete(ctx, name); !errors.Is(err, store.ErrDenied) {
		t.Fatalf("delete: %v", err)
	}
	if _, err := v.Stat(ctx, f.packB); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("B's pack through A: %v", err)
	}
	bad := randBytes(1000)
	if err := v.Put(ctx, packName(bad[:5]), store.Bytes(bad), int64(len(bad))); err == nil || !store.IsPermanent(err) {
		t.Fatalf("mismatch: %v", err)
	}
	big := randBytes(1 << 20)
	if err := v.Put(ctx, packName(big), store.Bytes(big), int64(len(big))); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("quota: %v", err)
	}
}
