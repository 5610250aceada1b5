package nbd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// testSession is the secret part of test export names; no error may show it.
const testSession = "OpaqueRef:5ec7e7aa-0000-4000-8000-000000000001"

func testName(uuid string) string { return "/" + uuid + "?session_id=" + testSession }

// memExport serves bytes from memory and counts its reads and closes.
type memExport struct {
	data   []byte
	size   int64 // what Size reports; len(data) when 0
	reads  atomic.Int64
	closed atomic.Int64
	// fail, when set, is asked before each read (numbered from 1).
	fail func(n int64) error
}

func (m *memExport) Size() int64 {
	if m.size != 0 {
		return m.size
	}
	return int64(len(m.data))
}

func (m *memExport) ReadAt(p []byte, off int64) (int, error) {
	n := m.reads.Add(1)
	if m.fail != nil {
		if err := m.fail(n); err != nil {
			return 0, err
		}
	}
	return bytes.NewReader(m.data).ReadAt(p, off)
}

func (m *memExport) Close() error { m.closed.Add(1); return nil }

func randomBytes(n int, seed uint64) []byte {
	var key [32]byte
	key[0] = byte(seed)
	b := make([]byte, n)
	mrand.NewChaCha8(key).Read(b)
	return b
}

// startServer serves s on a loopback port until the test ends.
func startServer(t testing.TB, s *Server) (host string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Server.Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	a := l.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// exportServer serves the exports of m by name; other names fail to open.
func exportServer(t testing.TB, m map[string]ServerExport, conf *tls.Config) (*Server, Export) {
	t.Helper()
	s := &Server{
		TLSConfig: conf,
		Open: func(_ context.Context, name string) (ServerExport, error) {
			if e, ok := m[name]; ok {
				return e, nil
			}
			return nil, errors.New("no such export")
		},
		Logf: t.Logf,
	}
	host, port := startServer(t, s)
	return s, Export{Address: host, Port: port}
}

// testCert is a self-signed certificate as xapi makes one per host.
type testCert struct {
	pem    string
	keyPEM string
	conf   *tls.Config
}

func newTestCert(t testing.TB, subject string) testCert {
	t.Helper()
	c, err := makeTestCert(subject)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func makeTestCert(subject string) (testCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return testCert{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: subject},
		DNSNames:              []string{subject},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Unix(0, 0),
		NotAfter:              time.Unix(1<<33, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return testCert{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return testCert{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return testCert{}, err
	}
	conf := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return testCert{pem: string(certPEM), keyPEM: string(keyPEM), conf: conf}, nil
}

// eventually waits up to 5 s for cond.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting until %s", what)
}

func addr(e Export) string { return net.JoinHostPort(e.Address, strconv.Itoa(e.Port)) }
