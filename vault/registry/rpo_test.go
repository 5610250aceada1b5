package registry_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/registry"
)

// Recovery point objectives: a default, a VM's own (which also may be an
// explicit none), cleared back to the default; no change writes nothing;
// bad values are refused naming the limit.
func TestSetRPO(t *testing.T) {
	a, b, _, _ := twoRegistries(t)
	ctx := context.Background()
	ten, _, _, err := a.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d, own := ten.RPOFor("web01"); d != 0 || own {
		t.Fatalf("a new tenant's RPO: %v %v", d, own)
	}
	got, err := a.SetRPO(ctx, ten.ID, "", 24*time.Hour)
	if err != nil || got.RPO == nil || got.RPO.Default != 24*time.Hour || got.RPO.PerVM != nil {
		t.Fatalf("default: %+v %v", got, err)
	}
	rev := got.Rev
	if got, err = b.SetRPO(ctx, ten.ID, "", 24*time.Hour); err != nil || got.Rev != rev {
		t.Fatalf("no change wrote: %+v %v", got, err)
	}
	if _, err = b.SetRPO(ctx, ten.ID, "db01", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err = b.SetRPO(ctx, ten.ID, "old", 0); err != nil {
		t.Fatal(err)
	}
	got, err = a.Tenant(ctx, ten.ID)
	if err != nil {
		t.Fatal(err)
	}
	for vm, want := range map[string]struct {
		d   time.Duration
		own bool
	}{"web01": {24 * time.Hour, false}, "db01": {time.Hour, true}, "old": {0, true}} {
		if d, own := got.RPOFor(vm); d != want.d || own != want.own {
			t.Fatalf("RPOFor(%s) = %v %v, want %v %v", vm, d, own, want.d, want.own)
		}
	}
	if got, err = a.ClearVMRPO(ctx, ten.ID, "db01"); err != nil {
		t.Fatal(err)
	}
	if d, own := got.RPOFor("db01"); d != 24*time.Hour || own {
		t.Fatalf("cleared: %v %v", d, own)
	}
	if _, err = a.ClearVMRPO(ctx, ten.ID, "old"); err != nil {
		t.Fatal(err)
	}
	if got, err = a.SetRPO(ctx, ten.ID, "", 0); err != nil || got.RPO != nil {
		t.Fatalf("nothing left is stored as none: %+v %v", got.RPO, err)
	}
	for _, bad := range []struct {
		vm string
		d  time.Duration
	}{{"", -time.Second}, {"", registry.MaxRPO + 1}, {"bad\x01name", time.Hour}, {strings.Repeat("x", 300), time.Hour}} {
		if _, err := a.SetRPO(ctx, ten.ID, bad.vm, bad.d); code(err) != vaultapi.CodeBadRequest {
			t.Fatalf("SetRPO(%q, %v): %v", bad.vm, bad.d, err)
		}
	}
}

// A tenant may give at most MaxVMRPOs VMs their own objective; changing an
// existing one still works at the limit.
func TestSetRPOBoundsVMs(t *testing.T) {
	a, _, _, _ := twoRegistries(t)
	ctx := context.Background()
	ten, _, _, err := a.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range registry.MaxVMRPOs {
		if _, err := a.SetRPO(ctx, ten.ID, fmt.Sprintf("vm%03d", i), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.SetRPO(ctx, ten.ID, "one-more", time.Hour); code(err) != vaultapi.CodeBadRequest || !strings.Contains(err.Error(), "default") {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := a.SetRPO(ctx, ten.ID, "vm000", 2*time.Hour); err != nil {
		t.Fatalf("changing one at the limit: %v", err)
	}
}
