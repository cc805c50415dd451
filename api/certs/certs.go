// Package certs validates TLS certificate chains and private keys uploaded
// by users before they are stored and handed to HAProxy.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fulcrumlb/fulcrum/api/validate"
)

// Field names used in the errors returned by Parse.
const (
	FieldCertificate = "certificate"
	FieldPrivateKey  = "private_key"
)

// Limits enforced by Parse.
const (
	// MaxPEMSize is the maximum size in bytes of each PEM input.
	MaxPEMSize = 64 << 10
	// MaxChainLength is the maximum number of certificates in a chain.
	MaxChainLength = 10
	// MinRSABits is the minimum RSA key size.
	MinRSABits = 2048
	// MaxRSABits is the maximum RSA key size. Larger keys make every TLS
	// handshake expensive for the shared load balancer.
	MaxRSABits = 8192
)

// Info describes a validated certificate chain.
type Info struct {
	// FingerprintSHA256 is the SHA-256 digest of the leaf certificate's DER
	// encoding, in lowercase hexadecimal without colons.
	FingerprintSHA256 string
	// Subject and Issuer are the leaf's distinguished names in RFC 2253
	// form, with control characters replaced by U+FFFD.
	Subject, Issuer string
	// DNSNames are the leaf's DNS subject alternative names.
	DNSNames []string
	// NotBefore and NotAfter bound the leaf's validity period.
	NotBefore, NotAfter time.Time
	// KeyType is the leaf's key type: "rsa-<bits>" such as "rsa-2048",
	// "ecdsa-p256", "ecdsa-p384", "ecdsa-p521" or "ed25519".
	KeyType string
}

// Parse validates a PEM certificate chain and the PEM private key of its
// leaf certificate and describes the leaf.
//
// certPEM holds one or more CERTIFICATE blocks: the leaf first, then the
// intermediates, each signing the one before it. keyPEM holds one
// unencrypted private key in PKCS#1 ("RSA PRIVATE KEY"), PKCS#8 ("PRIVATE
// KEY") or SEC1 ("EC PRIVATE KEY", optionally with an "EC PARAMETERS"
// block) form. Each input must be at most 64 KiB and contain nothing but
// PEM blocks and whitespace.
//
// The leaf must be valid at now (NotBefore <= now <= NotAfter), use an
// RSA key of 2048 to 8192 bits, an ECDSA P-256, P-384 or P-521 key or an
// Ed25519 key, and match the private key. Expiry of intermediates is not
// checked, since chains may legitimately carry expired cross-signatures.
//
// All problems are reported in a *validate.Error whose fields are
// "certificate" and "private_key".
func Parse(certPEM, keyPEM string, now time.Time) (*Info, error) {
	var errs validate.Errors
	leaf, info := parseChain(&errs, certPEM, now)
	key := parseKey(&errs, keyPEM)
	if leaf != nil && key != nil {
		pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(leaf.PublicKey) {
			errs.Add(FieldPrivateKey, "does not match the certificate's public key")
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return info, nil
}

// parseChain validates the certificate chain, adding any problem to errs.
// It returns the leaf and its description, or nils if the chain is invalid.
func parseChain(errs *validate.Errors, certPEM string, now time.Time) (*x509.Certificate, *Info) {
	blocks, ok := decodePEM(errs, FieldCertificate, certPEM)
	if !ok {
		return nil, nil
	}
	if len(blocks) > MaxChainLength {
		errs.Add(FieldCertificate, "must contain at most %d certificates", MaxChainLength)
		return nil, nil
	}
	chain := make([]*x509.Certificate, 0, len(blocks))
	for i, b := range blocks {
		if b.Type != "CERTIFICATE" {
			if strings.Contains(b.Type, "PRIVATE KEY") {
				errs.Add(FieldCertificate, "must contain only CERTIFICATE blocks; found a %q block (the private key belongs in %s)", truncate(b.Type, 64), FieldPrivateKey)
			} else {
				errs.Add(FieldCertificate, "must contain only CERTIFICATE blocks; found a %q block", truncate(b.Type, 64))
			}
			return nil, nil
		}
		if len(b.Headers) > 0 {
			errs.Add(FieldCertificate, "certificate %d must not have PEM headers", i+1)
			return nil, nil
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			errs.Add(FieldCertificate, "certificate %d is not a valid X.509 certificate: %v", i+1, err)
			return nil, nil
		}
		chain = append(chain, c)
	}

	leaf := chain[0]
	if now.Before(leaf.NotBefore) {
		errs.Add(FieldCertificate, "is not valid until %s", formatTime(leaf.NotBefore))
		return nil, nil
	}
	if now.After(leaf.NotAfter) {
		errs.Add(FieldCertificate, "expired on %s", formatTime(leaf.NotAfter))
		return nil, nil
	}
	keyType, msg := publicKeyType(leaf.PublicKey)
	if msg != "" {
		errs.Add(FieldCertificate, "%s", msg)
		return nil, nil
	}
	for _, name := range leaf.DNSNames {
		if !isPrintableASCII(name) {
			errs.Add(FieldCertificate, "contains a DNS name with spaces, control or non-ASCII characters: %q", truncate(name, 64))
			return nil, nil
		}
	}
	for i := 1; i < len(chain); i++ {
		if err := chain[i-1].CheckSignatureFrom(chain[i]); err != nil {
			errs.Add(FieldCertificate, "certificate %d is not signed by certificate %d (the chain must start with the server certificate, followed by each issuer in order): %v", i, i+1, err)
			return nil, nil
		}
	}

	sum := sha256.Sum256(leaf.Raw)
	info := &Info{
		FingerprintSHA256: hex.EncodeToString(sum[:]),
		Subject:           sanitize(leaf.Subject.String()),
		Issuer:            sanitize(leaf.Issuer.String()),
		DNSNames:          append([]string(nil), leaf.DNSNames...),
		NotBefore:         leaf.NotBefore,
		NotAfter:          leaf.NotAfter,
		KeyType:           keyType,
	}
	return leaf, info
}

// parseKey validates the private key, adding any problem to errs. It
// returns nil if the key is invalid.
func parseKey(errs *validate.Errors, keyPEM string) crypto.Signer {
	blocks, ok := decodePEM(errs, FieldPrivateKey, keyPEM)
	if !ok {
		return nil
	}
	var keyBlock *pem.Block
	for _, b := range blocks {
		switch {
		case b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] != "" || b.Headers["DEK-Info"] != "":
			errs.Add(FieldPrivateKey, "is encrypted; provide the private key without a passphrase")
			return nil
		case b.Type == "EC PARAMETERS":
			// Written by "openssl ecparam -genkey" before the key; the
			// curve is repeated in the key itself.
			continue
		case b.Type == "CERTIFICATE":
			errs.Add(FieldPrivateKey, "must contain only a private key; found a CERTIFICATE block (certificates belong in %s)", FieldCertificate)
			return nil
		case b.Type != "PRIVATE KEY" && b.Type != "RSA PRIVATE KEY" && b.Type != "EC PRIVATE KEY":
			errs.Add(FieldPrivateKey, `must be a "PRIVATE KEY", "RSA PRIVATE KEY" or "EC PRIVATE KEY" PEM block; found a %q block`, truncate(b.Type, 64))
			return nil
		case len(b.Headers) > 0:
			errs.Add(FieldPrivateKey, "must not have PEM headers")
			return nil
		case keyBlock != nil:
			errs.Add(FieldPrivateKey, "must contain exactly one private key")
			return nil
		}
		keyBlock = b
	}
	if keyBlock == nil {
		errs.Add(FieldPrivateKey, "must contain a private key")
		return nil
	}

	var key any
	var err error
	switch keyBlock.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(keyBlock.Bytes)
		if err != nil {
			errs.Add(FieldPrivateKey, "is not a valid PKCS#1 RSA private key")
			return nil
		}
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(keyBlock.Bytes)
		if err != nil {
			errs.Add(FieldPrivateKey, "is not a valid SEC 1 EC private key")
			return nil
		}
	default:
		key, err = x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
		if err != nil {
			errs.Add(FieldPrivateKey, "is not a valid PKCS#8 private key")
			return nil
		}
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		errs.Add(FieldPrivateKey, "%s", msgUnsupportedKey)
		return nil
	}
	if _, msg := publicKeyType(signer.Public()); msg != "" {
		errs.Add(FieldPrivateKey, "%s", msg)
		return nil
	}
	return signer
}

