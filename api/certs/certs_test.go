package certs

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/api/validate"
)

// testNow is the validation time used by the tests.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// certSpec describes a certificate to create.
type certSpec struct {
	cn        string
	dnsNames  []string
	notBefore time.Time
	notAfter  time.Time
	isCA      bool
}

// issued is a certificate with its key and PEM encoding.
type issued struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  string
}

// issue creates a certificate for key from spec, signed by parent, or
// self-signed if parent is nil.
func issue(t testing.TB, spec certSpec, key crypto.Signer, parent *issued) *issued {
	t.Helper()
	if spec.notBefore.IsZero() {
		spec.notBefore = testNow.Add(-24 * time.Hour)
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = testNow.Add(90 * 24 * time.Hour)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.cn, Organization: []string{"Fulcrum Test"}},
		DNSNames:              spec.dnsNames,
		NotBefore:             spec.notBefore,
		NotAfter:              spec.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  spec.isCA,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if spec.isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issued{cert: cert, key: key, pem: encode("CERTIFICATE", der)}
}

func encode(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pkcs8(t testing.TB, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return encode("PRIVATE KEY", der)
}

func sec1(t testing.TB, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return encode("EC PRIVATE KEY", der)
}

func pkcs1(key *rsa.PrivateKey) string {
	return encode("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
}

func newECDSA(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newRSA(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fixtures holds the certificates and keys shared by the Parse tests.
type fixtures struct {
	rsaKey, rsaKey2, rsaWeak *rsa.PrivateKey
	ecKey, ecKey2, ec384     *ecdsa.PrivateKey
	edKey                    ed25519.PrivateKey

	rsaLeaf, ecLeaf, ec384Leaf, edLeaf *issued
	root, intermediate, chainLeaf      *issued
	weakLeaf, expired, notYetValid     *issued
	notCA, signedByNotCA               *issued
}

func newFixtures(t testing.TB) *fixtures {
	t.Helper()
	f := &fixtures{
		rsaKey:  newRSA(t, 2048),
		rsaKey2: newRSA(t, 2048),
		rsaWeak: newRSA(t, 1024),
		ecKey:   newECDSA(t, elliptic.P256()),
		ecKey2:  newECDSA(t, elliptic.P256()),
		ec384:   newECDSA(t, elliptic.P384()),
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.edKey = edKey

	f.rsaLeaf = issue(t, certSpec{cn: "rsa.example.com", dnsNames: []string{"rsa.example.com", "www.rsa.example.com"}}, f.rsaKey, nil)
	f.ecLeaf = issue(t, certSpec{cn: "ec.example.com", dnsNames: []string{"ec.example.com"}}, f.ecKey, nil)
	f.ec384Leaf = issue(t, certSpec{cn: "ec384.example.com", dnsNames: []string{"*.example.com"}}, f.ec384, nil)
	f.edLeaf = issue(t, certSpec{cn: "ed.example.com", dnsNames: []string{"ed.example.com"}}, f.edKey, nil)

	f.root = issue(t, certSpec{cn: "Test Root CA", isCA: true, notAfter: testNow.Add(10 * 365 * 24 * time.Hour)}, newECDSA(t, elliptic.P384()), nil)
	f.intermediate = issue(t, certSpec{cn: "Test Intermediate CA", isCA: true}, newECDSA(t, elliptic.P256()), f.root)
	f.chainLeaf = issue(t, certSpec{cn: "app.example.com", dnsNames: []string{"app.example.com"}}, f.ecKey2, f.intermediate)

	f.weakLeaf = issue(t, certSpec{cn: "weak.example.com"}, f.rsaWeak, nil)
	f.expired = issue(t, certSpec{
		cn:        "old.example.com",
		notBefore: time.Date(2023, 1, 2, 0, 0, 0, 0, time.UTC),
		notAfter:  time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
	}, f.ecKey, nil)
	f.notYetValid = issue(t, certSpec{
		cn:        "new.example.com",
		notBefore: time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC),
		notAfter:  time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC),
	}, f.ecKey, nil)
	f.notCA = issue(t, certSpec{cn: "not-a-ca.example.com"}, newECDSA(t, elliptic.P256()), nil)
	f.signedByNotCA = issue(t, certSpec{cn: "victim.example.com"}, f.ecKey, f.notCA)
	return f
}

func TestParseValid(t *testing.T) {
	f := newFixtures(t)
	ecParams := "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"

	tests := []struct {
		name     string
		cert     string
		key      string
		now      time.Time
		leaf     *issued
		keyType  string
		dnsNames []string
	}{
		{name: "rsa pkcs1", cert: f.rsaLeaf.pem, key: pkcs1(f.rsaKey), leaf: f.rsaLeaf, keyType: "rsa-2048", dnsNames: []string{"rsa.example.com", "www.rsa.example.com"}},
		{name: "rsa pkcs8", cert: f.rsaLeaf.pem, key: pkcs8(t, f.rsaKey), leaf: f.rsaLeaf, keyType: "rsa-2048"},
		{name: "ecdsa sec1", cert: f.ecLeaf.pem, key: sec1(t, f.ecKey), leaf: f.ecLeaf, keyType: "ecdsa-p256", dnsNames: []string{"ec.example.com"}},
		{name: "ecdsa pkcs8", cert: f.ecLeaf.pem, key: pkcs8(t, f.ecKey), leaf: f.ecLeaf, keyType: "ecdsa-p256"},
		{name: "ecdsa with EC PARAMETERS", cert: f.ecLeaf.pem, key: ecParams + sec1(t, f.ecKey), leaf: f.ecLeaf, keyType: "ecdsa-p256"},
		{name: "ecdsa p384", cert: f.ec384Leaf.pem, key: sec1(t, f.ec384), leaf: f.ec384Leaf, keyType: "ecdsa-p384", dnsNames: []string{"*.example.com"}},
		{name: "ed25519", cert: f.edLeaf.pem, key: pkcs8(t, f.edKey), leaf: f.edLeaf, keyType: "ed25519"},
		{name: "chain leaf+intermediate", cert: f.chainLeaf.pem + f.intermediate.pem, key: sec1(t, f.ecKey2), leaf: f.chainLeaf, keyType: "ecdsa-p256"},
		{name: "chain leaf+intermediate+root", cert: f.chainLeaf.pem + f.intermediate.pem + f.root.pem, key: sec1(t, f.ecKey2), leaf: f.chainLeaf, keyType: "ecdsa-p256"},
		{name: "surrounding whitespace and CRLF", cert: "\r\n  " + strings.ReplaceAll(f.chainLeaf.pem, "\n", "\r\n") + "\n\n\t" + f.intermediate.pem + "  \n", key: "\n" + sec1(t, f.ecKey2) + "\n\n", leaf: f.chainLeaf, keyType: "ecdsa-p256"},
		{name: "no trailing newline", cert: strings.TrimSpace(f.ecLeaf.pem), key: strings.TrimSpace(sec1(t, f.ecKey)), leaf: f.ecLeaf, keyType: "ecdsa-p256"},
		{name: "at NotBefore", cert: f.ecLeaf.pem, key: sec1(t, f.ecKey), now: f.ecLeaf.cert.NotBefore, leaf: f.ecLeaf, keyType: "ecdsa-p256"},
		{name: "at NotAfter", cert: f.ecLeaf.pem, key: sec1(t, f.ecKey), now: f.ecLeaf.cert.NotAfter, leaf: f.ecLeaf, keyType: "ecdsa-p256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = testNow
			}
			info, err := Parse(tt.cert, tt.key, now)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			sum := sha256.Sum256(tt.leaf.cert.Raw)
			want := Info{
				FingerprintSHA256: hex.EncodeToString(sum[:]),
				Subject:           tt.leaf.cert.Subject.String(),
				Issuer:            tt.leaf.cert.Issuer.String(),
				NotBefore:         tt.leaf.cert.NotBefore,
				NotAfter:          tt.leaf.cert.NotAfter,
				KeyType:           tt.keyType,
			}
			if info.FingerprintSHA256 != want.FingerprintSHA256 || len(info.FingerprintSHA256) != 64 ||
				strings.ContainsAny(info.FingerprintSHA256, ":ABCDEF") {
				t.Errorf("FingerprintSHA256 = %q, want %q", info.FingerprintSHA256, want.FingerprintSHA256)
			}
			if info.Subject != want.Subject || !strings.Contains(info.Subject, "CN="+tt.leaf.cert.Subject.CommonName) {
				t.Errorf("Subject = %q, want %q", info.Subject, want.Subject)
			}
			if info.Issuer != want.Issuer {
				t.Errorf("Issuer = %q, want %q", info.Issuer, want.Issuer)
			}
			if !info.NotBefore.Equal(want.NotBefore) || !info.NotAfter.Equal(want.NotAfter) {
				t.Errorf("validity = %v..%v, want %v..%v", info.NotBefore, info.NotAfter, want.NotBefore, want.NotAfter)
			}
			if info.KeyType != want.KeyType {
				t.Errorf("KeyType = %q, want %q", info.KeyType, want.KeyType)
			}
			if tt.dnsNames != nil && strings.Join(info.DNSNames, ",") != strings.Join(tt.dnsNames, ",") {
				t.Errorf("DNSNames = %q, want %q", info.DNSNames, tt.dnsNames)
			}
		})
	}

	t.Run("chain issuer", func(t *testing.T) {
		info, err := Parse(f.chainLeaf.pem+f.intermediate.pem, sec1(t, f.ecKey2), testNow)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(info.Issuer, "CN=Test Intermediate CA") {
			t.Errorf("Issuer = %q", info.Issuer)
		}
	})

	t.Run("DNSNames is a copy", func(t *testing.T) {
		info, err := Parse(f.rsaLeaf.pem, pkcs1(f.rsaKey), testNow)
		if err != nil {
			t.Fatal(err)
		}
		info.DNSNames[0] = "changed"
		if f.rsaLeaf.cert.DNSNames[0] == "changed" {
			t.Error("DNSNames aliases the parsed certificate")
		}
	})
}

// fieldErr is an expected error: the field and a substring of the message.
type fieldErr struct {
	field, msg string
}

func TestParseErrors(t *testing.T) {
	f := newFixtures(t)
	ecKeyPEM := sec1(t, f.ecKey)
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	encryptedLegacy := string(pem.EncodeToMemory(&pem.Block{
		Type:    "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   []byte("ciphertext"),
	}))
	encryptedPKCS8 := encode("ENCRYPTED PRIVATE KEY", []byte("ciphertext"))
	certWithHeaders := string(pem.EncodeToMemory(&pem.Block{
		Type:    "CERTIFICATE",
		Headers: map[string]string{"Comment": "hello"},
		Bytes:   f.ecLeaf.cert.Raw,
	}))
	badDNS := issue(t, certSpec{cn: "bad", dnsNames: []string{"ok.example.com", "evil.example.com\nbind :80"}}, f.ecKey, nil)
	badBase64 := "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"
	const (
		cert = FieldCertificate
		key  = FieldPrivateKey
	)

	tests := []struct {
		name string
		cert string
		key  string
		want []fieldErr
	}{
		{"both empty", "", "", []fieldErr{{cert, "is required"}, {key, "is required"}}},
		{"whitespace only", " \n\t\r\n", "\n", []fieldErr{{cert, "is required"}, {key, "is required"}}},
		{"cert too large", strings.Repeat(" ", MaxPEMSize+1), ecKeyPEM, []fieldErr{{cert, "must be at most 65536 bytes"}}},
		{"key too large", f.ecLeaf.pem, ecKeyPEM + strings.Repeat("\n", MaxPEMSize), []fieldErr{{key, "must be at most 65536 bytes"}}},
		{"cert not PEM", "hello", ecKeyPEM, []fieldErr{{cert, "must contain only PEM blocks; found other data"}}},
		{"text before cert", "subject=CN = ec.example.com\n" + f.ecLeaf.pem, ecKeyPEM, []fieldErr{{cert, "found other data"}}},
		{"text after cert", f.ecLeaf.pem + "trailing", ecKeyPEM, []fieldErr{{cert, "found other data"}}},
		{"text between certs", f.chainLeaf.pem + "Bag Attributes\n" + f.intermediate.pem, sec1(t, f.ecKey2), []fieldErr{{cert, "found other data"}}},
		{"text after key", f.ecLeaf.pem, ecKeyPEM + "x", []fieldErr{{key, "found other data"}}},
		{"text after END line", f.ecLeaf.pem[:len(f.ecLeaf.pem)-1] + " junk\n", ecKeyPEM, []fieldErr{{cert, "contains a malformed PEM block"}}},
		{"bad base64", badBase64, ecKeyPEM, []fieldErr{{cert, "contains a malformed PEM block"}}},
		{"bad block hides good block", badBase64 + f.ecLeaf.pem, ecKeyPEM, []fieldErr{{cert, "contains a malformed PEM block"}}},
		{"unterminated block", "-----BEGIN CERTIFICATE-----\nMIIB\n", ecKeyPEM, []fieldErr{{cert, "contains a malformed PEM block"}}},
		{"mismatched END", strings.Replace(f.ecLeaf.pem, "END CERTIFICATE", "END X509 CRL", 1), ecKeyPEM, []fieldErr{{cert, "contains a malformed PEM block"}}},
		{"not DER", encode("CERTIFICATE", []byte("not a certificate")), ecKeyPEM, []fieldErr{{cert, "certificate 1 is not a valid X.509 certificate"}}},
		{"second not DER", f.ecLeaf.pem + encode("CERTIFICATE", []byte{0x30, 0x00}), ecKeyPEM, []fieldErr{{cert, "certificate 2 is not a valid X.509 certificate"}}},
		{"key in cert field", ecKeyPEM, ecKeyPEM, []fieldErr{{cert, `found a "EC PRIVATE KEY" block (the private key belongs in private_key)`}}},
		{"key after cert in cert field", f.ecLeaf.pem + ecKeyPEM, ecKeyPEM, []fieldErr{{cert, `found a "EC PRIVATE KEY" block`}}},
		{"CRL in cert field", encode("X509 CRL", []byte{1}), ecKeyPEM, []fieldErr{{cert, `must contain only CERTIFICATE blocks; found a "X509 CRL" block`}}},
		{"cert headers", certWithHeaders, ecKeyPEM, []fieldErr{{cert, "certificate 1 must not have PEM headers"}}},
		{"too many certs", strings.Repeat(f.ecLeaf.pem, MaxChainLength+1), ecKeyPEM, []fieldErr{{cert, "must contain at most 10 certificates"}}},
		{"expired", f.expired.pem, ecKeyPEM, []fieldErr{{cert, "expired on 2024-01-02T03:04:05Z"}}},
		{"not yet valid", f.notYetValid.pem, ecKeyPEM, []fieldErr{{cert, "is not valid until 2025-07-01T00:00:00Z"}}},
		{"weak rsa", f.weakLeaf.pem, pkcs1(f.rsaWeak), []fieldErr{
			{cert, "uses a 1024-bit RSA key; RSA keys must have 2048 to 8192 bits"},
			{key, "uses a 1024-bit RSA key"},
		}},
		{"bad DNS name", badDNS.pem, ecKeyPEM, []fieldErr{{cert, `contains a DNS name with spaces, control or non-ASCII characters: "evil.example.com\nbind :80"`}}},
		{"wrong chain order", f.intermediate.pem + f.chainLeaf.pem, sec1(t, f.ecKey2), []fieldErr{
			{cert, "certificate 1 is not signed by certificate 2 (the chain must start with the server certificate"},
		}},
		{"unrelated intermediate", f.chainLeaf.pem + f.root.pem, sec1(t, f.ecKey2), []fieldErr{{cert, "certificate 1 is not signed by certificate 2"}}},
		{"root does not sign leaf", f.chainLeaf.pem + f.intermediate.pem + f.intermediate.pem, sec1(t, f.ecKey2), []fieldErr{{cert, "certificate 2 is not signed by certificate 3"}}},
		{"issuer is not a CA", f.signedByNotCA.pem + f.notCA.pem, ecKeyPEM, []fieldErr{{cert, "certificate 1 is not signed by certificate 2"}}},
		{"mismatched ecdsa key", f.ecLeaf.pem, sec1(t, f.ecKey2), []fieldErr{{key, "does not match the certificate's public key"}}},
		{"mismatched rsa key", f.rsaLeaf.pem, pkcs1(f.rsaKey2), []fieldErr{{key, "does not match the certificate's public key"}}},
		{"mismatched key type", f.rsaLeaf.pem, ecKeyPEM, []fieldErr{{key, "does not match the certificate's public key"}}},
		{"chain with intermediate's key", f.chainLeaf.pem + f.intermediate.pem, pkcs8(t, f.intermediate.key), []fieldErr{{key, "does not match"}}},
		{"encrypted legacy key", f.rsaLeaf.pem, encryptedLegacy, []fieldErr{{key, "is encrypted; provide the private key without a passphrase"}}},
		{"encrypted pkcs8 key", f.rsaLeaf.pem, encryptedPKCS8, []fieldErr{{key, "is encrypted"}}},
		{"cert in key field", f.ecLeaf.pem, f.ecLeaf.pem, []fieldErr{{key, "must contain only a private key; found a CERTIFICATE block (certificates belong in certificate)"}}},
		{"combined pem in key field", f.ecLeaf.pem, ecKeyPEM + f.ecLeaf.pem, []fieldErr{{key, "found a CERTIFICATE block"}}},
		{"two keys", f.ecLeaf.pem, ecKeyPEM + ecKeyPEM, []fieldErr{{key, "must contain exactly one private key"}}},
		{"only EC PARAMETERS", f.ecLeaf.pem, "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n", []fieldErr{{key, "must contain a private key"}}},
		{"public key", f.ecLeaf.pem, encode("PUBLIC KEY", []byte{1}), []fieldErr{{key, `found a "PUBLIC KEY" block`}}},
		{"key headers", f.ecLeaf.pem, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"X": "y"}, Bytes: []byte{1}})), []fieldErr{{key, "must not have PEM headers"}}},
		{"bad pkcs1", f.rsaLeaf.pem, encode("RSA PRIVATE KEY", []byte("junk")), []fieldErr{{key, "is not a valid PKCS#1 RSA private key"}}},
		{"pkcs8 labelled pkcs1", f.rsaLeaf.pem, strings.ReplaceAll(pkcs8(t, f.rsaKey), "PRIVATE KEY", "RSA PRIVATE KEY"), []fieldErr{{key, "is not a valid PKCS#1 RSA private key"}}},
		{"bad sec1", f.ecLeaf.pem, encode("EC PRIVATE KEY", []byte("junk")), []fieldErr{{key, "is not a valid SEC 1 EC private key"}}},
		{"bad pkcs8", f.ecLeaf.pem, encode("PRIVATE KEY", []byte("junk")), []fieldErr{{key, "is not a valid PKCS#8 private key"}}},
		{"x25519 key", f.ecLeaf.pem, pkcs8(t, x25519), []fieldErr{{key, "uses an unsupported key type"}}},
		{"errors in both fields", f.expired.pem, encryptedPKCS8, []fieldErr{{cert, "expired on"}, {key, "is encrypted"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Parse(tt.cert, tt.key, testNow)
			if info != nil {
				t.Errorf("Parse returned info %+v with error", info)
			}
			var ve *validate.Error
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error = %v (%T), want *validate.Error", err, err)
			}
			if len(ve.Fields) != len(tt.want) {
				t.Fatalf("errors = %q, want %q", ve.Fields, tt.want)
			}
			for i, w := range tt.want {
				got := ve.Fields[i]
				if got.Field != w.field || !strings.Contains(got.Message, w.msg) {
					t.Errorf("error %d = %q, want field %q with message containing %q", i, got, w.field, w.msg)
				}
			}
			// Messages never echo key material.
			if strings.Contains(err.Error(), "MII") {
				t.Errorf("error message contains PEM data: %v", err)
			}
		})
	}
}

