package vault

import (
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/testutil/miniotest"
)

// TestObjectLockThroughTheAPI is the Object Lock "must hold" at the vault:
// in a bucket with Object Lock, what an agent uploads is locked; the
// agent's credential can neither delete nor replace it through the API,
// and the vault's own store credential cannot delete it before its time.
func TestObjectLockThroughTheAPI(t *testing.T) {
	srv := miniotest.Start(t)
	st, err := storeurl.Open(t.Context(), srv.NewLockedBucket(t), storeurl.Options{
		ObjectLock: store.LockPolicy{Mode: store.LockGovernance, Retention: time.Hour, Match: LockedObject},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Provider.Close()
	f := &fixture{t: t, data: st.Base, logs: &lockedBuffer{},
		auth:   &fakeAuth{creds: map[string]*Principal{}, revoked: map[string]bool{}},
		ledger: &fakeLedger{quota: map[string]int64{}, stored: map[string]int64{}, active: map[string]int64{}},
	}
	f.credA, f.idA = f.auth.add(Principal{TenantID: tenantA, TenantName: "acme"})
	if f.srv, err = New(Config{Data: st.Base, Auth: f.auth, Ledger: f.ledger, Log: slog.New(slog.NewJSONHandler(f.logs, nil))}); err != nil {
		t.Fatal(err)
	}
	f.h = f.srv.Handler()
	pb := randBytes(3000)
	pack := packName(pb)
	f.mustPut(f.credA, pack, pb)
	f.mustPut(f.credA, "config", []byte(`{"a":1}`))
	for _, name := range []string{pack, "config"} {
		l, err := store.LockInfo(t.Context(), st.Retry, objectKey(tenantA, name))
		if err != nil || l.Mode != store.LockGovernance || !l.Active(time.Now().Add(50*time.Minute)) {
			t.Errorf("%s: lock %v, %v; want governance for an hour", name, l, err)
		}
	}
	for _, name := range []string{pack, "config"} {
		if w := f.do(req{method: "DELETE", target: "/v1/repo/" + name, cred: f.credA}); w.Code != http.StatusForbidden {
			t.Errorf("agent DELETE %s = %d %s; want 403", name, w.Code, w.Body.String())
		}
	}
	if w := f.do(req{method: "PUT", target: "/v1/repo/" + pack, cred: f.credA, body: pb}); w.Code != http.StatusConflict {
		t.Errorf("agent PUT over a locked pack = %d %s; want 409", w.Code, w.Body.String())
	}
	if err := st.Retry.Delete(t.Context(), objectKey(tenantA, pack)); !errors.Is(err, store.ErrLocked) {
		t.Errorf("the vault's store credential deleting the pack = %v; want ErrLocked", err)
	}
	if w := f.do(req{method: "GET", target: "/v1/repo/" + pack, cred: f.credA}); w.Code != http.StatusOK || w.Body.Len() != len(pb) {
		t.Errorf("GET after the attempts = %d, %d bytes; want 200 and the pack", w.Code, w.Body.Len())
	}
}
