package xapisim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRequest: any body gets HTTP 500 (malformed) or 200 with a JSON-RPC
// answer holding a result or an error, never a panic.
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","method":"session.login_with_password","params":["root","` + testPassword + `"],"id":1}`,
		`{"jsonrpc":"2.0","method":"VM.get_all_records","params":["OpaqueRef:x"],"id":"a"}`,
		`{"method":"VDI.list_changed_blocks","params":["OpaqueRef:x",1,[]],"id":2}`,
		`{"jsonrpc":"2.0","method":"Async.VM.snapshot","params":[],"id":3}`,
		`{"jsonrpc":"2.0","method":"task.get_result","params":[null],"id":4}`,
		`{"jsonrpc":"2.0","method":"VM.get_by_uuid","params":["s", {"a":1}],"id":5}`,
		`{"jsonrpc":"2.0","method":"","params":[],"id":6}`, `{"id":1e400}`, `[1,2]`, `null`, ``,
	} {
		f.Add(seed)
	}
	sim, err := Init(filepath.Join(f.TempDir(), "state"), testPassword, nil)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := sim.CreateVM("web", []int64{1 << 20}, true); err != nil {
		f.Fatal(err)
	}
	h := &Handler{Sim: sim}
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/jsonrpc", strings.NewReader(body)))
		switch rec.Code {
		case http.StatusInternalServerError:
			if _, err := decodeRequest([]byte(body)); err == nil {
				t.Fatalf("a well-formed request got 500: %s", rec.Body)
			}
		case http.StatusOK:
			var resp map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatalf("answer is not JSON: %v", err)
			}
			if _, ok := resp["id"]; !ok {
				t.Fatalf("answer without id: %s", rec.Body)
			}
			if _, ok := resp["result"]; !ok {
				if _, ok := resp["error"]; !ok {
					t.Fatalf("answer with neither result nor error: %s", rec.Body)
				}
			}
			if strings.Contains(rec.Body.String(), testPassword) {
				t.Fatal("an answer repeats the password")
			}
		default:
			t.Fatalf("HTTP %d", rec.Code)
		}
	})
}

// FuzzExportName: the NBD export-name parser never panics, and what it
// accepts names a uuid and a ref.
func FuzzExportName(f *testing.F) {
	f.Add("/0f7a9d2e-1b1c-4a3e-9c1d-2f3e4a5b6c7d?session_id=OpaqueRef:1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6")
	f.Add("/x?session_id=%zz")
	f.Add("")
	f.Fuzz(func(t *testing.T, name string) {
		u, s, err := ParseExportName(name)
		if err == nil && (!uuidRE.MatchString(u) || !validRef(s)) {
			t.Fatalf("accepted %q as %q %q", name, u, s)
		}
	})
}

// FuzzState: state.json is read back with a clear error, never a panic,
// and what it accepts has every VBD pointing at a VM.
func FuzzState(f *testing.F) {
	st := newState("pw")
	good, _ := json.Marshal(st)
	f.Add(string(good))
	f.Add(`{"version":1}`)
	f.Add(`{"version":1,"pool":{},"host":{},"srs":{},"vms":{},"vbds":{"r":{"vm":"x"}},"vdis":{}}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, b string) {
		st, err := decodeState([]byte(b))
		if err != nil {
			return
		}
		for _, vbd := range st.VBDs {
			if vbd == nil || st.VMs[vbd.VM] == nil {
				t.Fatal("accepted a VBD without its VM")
			}
		}
		st.listing() // must not panic on what was accepted
	})
}