func TestParseErrorString(t *testing.T) {
	f := newFixtures(t)
	_, err := Parse(f.ecLeaf.pem, sec1(t, f.ecKey2), testNow)
	if got, want := err.Error(), "private_key: does not match the certificate's public key"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	_, err = Parse(f.expired.pem, sec1(t, f.ecKey), testNow)
	if got, want := err.Error(), "certificate: expired on 2024-01-02T03:04:05Z"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestSubjectSanitized(t *testing.T) {
	key := newECDSA(t, elliptic.P256())
	c := issue(t, certSpec{cn: "evil\ncn\u2028x"}, key, nil)
	info, err := Parse(c.pem, sec1(t, key), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if want := "CN=evil\uFFFDcn\uFFFDx,O=Fulcrum Test"; info.Subject != want || info.Issuer != want {
		t.Errorf("Subject, Issuer = %q, %q; want %q", info.Subject, info.Issuer, want)
	}
}

func TestPublicKeyType(t *testing.T) {
	huge := &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), MaxRSABits), E: 65537} // 8193 bits
	max := &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), MaxRSABits-1), E: 65537}
	p521 := newECDSA(t, elliptic.P521())
	tests := []struct {
		pub      crypto.PublicKey
		typ, msg string
	}{
		{huge, "", "uses a 8193-bit RSA key; RSA keys must have 2048 to 8192 bits"},
		{max, "rsa-8192", ""},
		{p521.Public(), "ecdsa-p521", ""},
		{"not a key", "", msgUnsupportedKey},
		{nil, "", msgUnsupportedKey},
	}
	for _, tt := range tests {
		typ, msg := publicKeyType(tt.pub)
		if typ != tt.typ || msg != tt.msg {
			t.Errorf("publicKeyType(%T) = %q, %q; want %q, %q", tt.pub, typ, msg, tt.typ, tt.msg)
		}
	}
}

