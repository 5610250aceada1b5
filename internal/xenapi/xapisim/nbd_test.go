package xapisim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/nbd"
)

// newServedFixture runs Serve (HTTPS and NBD over TLS) on loopback and
// points the fixture at it.
func newServedFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- f.sim.Serve(ctx, ServeConfig{Listen: "127.0.0.1:0", NBDListen: "127.0.0.1:0"})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	var info *ServeInfo
	for i := 0; ; i++ {
		var err error
		if info, err = ReadServeInfo(f.sim.Dir); err == nil {
			break
		}
		if i == 500 {
			t.Fatalf("serve.json never appeared: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	pool := x509.NewCertPool()
	certPEM := readFile(t, info.CA)
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("cert.pem holds no certificate")
	}
	blk, _ := pem.Decode(certPEM)
	if sum := sha256.Sum256(blk.Bytes); hex.EncodeToString(sum[:]) != info.Fingerprint {
		t.Fatal("serve.json's fingerprint is not cert.pem's")
	}
	f.url = info.URL
	f.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(f.client.CloseIdleConnections)
	return f
}

// export asks get_nbd_info for a VDI's export.
func (f *fixture) export(s, vdi string) nbd.Export {
	f.t.Helper()
	info := f.ok("VDI.get_nbd_info", s, vdi).([]any)
	if len(info) != 1 {
		f.t.Fatalf("get_nbd_info %v", info)
	}
	e := info[0].(map[string]any)
	return nbd.Export{Address: e["address"].(string), Port: int(e["port"].(float64)), CertPEM: e["cert"].(string),
		Subject: e["subject"].(string), Name: e["exportname"].(string)}
}

func (f *fixture) listing() *Listing {
	f.t.Helper()
	l, err := f.sim.List()
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

func dial(t *testing.T, e nbd.Export) (*nbd.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return nbd.Dial(ctx, e, nbd.DialOptions{Timeout: 10 * time.Second})
}

func TestNBDReadsTheSnapshot(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	if err := f.sim.WriteBlocks(DiskRef{VM: "web", N: 0}, []int64{0, 5, 15}, 3); err != nil {
		t.Fatal(err)
	}
	snap := f.disks(s, f.snapshot(s, vm, "n1"))[0]
	want := filepath.Join(t.TempDir(), "want.img")
	if err := f.sim.exportVDI(snap, want); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, f.export(s, snap))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, c.Size())
	if _, err := c.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, readFile(t, want)) {
		t.Fatal("NBD read differs from the snapshot")
	}
	l := f.listing()
	if l.NBDConnections != 1 || len(l.Dom0Attachments) != 1 || l.Dom0Attachments[0].Mode != "RO" || !l.Dom0Attachments[0].Attached {
		t.Fatalf("while connected: %d connections, attachments %+v", l.NBDConnections, l.Dom0Attachments)
	}
	f.fails(errVDIInUse, "VDI.destroy", s, snap)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { l := f.listing(); return l.NBDConnections == 0 && len(l.Dom0Attachments) == 0 })
	f.ok("VDI.destroy", s, snap)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i == 500 {
			t.Fatal("condition never met")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNBDRefusals(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	f.ok("VDI.enable_cbt", s, f.disks(s, vm)[0])
	snap := f.disks(s, f.snapshot(s, vm, "n1"))[0]
	e := f.export(s, snap)
	f.ok("VDI.data_destroy", s, snap)
	if _, err := dial(t, e); err == nil {
		t.Fatal("a cbt_metadata VDI was served")
	}
	other := f.login()
	e2 := f.export(other, f.disks(s, vm)[1])
	f.ok("session.logout", other)
	if _, err := dial(t, e2); err == nil {
		t.Fatal("a logged-out session was served")
	}
	if l := f.listing(); l.NBDConnections != 0 || len(l.Dom0Attachments) != 0 {
		t.Fatalf("refused connections left %d connections, %d attachments", l.NBDConnections, len(l.Dom0Attachments))
	}
}

func TestParseExportName(t *testing.T) {
	good := "/0f7a9d2e-1b1c-4a3e-9c1d-2f3e4a5b6c7d?session_id=OpaqueRef:1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6"
	if u, s, err := ParseExportName(good); err != nil || u != "0f7a9d2e-1b1c-4a3e-9c1d-2f3e4a5b6c7d" || s != "OpaqueRef:1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6" {
		t.Fatalf("%q: %q %q %v", good, u, s, err)
	}
	for _, bad := range []string{"", "/", "/x?session_id=OpaqueRef:1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6",
		"0f7a9d2e-1b1c-4a3e-9c1d-2f3e4a5b6c7d?session_id=OpaqueRef:1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6",
		"/0f7a9d2e-1b1c-4a3e-9c1d-2f3e4a5b6c7d", "/0f7a9d2e-1b1c-4a3e-9c1d-2f3e4a5b6c7d?session_id=nope",
		"/0f7a9d2e-1b1c-4a3e-9c1d-2f3e4a5b6c7d?session_id=OpaqueRef:1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6&x=1",
		"/0F7A9D2E-1B1C-4A3E-9C1D-2F3E4A5B6C7D?session_id=OpaqueRef:1e2d3c4b-5a69-4788-9a0b-c1d2e3f4a5b6"} {
		if _, _, err := ParseExportName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestNBDLeakedAttachment(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	f.ok("VDI.enable_cbt", s, f.disks(s, vm)[0])
	snap := f.disks(s, f.snapshot(s, vm, "n1"))[0]
	if err := f.sim.SetSwitch(SwitchLeakAttachments); err != nil {
		t.Fatal(err)
	}
	e := f.export(s, snap)
	// A client that says NBD_CMD_DISC leaves nothing behind.
	c, err := dial(t, e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, func() bool { return f.listing().NBDConnections == 0 })
	if l := f.listing(); len(l.Dom0Attachments) != 0 {
		t.Fatalf("a clean disconnect left %+v", l.Dom0Attachments)
	}
	// A client that vanishes leaves its dom0 VBD attached.
	var raw net.Conn
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err = nbd.Dial(ctx, e, nbd.DialOptions{Timeout: 10 * time.Second,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, addr)
			raw = conn
			return conn, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	waitFor(t, func() bool { return f.listing().NBDConnections == 0 })
	l := f.listing()
	if len(l.Dom0Attachments) != 1 || !l.Dom0Attachments[0].Attached {
		t.Fatalf("attachments %+v", l.Dom0Attachments)
	}
	f.fails(errVDIInUse, "VDI.data_destroy", s, snap)
	vbds := f.ok("VDI.get_VBDs", s, snap).([]any)
	var dom0VBD string
	for _, b := range vbds {
		rec := f.ok("VBD.get_record", s, b).(map[string]any)
		if f.ok("VM.get_is_control_domain", s, rec["VM"]) == true {
			dom0VBD = b.(string)
		}
	}
	if dom0VBD == "" {
		t.Fatal("the leaked dom0 VBD is not among the VDI's VBDs")
	}
	f.fails(errDeviceAttached, "VBD.destroy", s, dom0VBD)
	f.ok("VBD.unplug", s, dom0VBD)
	f.fails(errDeviceNotAttached, "VBD.unplug", s, dom0VBD)
	f.ok("VBD.destroy", s, dom0VBD)
	f.ok("VDI.data_destroy", s, snap)
}

func TestNBDConnectionCap(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	e := f.export(s, f.disks(s, f.vmRef(s))[1])
	var open []*nbd.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range maxNBDConns {
		c, err := dial(t, e)
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		open = append(open, c)
	}
	if c, err := dial(t, e); err == nil {
		c.Close()
		t.Fatalf("connection %d was served", maxNBDConns+1)
	}
	if n := f.listing().NBDConnections; n != maxNBDConns {
		t.Fatalf("%d connections counted", n)
	}
}

func TestNBDDropEvery(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	disk := f.disks(s, f.vmRef(s))[1]
	if err := f.sim.SetSwitch(SwitchNBDDropEvery + "=3"); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, f.export(s, disk))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	for i := range 2 {
		if _, err := c.ReadAt(buf, int64(i)*4096); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if _, err := c.ReadAt(buf, 0); err == nil {
		t.Fatal("the third READ was answered")
	}
}

func TestNBDInUseRace(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	disk := f.disks(s, f.vmRef(s))[1]
	if err := f.sim.SetSwitch(SwitchNBDInUseRace); err != nil {
		t.Fatal(err)
	}
	e := f.export(s, disk)
	first, err := dial(t, e)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if c, err := dial(t, e); err == nil {
		c.Close()
		t.Fatal("a second connection opened while the first was being set up")
	}
	buf := make([]byte, 512)
	if _, err := first.ReadAt(buf, 0); err != nil { // the first is now set up
		t.Fatal(err)
	}
	second, err := dial(t, e)
	if err != nil {
		t.Fatalf("one after another: %v", err)
	}
	second.Close()
}
