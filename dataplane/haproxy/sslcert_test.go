package haproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testcerts"
	"github.com/fulcrumlb/fulcrum/internal/testenv"
)

// SetSSLCert swaps the certificate new handshakes get, without a reload.
func TestRuntimeSetSSLCert(t *testing.T) {
	bin := testenv.RequireHAProxy(t)
	dir := t.TempDir()
	c1 := testcerts.New(t, testcerts.Spec{Hosts: []string{"www.example.test"}})
	c2 := testcerts.New(t, testcerts.Spec{Hosts: []string{"www.example.test"}, PKCS8: true})
	crt := filepath.Join(dir, "cert_1.pem")
	if err := os.WriteFile(crt, []byte(c1.CertPEM+c1.KeyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	rt := Runtime{Socket: filepath.Join(dir, "stats.sock")}
	cfg := Config{Global: Global{StatsSocket: rt.Socket}, LoadBalancers: []LoadBalancer{{ID: "lb_1", VIP: netip.MustParseAddr("127.0.0.1"), Enabled: true,
		Listeners: []Listener{{ID: "lsn_1", Protocol: "https", Port: port, CertFiles: []string{crt}}}}}}
	text, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, text, 0o600); err != nil {
		t.Fatal(err)
	}
	p := NewProcess(ProcessConfig{Binary: bin, ConfigPath: cfgPath, Dir: filepath.Join(dir, "run")})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())

	leaf := func() *x509.Certificate {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", "127.0.0.1:"+strconv.Itoa(port),
			&tls.Config{ServerName: "www.example.test", InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	if !leaf().Equal(c1.Cert) {
		t.Fatal("the first certificate is not served")
	}
	// Blank lines in the bundle are fine (the CLI payload ends at one).
	if err := rt.SetSSLCert(ctx, crt, c2.CertPEM+"\n\n"+c2.KeyPEM); err != nil {
		t.Fatal(err)
	}
	if !leaf().Equal(c2.Cert) {
		t.Fatal("the new certificate is not served after commit")
	}
	// A key that does not match is refused and changes nothing.
	if err := rt.SetSSLCert(ctx, crt, c1.CertPEM+c2.KeyPEM); err == nil {
		t.Fatal("a mismatched key pair was accepted")
	}
	if !leaf().Equal(c2.Cert) {
		t.Fatal("a refused update changed the served certificate")
	}
	if err := rt.SetSSLCert(ctx, filepath.Join(dir, "unknown.pem"), c2.CertPEM+c2.KeyPEM); err == nil {
		t.Fatal("a file HAProxy does not know was accepted")
	}
}
