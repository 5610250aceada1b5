package xapisim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
)

const testPassword = "s3cret-test-pw"

// fixture is a state folder with one VM "web" (two 1 MiB disks and a CD)
// served over httptest.
type fixture struct {
	t      *testing.T
	sim    *Sim
	clock  *clocktest.Clock
	h      *Handler
	url    string // base URL of the served simulator
	client *http.Client
	vm     string // uuid of web
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := clocktest.New(time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC))
	sim, err := Init(filepath.Join(t.TempDir(), "state"), testPassword, c)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := sim.CreateVM("web", []int64{1 << 20, 1 << 20}, true)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, sim: sim, clock: c, vm: vm}
	f.h = &Handler{Sim: sim, NBD: &NBDInfo{Address: "127.0.0.1", Port: 10809, CertPEM: "PEM", Subject: "localhost"}}
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	f.url, f.client = srv.URL, srv.Client()
	return f
}

// post sends a raw body to /jsonrpc.
func (f *fixture) post(body string) (int, []byte) {
	f.t.Helper()
	resp, err := f.client.Post(f.url+"/jsonrpc", "application/json", bytes.NewBufferString(body))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// rpc calls a method over JSON-RPC 2.0; it returns the result or the
// error's message and data.
func (f *fixture) rpc(method string, params ...any) (result any, errCode string, errData []string) {
	f.t.Helper()
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "params": params, "id": 7})
	code, out := f.post(string(body))
	if code != http.StatusOK {
		f.t.Fatalf("%s: HTTP %d %s", method, code, out)
	}
	var resp struct {
		JSONRPC string `json:"jsonrpc"`
		ID      int    `json:"id"`
		Result  any    `json:"result"`
		Error   *struct {
			Code    int      `json:"code"`
			Message string   `json:"message"`
			Data    []string `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		f.t.Fatalf("%s: %v in %s", method, err, out)
	}
	if resp.JSONRPC != "2.0" || resp.ID != 7 {
		f.t.Fatalf("%s: bad envelope %s", method, out)
	}
	if resp.Error != nil {
		if resp.Error.Code != 1 {
			f.t.Fatalf("%s: error code %d", method, resp.Error.Code)
		}
		return nil, resp.Error.Message, resp.Error.Data
	}
	return resp.Result, "", nil
}

// ok calls a method that must succeed.
func (f *fixture) ok(method string, params ...any) any {
	f.t.Helper()
	r, code, data := f.rpc(method, params...)
	if code != "" {
		f.t.Fatalf("%s: %s %v", method, code, data)
	}
	return r
}

// fails calls a method that must fail with code.
func (f *fixture) fails(code, method string, params ...any) []string {
	f.t.Helper()
	_, got, data := f.rpc(method, params...)
	if got != code {
		f.t.Fatalf("%s: got error %q %v, want %s", method, got, data, code)
	}
	return data
}

func (f *fixture) login() string {
	f.t.Helper()
	return f.ok("session.login_with_password", "root", testPassword, "1.1", "coffer-test").(string)
}

func (f *fixture) vmRef(s string) string {
	return f.ok("VM.get_by_uuid", s, f.vm).(string)
}

// disks returns the VDI refs of a VM's disk VBDs, by userdevice.
func (f *fixture) disks(s, vm string) []string {
	f.t.Helper()
	rec := f.ok("VM.get_record", s, vm).(map[string]any)
	var out []string
	for _, b := range rec["VBDs"].([]any) {
		vbd := f.ok("VBD.get_record", s, b).(map[string]any)
		if vbd["type"] == "Disk" {
			out = append(out, vbd["VDI"].(string))
		}
	}
	return out
}

// setBits decodes a list_changed_blocks answer into block numbers.
func setBits(t *testing.T, b64 any) []int64 {
	t.Helper()
	s, ok := b64.(string)
	if !ok {
		t.Fatalf("bitmap %v is not a string", b64)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for i := int64(0); i < int64(len(raw))*8; i++ {
		if bitmap(raw).has(i) {
			out = append(out, i)
		}
	}
	return out
}

func sameBlocks(a, b []int64) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