// msgUnsupportedKey is the message for keys of an unsupported type.
const msgUnsupportedKey = "uses an unsupported key type; use RSA (2048 to 8192 bits), ECDSA (P-256, P-384 or P-521) or Ed25519"

// publicKeyType returns the key type name of pub such as "rsa-2048", or a
// message if the key is not acceptable.
func publicKeyType(pub crypto.PublicKey) (string, string) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < MinRSABits || bits > MaxRSABits {
			return "", fmt.Sprintf("uses a %d-bit RSA key; RSA keys must have %d to %d bits", bits, MinRSABits, MaxRSABits)
		}
		return fmt.Sprintf("rsa-%d", bits), ""
	case *ecdsa.PublicKey:
		switch k.Curve.Params().Name {
		case "P-256":
			return "ecdsa-p256", ""
		case "P-384":
			return "ecdsa-p384", ""
		case "P-521":
			return "ecdsa-p521", ""
		}
	case ed25519.PublicKey:
		return "ed25519", ""
	}
	return "", msgUnsupportedKey
}

// decodePEM splits s into PEM blocks, adding a problem to errs on field if
// s is empty, too large, malformed or contains anything but PEM blocks and
// whitespace.
func decodePEM(errs *validate.Errors, field, s string) ([]*pem.Block, bool) {
	if len(s) > MaxPEMSize {
		errs.Add(field, "must be at most %d bytes", MaxPEMSize)
		return nil, false
	}
	var blocks []*pem.Block
	rest := []byte(s)
	for {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			break
		}
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			errs.Add(field, "must contain only PEM blocks; found other data")
			return nil, false
		}
		b, after := pem.Decode(rest)
		// pem.Decode silently skips malformed blocks and any text
		// before a block, so check that it consumed exactly one BEGIN
		// line: the one rest starts with.
		if b == nil || bytes.Count(rest[:len(rest)-len(after)], []byte("-----BEGIN")) != 1 {
			errs.Add(field, "contains a malformed PEM block")
			return nil, false
		}
		blocks = append(blocks, b)
		rest = after
	}
	if len(blocks) == 0 {
		errs.Add(field, "is required")
		return nil, false
	}
	return blocks, true
}

// formatTime formats t for error messages.
func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}

// isPrintableASCII reports whether s contains only printable ASCII
// characters other than space.
func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// sanitize makes s valid UTF-8 and replaces control characters (C0, DEL,
// C1, U+2028 and U+2029) with U+FFFD.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\u2028' || r == '\u2029' {
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// truncate shortens s to at most n bytes for display in a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