// FuzzParse checks that Parse never panics and that it either returns an
// Info or a *validate.Error naming only the certificate and private_key
// fields.
func FuzzParse(f *testing.F) {
	key := newECDSA(f, elliptic.P256())
	leaf := issue(f, certSpec{cn: "fuzz.example.com", dnsNames: []string{"fuzz.example.com"}}, key, nil)
	keyPEM := sec1(f, key)
	f.Add(leaf.pem, keyPEM)
	f.Add(leaf.pem+leaf.pem, pkcs8(f, key))
	f.Add("", "")
	f.Add("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "-----BEGIN PRIVATE KEY-----\n\n-----END PRIVATE KEY-----")
	f.Add(leaf.pem[:100], keyPEM[10:])
	f.Add("x"+leaf.pem, keyPEM+"x")
	f.Fuzz(func(t *testing.T, certPEM, keyPEM string) {
		info, err := Parse(certPEM, keyPEM, testNow)
		if err == nil {
			if info == nil || len(info.FingerprintSHA256) != 64 || info.KeyType == "" {
				t.Fatalf("Parse succeeded with info %+v", info)
			}
			return
		}
		if info != nil {
			t.Fatalf("Parse returned info and error %v", err)
		}
		var ve *validate.Error
		if !errors.As(err, &ve) || len(ve.Fields) == 0 || len(ve.Fields) > 2 {
			t.Fatalf("Parse error = %#v", err)
		}
		for _, fe := range ve.Fields {
			if fe.Field != FieldCertificate && fe.Field != FieldPrivateKey {
				t.Fatalf("unexpected field %q", fe.Field)
			}
		}
	})
}
