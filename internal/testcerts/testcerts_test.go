package testcerts

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

func TestSelfSigned(t *testing.T) {
	certPEM, keyPEM := SelfSigned(t, "www.example.test", "api.example.test")
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode([]byte(keyPEM)); b == nil || b.Type != "EC PRIVATE KEY" {
		t.Fatalf("key PEM: %q", keyPEM)
	}
	c := pair.Leaf
	if c.Subject.CommonName != "www.example.test" || len(c.DNSNames) != 2 || c.DNSNames[1] != "api.example.test" {
		t.Fatalf("names: %v %v", c.Subject, c.DNSNames)
	}
	if now := time.Now(); now.Before(c.NotBefore) || now.After(c.NotAfter) {
		t.Fatalf("not valid now: %s to %s", c.NotBefore, c.NotAfter)
	}
	if _, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("key %T, want ECDSA", pair.PrivateKey)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c)
	if _, err := c.Verify(x509.VerifyOptions{DNSName: "api.example.test", Roots: roots}); err != nil {
		t.Fatal(err)
	}
}

func TestExpired(t *testing.T) {
	certPEM, keyPEM := Expired(t, "old.example.test")
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	if !pair.Leaf.NotAfter.Before(time.Now()) {
		t.Fatalf("not expired: valid until %s", pair.Leaf.NotAfter)
	}
}

func TestChainAndRSA(t *testing.T) {
	root := New(t, Spec{Hosts: []string{"Test Root"}, CA: true})
	inter := New(t, Spec{Hosts: []string{"Test Intermediate"}, CA: true, Parent: root, RSABits: 2048})
	leaf := New(t, Spec{Hosts: []string{"chain.example.test"}, Parent: inter, PKCS8: true})
	if b, _ := pem.Decode([]byte(inter.KeyPEM)); b == nil || b.Type != "RSA PRIVATE KEY" {
		t.Fatalf("RSA key PEM: %q", inter.KeyPEM)
	}
	if _, ok := inter.Key.(*rsa.PrivateKey); !ok {
		t.Fatalf("intermediate key %T, want RSA", inter.Key)
	}
	if b, _ := pem.Decode([]byte(leaf.KeyPEM)); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("PKCS #8 key PEM: %q", leaf.KeyPEM)
	}
	if _, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.KeyPEM)); err != nil {
		t.Fatal(err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root.Cert)
	inters.AddCert(inter.Cert)
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: "chain.example.test", Roots: roots, Intermediates: inters}); err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: "chain.example.test", Roots: roots}); err == nil {
		t.Fatal("the leaf verified without its intermediate")
	}
}
