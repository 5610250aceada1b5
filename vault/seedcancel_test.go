package vault

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/testutil/seedtest"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

func (s *seedServer) cancel(cred vaultapi.Secret, id, reason string) reply {
	b, _ := json.Marshal(vaultapi.SeedCancelRequest{Reason: reason})
	return s.send("POST", vaultapi.RouteSeeds+"/"+id+"/cancel", cred, b)
}

// TestSeedCancelRoutes: the tenant cancels its seed in transit; the lost
// list names the seed's packs the vault lacked; another tenant can neither
// cancel nor read it; a receipt naming the cancelled seed with missing
// packs is refused saying so; a read of a lost pack is a 404 naming the
// seed; the slot is free for a new seed.
func TestSeedCancelRoutes(t *testing.T) {
	s := newSeedServer(t)
	if r := s.setKey(s.credA, s.key.Public()); r.status != http.StatusOK {
		t.Fatal(r.err)
	}
	stored, travels := randBytes(3000), randBytes(3000)
	p1, p2 := sha(stored), sha(travels)
	if r := s.send("PUT", "/v1/repo/"+packName(stored), s.credA, stored); r.status != http.StatusCreated {
		t.Fatal(r.err)
	}
	other := fakePack("other")
	sd := seedtest.New(t, s.key, s.acme.ID, p1, p2, other)
	id := sd.Manifest.ID
	if r := s.register(s.credA, id, sd); r.status != http.StatusCreated {
		t.Fatal(r.err)
	}
	want(t, "lost before the cancel", s.send("GET", vaultapi.RouteSeeds+"/"+id+"/lost", s.credA, nil), http.StatusBadRequest, vaultapi.CodeBadRequest)
	want(t, "bravo cancels acme's seed", s.cancel(s.credB, id, "x"), http.StatusNotFound, vaultapi.CodeNotFound)
	want(t, "a reason with a newline", s.cancel(s.credA, id, "a\nb"), http.StatusBadRequest, vaultapi.CodeBadRequest)
	want(t, "a reason too long", s.cancel(s.credA, id, strings.Repeat("x", vaultapi.MaxSeedCancelReason+1)), http.StatusBadRequest, vaultapi.CodeBadRequest)
	want(t, "an unknown field", s.send("POST", vaultapi.RouteSeeds+"/"+id+"/cancel", s.credA, []byte(`{"why":"x"}`)), http.StatusBadRequest, vaultapi.CodeBadRequest)

	r := s.cancel(s.credA, id, " the courier lost it ")
	info := decode[vaultapi.SeedInfo](t, r)
	if r.status != http.StatusOK || info.State != vaultapi.SeedCancelled || info.Reason != "the courier lost it" || info.Cancelled == nil {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if r := s.cancel(s.credA, id, "again"); r.status != http.StatusOK || decode[vaultapi.SeedInfo](t, r).Reason != "the courier lost it" {
		t.Fatalf("cancel again: %d %s", r.status, r.body)
	}
	lost := decode[vaultapi.SeedLostPacks](t, s.send("GET", vaultapi.RouteSeeds+"/"+id+"/lost", s.credA, nil))
	if lost.Seed != id || !slices.Equal(lost.Packs, slices.Sorted(slices.Values([]string{p2, other}))) {
		t.Fatalf("lost list %+v, want %s and %s", lost, p2, other)
	}
	want(t, "bravo reads the lost list", s.send("GET", vaultapi.RouteSeeds+"/"+id+"/lost", s.credB, nil), http.StatusNotFound, vaultapi.CodeNotFound)

	name, body := seedReceipt(t, id, p1, p2)
	r = s.send("PUT", "/v1/repo/"+name, s.credA, body)
	want(t, "a receipt naming the cancelled seed", r, http.StatusUnprocessableEntity, vaultapi.CodeBadReceipt)
	if !strings.Contains(r.err.Message, "which was cancelled on") || !strings.Contains(r.err.Message, "the courier lost it") {
		t.Errorf("receipt refusal: %s", r.err.Message)
	}
	r = s.send("GET", "/v1/repo/"+packName(travels), s.credA, nil)
	want(t, "GET a lost pack", r, http.StatusNotFound, vaultapi.CodeNotFound)
	if !strings.Contains(r.err.Message, "seed "+id[:12]+", cancelled on") {
		t.Errorf("lost pack: %s", r.err.Message)
	}
	if r := s.send("GET", "/v1/repo/"+packName(stored), s.credA, nil); r.status != http.StatusOK {
		t.Errorf("a stored pack of the seed: %d", r.status)
	}
	next := seedtest.New(t, s.key, s.acme.ID, fakePack("next"))
	if r := s.register(s.credA, next.Manifest.ID, next); r.status != http.StatusCreated {
		t.Fatalf("a new seed after the cancel: %d %+v", r.status, r.err)
	}
}
