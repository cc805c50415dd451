// Package testcerts makes X.509 certificates and keys for tests: self-signed
// server certificates, expired ones, RSA ones and chains signed by a test CA.
// Only tests import it.
//
// Imports: nothing of Fulcrum's (internal/importrules enforces it).
package testcerts

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// Spec describes a certificate to make. The zero value is a self-signed
// ECDSA P-256 server certificate with no name, valid from an hour ago for a
// day.
type Spec struct {
	// Hosts are the DNS names; the first is also the subject's common name.
	Hosts []string
	// NotBefore and NotAfter bound the validity; zero: an hour ago and a day
	// from now.
	NotBefore, NotAfter time.Time
	// RSABits, when set, makes an RSA key of that size instead of ECDSA P-256.
	RSABits int
	// CA makes a certificate authority (may sign others) instead of a server
	// certificate.
	CA bool
	// Parent signs the certificate; nil: self-signed.
	Parent *Cert
	// PKCS8 encodes KeyPEM as PKCS #8 ("PRIVATE KEY") instead of SEC 1 ("EC
	// PRIVATE KEY") or PKCS #1 ("RSA PRIVATE KEY").
	PKCS8 bool
}

// Cert is a certificate with its key, parsed and as PEM.
type Cert struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM string
	KeyPEM  string
}

// SelfSigned returns a fresh self-signed ECDSA P-256 server certificate for
// hosts, valid from an hour ago for a day, and its SEC 1 key, as PEM.
func SelfSigned(tb testing.TB, hosts ...string) (certPEM, keyPEM string) {
	tb.Helper()
	c := New(tb, Spec{Hosts: hosts})
	return c.CertPEM, c.KeyPEM
}

// Expired is SelfSigned for a certificate valid from 30 days ago until
// yesterday.
func Expired(tb testing.TB, hosts ...string) (certPEM, keyPEM string) {
	tb.Helper()
	now := time.Now()
	c := New(tb, Spec{Hosts: hosts, NotBefore: now.Add(-30 * 24 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	return c.CertPEM, c.KeyPEM
}

// New makes the certificate spec describes.
func New(tb testing.TB, spec Spec) *Cert {
	tb.Helper()
	var key crypto.Signer
	var err error
	if spec.RSABits > 0 {
		key, err = rsa.GenerateKey(rand.Reader, spec.RSABits)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	if spec.NotBefore.IsZero() {
		spec.NotBefore = now.Add(-time.Hour)
	}
	if spec.NotAfter.IsZero() {
		spec.NotAfter = now.Add(24 * time.Hour)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		DNSNames:     spec.Hosts,
		NotBefore:    spec.NotBefore,
		NotAfter:     spec.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if len(spec.Hosts) > 0 {
		tmpl.Subject = pkix.Name{CommonName: spec.Hosts[0]}
	}
	if spec.CA {
		tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	parent, parentKey := tmpl, key
	if spec.Parent != nil {
		parent, parentKey = spec.Parent.Cert, spec.Parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &Cert{Cert: cert, Key: key, CertPEM: encode("CERTIFICATE", der), KeyPEM: keyPEM(tb, key, spec.PKCS8)}
}

func keyPEM(tb testing.TB, key crypto.Signer, pkcs8 bool) string {
	tb.Helper()
	if pkcs8 {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			tb.Fatal(err)
		}
		return encode("PRIVATE KEY", der)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return encode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			tb.Fatal(err)
		}
		return encode("EC PRIVATE KEY", der)
	}
	tb.Fatalf("testcerts: no encoding for %T", key)
	return ""
}

func encode(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}
