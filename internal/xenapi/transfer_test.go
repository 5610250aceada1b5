package xenapi

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

const vmUUID = "c5db1298-3e97-53bb-4f97-bd039ca8c217"

// metadataTar is a tar holding ova.xml, as export_metadata sends.
func metadataTar(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	body := []byte("<value><struct><member><name>version</name></member></struct></value>")
	if err := tw.WriteHeader(&tar.Header{Name: "ova.xml", Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(body)
	_ = tw.Close()
	return b.Bytes()
}

// rawReply writes a whole HTTP response by hand (headers and body as
// given) on the hijacked connection, then closes it.
func rawReply(w http.ResponseWriter, head string, body []byte) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	_, _ = buf.WriteString(head + "\r\n")
	_, _ = buf.Write(body)
	_ = buf.Flush()
}

// authorised checks the session_id query parameter as xapi does.
func authorised(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Query().Get("session_id") != string(testSession) {
		http.Error(w, "Unauthorised", http.StatusUnauthorized)
		return false
	}
	return true
}

func TestExportMetadata(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	good := metadataTar(t)
	var serve func(w http.ResponseWriter, r *http.Request)
	f.mux.HandleFunc("GET /export_metadata", func(w http.ResponseWriter, r *http.Request) {
		if authorised(w, r) && r.URL.Query().Get("uuid") == vmUUID {
			serve(w, r)
		}
	})
	cases := []struct {
		name   string
		serve  func(w http.ResponseWriter, r *http.Request)
		errHas string
	}{
		{"ok", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(good) }, ""},
		{"truncated", func(w http.ResponseWriter, r *http.Request) {
			rawReply(w, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n", len(good)), good[:len(good)-100])
		}, "unexpected EOF"},
		{"announced too large", func(w http.ResponseWriter, r *http.Request) {
			rawReply(w, "HTTP/1.1 200 OK\r\nContent-Length: 999999\r\nConnection: close\r\n", good)
		}, "more than the limit"},
		{"too large, no length", func(w http.ResponseWriter, r *http.Request) {
			rawReply(w, "HTTP/1.1 200 OK\r\nConnection: close\r\n", append(good, make([]byte, 10000)...))
		}, "larger than"},
		{"not a tar", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(bytes.Repeat([]byte("x"), 1024)) }, "not a tar"},
		{"error page", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("HTTP/1.1 500 Internal Error\r\n\r\nVM_BAD_POWER_STATE"))
		}, "error page"},
		{"401", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusUnauthorized) }, "401"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			serve = c.serve
			got, err := s.ExportMetadata(context.Background(), vmUUID, int64(len(good))+4096)
			if c.errHas == "" {
				if err != nil || !bytes.Equal(got, good) {
					t.Fatalf("ExportMetadata = %d bytes, %v", len(got), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("err = %v, want %q", err, c.errHas)
			}
			if strings.Contains(err.Error(), string(testSession)) {
				t.Fatalf("error shows the session: %v", err)
			}
		})
	}
	if _, err := s.ExportMetadata(context.Background(), "web-01", 1<<20); err == nil || !strings.Contains(err.Error(), "not a VM UUID") {
		t.Fatalf("bad UUID: %v", err)
	}
}

func TestExportMetadataFollowsRedirectOnce(t *testing.T) {
	member, other := newFakeXapi(t), newFakeXapi(t)
	s := member.login(t)
	good := metadataTar(t)
	other.mux.HandleFunc("GET /export_metadata", func(w http.ResponseWriter, r *http.Request) {
		if authorised(w, r) {
			_, _ = w.Write(good)
		}
	})
	member.mux.HandleFunc("GET /export_metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.srv.URL+r.URL.RequestURI(), http.StatusFound)
	})
	got, err := s.ExportMetadata(context.Background(), vmUUID, 1<<20)
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("ExportMetadata via 302 = %d bytes, %v", len(got), err)
	}
	// A second hop is refused.
	other.mux.HandleFunc("GET /export_raw_vdi", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, member.srv.URL+"/elsewhere?"+r.URL.RawQuery, http.StatusFound)
	})
	member.mux.HandleFunc("GET /export_raw_vdi", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.srv.URL+r.URL.RequestURI(), http.StatusFound)
	})
	_, err = s.ExportRawVDI(context.Background(), vdiRef, 4096)
	if err == nil || !strings.Contains(err.Error(), "more than once") || strings.Contains(err.Error(), string(testSession)) {
		t.Fatalf("two redirects: %v", err)
	}
}

