package xapisim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// ServeConfig says where serve listens.
type ServeConfig struct {
	Listen    string // HTTP(S) address, e.g. 127.0.0.1:0
	NBDListen string // NBD address; "" serves no NBD
	Plain     bool   // plain HTTP (loopback only)
	Logf      func(format string, args ...any)
}

// ServeInfo is DIR/serve.json, written once serve listens.
type ServeInfo struct {
	URL         string `json:"url"`
	NBD         string `json:"nbd"`
	Fingerprint string `json:"fingerprint"` // sha256 hex of the certificate's DER
	CA          string `json:"ca"`          // path of cert.pem
}

// Serve serves the simulator until ctx ends.
func (s *Sim) Serve(ctx context.Context, cfg ServeConfig) error {
	if cfg.Plain && !isLoopback(cfg.Listen) {
		return fmt.Errorf("--plain serves plain HTTP, which is allowed only on a loopback address, not %q", cfg.Listen)
	}
	// Connections of an earlier serve are gone; their attachments stay,
	// as a crashed xapi-nbd leaves them.
	if err := s.Update(func(st *State) error { st.NBDConns = 0; return nil }); err != nil {
		return err
	}
	cert, certPEM, err := s.certificate()
	if err != nil {
		return err
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	h := &Handler{Sim: s, Logf: cfg.Logf}
	info := ServeInfo{Fingerprint: fingerprint(cert.Certificate[0]), CA: filepath.Join(s.Dir, "cert.pem")}
	if cfg.NBDListen != "" {
		nl, err := net.Listen("tcp", cfg.NBDListen)
		if err != nil {
			return fmt.Errorf("NBD listener: %w", err)
		}
		addr := nl.Addr().(*net.TCPAddr)
		h.NBD = &NBDInfo{Address: addr.IP.String(), Port: addr.Port, CertPEM: string(certPEM), Subject: "localhost"}
		info.NBD = addr.String()
		x := &NBDExports{Sim: s}
		go func() { _ = x.Serve(nl, tlsConf, cfg.Logf) }()
		defer x.Close()
		defer nl.Close()
	}
	return s.serveHTTP(ctx, cfg, h, tlsConf, info)
}

func (s *Sim) serveHTTP(ctx context.Context, cfg ServeConfig, h *Handler, tlsConf *tls.Config, info ServeInfo) error {
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("HTTP listener: %w", err)
	}
	scheme := "http"
	if !cfg.Plain {
		scheme = "https"
		l = tls.NewListener(l, tlsConf)
	}
	info.URL = scheme + "://" + l.Addr().String()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second,
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}} // HTTP/1.1 only, as xapi
	b, _ := json.MarshalIndent(info, "", " ")
	if err := writeFileAtomic(s.Dir, "serve.json", append(b, '\n')); err != nil {
		l.Close()
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	os.Remove(filepath.Join(s.Dir, "serve.json"))
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// certificate loads DIR/cert.pem and key.pem, making them first when
// missing: self-signed, for localhost, 127.0.0.1 and ::1.
func (s *Sim) certificate() (tls.Certificate, []byte, error) {
	certPath, keyPath := filepath.Join(s.Dir, "cert.pem"), filepath.Join(s.Dir, "key.pem")
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		if err := s.makeCertificate(certPath, keyPath); err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("make the serving certificate: %w", err)
		}
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("serving certificate %s: %w (delete cert.pem and key.pem to make new ones)", certPath, err)
	}
	certPEM, err := os.ReadFile(certPath)
	return cert, certPEM, err
}

func (s *Sim) makeCertificate(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return err
	}
	now := s.Clock.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// ReadServeInfo reads DIR/serve.json.
func ReadServeInfo(dir string) (*ServeInfo, error) {
	b, err := os.ReadFile(filepath.Join(dir, "serve.json"))
	if err != nil {
		return nil, fmt.Errorf("serve.json: %w (is xapisim serve running on %s?)", err, dir)
	}
	var info ServeInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("serve.json: %w", err)
	}
	return &info, nil
}
