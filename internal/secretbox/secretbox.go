// Package secretbox encrypts small secrets, such as TLS private keys, for
// storage at rest with AES-256-GCM.
//
// A sealed message is laid out as
//
//	version (1 byte, currently 1) || nonce (12 random bytes) || ciphertext || tag (16 bytes)
//
// The version byte is authenticated together with the caller's additional
// data, so a message cannot be reinterpreted under another version. Because
// nonces are random, a single key should seal at most about 2^32 messages.
//
// Imports: nothing of Fulcrum's (internal/importrules enforces it).
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

const (
	// KeySize is the size of a key in bytes.
	KeySize = 32
	// Version is the format version written by Seal.
	Version = 1
	// Overhead is the number of bytes Seal adds to the plaintext.
	Overhead = 1 + nonceSize + tagSize

	nonceSize = 12
	tagSize   = 16
)

// ErrOpen is wrapped by every error returned by Open.
var ErrOpen = errors.New("secretbox: cannot open sealed data")

// Box seals and opens messages with one key. Create it with New. A Box is
// safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// New returns a Box using key, which must be exactly 32 bytes (AES-256).
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secretbox: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	return &Box{aead: aead}, nil
}

// LoadKey decodes a key from its base64 form, standard (with padding) or
// raw URL-safe (without padding), ignoring surrounding whitespace. The key
// must decode to exactly 32 bytes. Errors never contain the key.
func LoadKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("secretbox: key is empty")
	}
	key, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		var rawErr error
		key, rawErr = base64.RawURLEncoding.Strict().DecodeString(s)
		if rawErr != nil {
			return nil, fmt.Errorf("secretbox: key is not standard or raw URL-safe base64: %w", err)
		}
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("secretbox: key must decode to %d bytes, got %d", KeySize, len(key))
	}
	return key, nil
}

// GenerateKey returns a new random key in standard base64, suitable for
// LoadKey.
func GenerateKey() (string, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("secretbox: generating key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(key), nil
}

// Seal encrypts and authenticates plaintext and authenticates aad, which
// must be presented again to Open. aad binds the message to its context,
// for example the ID of the record it is stored in, so that a sealed value
// cannot be moved to another record. The result is a new slice of
// len(plaintext)+Overhead bytes.
func (b *Box) Seal(plaintext, aad []byte) []byte {
	out := make([]byte, 1, len(plaintext)+Overhead)
	out[0] = Version
	return b.aead.Seal(out, nil, plaintext, fullAAD(aad))
}

// Open authenticates and decrypts a message produced by Seal with the same
// key and aad. Every error wraps ErrOpen; no error distinguishes a wrong
// key, wrong aad or tampered message.
func (b *Box) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w: sealed data is too short (%d bytes)", ErrOpen, len(sealed))
	}
	if sealed[0] != Version {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrOpen, sealed[0])
	}
	plaintext, err := b.aead.Open(nil, nil, sealed[1:], fullAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOpen, err)
	}
	return plaintext, nil
}

// fullAAD returns the additional data authenticated with a message: the
// version byte followed by the caller's aad.
func fullAAD(aad []byte) []byte {
	full := make([]byte, 0, 1+len(aad))
	full = append(full, Version)
	return append(full, aad...)
}