func TestExportRawVDI(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	const size = 3*65536 + 512
	disk := make([]byte, size)
	for i := range disk {
		disk[i] = byte(i * 7)
	}
	var body []byte
	f.mux.HandleFunc("GET /export_raw_vdi", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if !authorised(w, r) || q.Get("vdi") != string(vdiRef) || q.Get("format") != "raw" {
			http.Error(w, "bad query", http.StatusNotFound)
			return
		}
		// xapi: no Content-Length, no chunking, the body ends at close.
		rawReply(w, "HTTP/1.1 200 OK\r\nConnection: close\r\ntask-id: OpaqueRef:t\r\n", body)
	})
	read := func() ([]byte, error) {
		rc, err := s.ExportRawVDI(context.Background(), vdiRef, size)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}
	body = disk
	if got, err := read(); err != nil || !bytes.Equal(got, disk) {
		t.Fatalf("exact: %d bytes, %v", len(got), err)
	}
	body = disk[:size-1000]
	if got, err := read(); !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != size-1000 {
		t.Fatalf("short: %d bytes, %v", len(got), err)
	}
	body = append(append([]byte{}, disk...), 1, 2, 3)
	if _, err := read(); err == nil || !strings.Contains(err.Error(), "more than the disk's") {
		t.Fatalf("long: %v", err)
	}
	body = []byte("HTTP/1.1 500 Internal Error\r\n\r\nSR_BACKEND_FAILURE")
	if _, err := read(); err == nil || !strings.Contains(err.Error(), "error page") {
		t.Fatalf("error page: %v", err)
	}
	body = nil
	if _, err := read(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("empty: %v", err)
	}
}

func TestExportRawVDIRefusals(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	f.mux.HandleFunc("GET /export_raw_vdi", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("vdi") == "OpaqueRef:big" {
			w.Header().Set("Content-Length", "100")
			_, _ = w.Write(make([]byte, 100))
			return
		}
		http.Error(w, "Unauthorised", http.StatusUnauthorized)
	})
	_, err := s.ExportRawVDI(context.Background(), vdiRef, 4096)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "log in again") {
		t.Fatalf("401: %v", err)
	}
	if _, err := s.ExportRawVDI(context.Background(), "OpaqueRef:big", 4096); err == nil || !strings.Contains(err.Error(), "announces 100 bytes") {
		t.Fatalf("Content-Length mismatch: %v", err)
	}
	if _, err := s.ExportRawVDI(context.Background(), "../etc", 4096); err == nil || !strings.Contains(err.Error(), "not a XenAPI reference") {
		t.Fatalf("bad ref: %v", err)
	}
	f.srv.Close()
	_, err = s.ExportRawVDI(context.Background(), vdiRef, 4096)
	if err == nil || strings.Contains(err.Error(), string(testSession)) || strings.Contains(err.Error(), "session_id") {
		t.Fatalf("closed server: %v", err)
	}
	t.Logf("closed server: %v", err)
}

func TestExportRawVDIBrokenStream(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	f.mux.HandleFunc("GET /export_raw_vdi", func(w http.ResponseWriter, r *http.Request) {
		rawReply(w, "HTTP/1.1 200 OK\r\nConnection: close\r\n", make([]byte, 1000))
	})
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := s.ExportRawVDI(ctx, vdiRef, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 10)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.ReadAll(rc)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want one wrapping io.ErrUnexpectedEOF", err)
	}
}
