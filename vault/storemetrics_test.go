package vault

import (
	"testing"
)

// storeCount reads cofferd_tenant_store_requests_total for one tenant and
// operation.
func storeCount(t *testing.T, f *fixture, tenant, op string) float64 {
	t.Helper()
	return metricValue(t, f.srv, "cofferd_tenant_store_requests_total", `op="`+op+`",tenant="`+tenant+`"`)
}

// TestTenantStoreRequests: the store requests made while serving a
// tenant are counted for that tenant and operation, and for no other.
func TestTenantStoreRequests(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	type key struct{ tenant, op string }
	ops := []string{storeOpPut, storeOpGet, storeOpStat, storeOpList, storeOpDelete}
	snapshot := func() map[key]float64 {
		m := map[key]float64{}
		for _, tid := range []string{tenantA, tenantB} {
			for _, op := range ops {
				m[key{tid, op}] = storeCount(t, f, tid, op)
			}
		}
		return m
	}
	if storeCount(t, f, tenantA, storeOpPut) != 3 || storeCount(t, f, tenantB, storeOpPut) != 3 {
		t.Fatalf("after the fixture's uploads: puts A=%v B=%v; want 3 each",
			storeCount(t, f, tenantA, storeOpPut), storeCount(t, f, tenantB, storeOpPut))
	}
	before := snapshot()
	if w := f.do(req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA}); w.Code != 200 {
		t.Fatalf("GET: %d %s", w.Code, w.Body.String())
	}
	pb := randBytes(100)
	f.mustPut(f.credB, packName(pb), pb)
	if w := f.do(req{method: "GET", target: "/v1/list?prefix=data/", cred: f.credB}); w.Code != 200 {
		t.Fatalf("LIST: %d %s", w.Code, w.Body.String())
	}
	after := snapshot()
	for k, v := range after {
		d := v - before[k]
		var want float64
		switch k {
		case key{tenantA, storeOpGet}, key{tenantB, storeOpPut}, key{tenantB, storeOpList}:
			want = 1
		case key{tenantA, storeOpStat}:
			want = -1 // 0 or 1: the size may come from the cache
		case key{tenantB, storeOpStat}:
			want = -2 // at least 1: the upload checks the name is free
		}
		switch {
		case want == -1 && d > 1, want == -2 && d < 1, want >= 0 && d != want:
			t.Errorf("%s %s: counted %v more requests; want %v", k.tenant, k.op, d, want)
		}
	}
}

// TestLockedObject: the vault's lock policy covers every repository
// object and nothing else.
func TestLockedObject(t *testing.T) {
	hex := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for key, want := range map[string]bool{
		"repos/" + tenantA + "/data/01/" + hex:   true,
		"repos/" + tenantA + "/snapshots/" + hex: true,
		"repos/" + tenantA + "/index/" + hex:     true,
		"repos/" + tenantA + "/keys/" + hex:      true,
		"repos/" + tenantA + "/drills/" + hex:    true,
		"repos/" + tenantA + "/config":           true,
		"repos/" + tenantA + "/data/02/" + hex:   false, // not a valid pack name
		"repos/" + tenantA + "/state.json":       false,
		"repos//config":                          false,
		"repos/config":                           false,
		"vault/format":                           false,
		"vault/tenants/" + tenantA:               false,
		"vault/usage/" + tenantA:                 false,
		"x/repos/" + tenantA + "/data/01/" + hex: false,
	} {
		if got := LockedObject(key); got != want {
			t.Errorf("LockedObject(%q) = %v; want %v", key, got, want)
		}
	}
}
