package secretbox

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
)

func testKey(b byte) []byte {
	return bytes.Repeat([]byte{b}, KeySize)
}

func newBox(t testing.TB, key []byte) *Box {
	t.Helper()
	box, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return box
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		key     []byte
		wantErr string
	}{
		{"32 bytes", testKey(1), ""},
		{"nil", nil, "key must be 32 bytes, got 0"},
		{"16 bytes", make([]byte, 16), "key must be 32 bytes, got 16"},
		{"24 bytes", make([]byte, 24), "key must be 32 bytes, got 24"},
		{"33 bytes", make([]byte, 33), "key must be 32 bytes, got 33"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			box, err := New(tt.key)
			if tt.wantErr == "" {
				if err != nil || box == nil {
					t.Fatalf("New = %v, %v", box, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || box != nil {
				t.Fatalf("New = %v, %v; want error containing %q", box, err, tt.wantErr)
			}
		})
	}
}

func TestLoadKey(t *testing.T) {
	key := make([]byte, KeySize)
	for i := range key {
		key[i] = byte(i*7 + 250) // includes bytes that encode to + / - _
	}
	std := base64.StdEncoding.EncodeToString(key)
	rawURL := base64.RawURLEncoding.EncodeToString(key)
	if !strings.ContainsAny(std, "+/") || !strings.ContainsAny(rawURL, "-_") {
		t.Fatalf("test key does not exercise the alphabets: %s %s", std, rawURL)
	}
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"std", std, ""},
		{"raw url", rawURL, ""},
		{"whitespace", "  \n" + std + "\r\n\t", ""},
		{"raw url newline", rawURL + "\n", ""},
		{"empty", "", "key is empty"},
		{"blank", " \n ", "key is empty"},
		{"not base64", "not base64 at all!", "not standard or raw URL-safe base64"},
		{"url with padding", base64.URLEncoding.EncodeToString(key), "not standard or raw URL-safe base64"},
		{"std without padding", base64.RawStdEncoding.EncodeToString(key), "not standard or raw URL-safe base64"},
		{"16 bytes", base64.StdEncoding.EncodeToString(key[:16]), "must decode to 32 bytes, got 16"},
		{"33 bytes", base64.RawURLEncoding.EncodeToString(append(key, 1)), "must decode to 32 bytes, got 33"},
		{"hex", strings.Repeat("ab", 32), "must decode to 32 bytes, got 48"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadKey(tt.in)
			if tt.wantErr == "" {
				if err != nil || !bytes.Equal(got, key) {
					t.Fatalf("LoadKey = %x, %v; want %x", got, err, key)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || got != nil {
				t.Fatalf("LoadKey = %x, %v; want error containing %q", got, err, tt.wantErr)
			}
			if s := strings.TrimSpace(tt.in); len(s) > 8 && strings.Contains(err.Error(), s) {
				t.Errorf("error %q contains the key", err)
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	seen := make(map[string]bool)
	for range 10 {
		s, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		key, err := LoadKey(s)
		if err != nil {
			t.Fatalf("LoadKey(GenerateKey()) = %v", err)
		}
		if len(key) != KeySize {
			t.Fatalf("key length = %d", len(key))
		}
		if seen[s] {
			t.Fatalf("GenerateKey repeated %q", s)
		}
		seen[s] = true
		if _, err := New(key); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	box := newBox(t, testKey(1))
	tests := []struct {
		name           string
		plaintext, aad []byte
	}{
		{"empty", nil, nil},
		{"empty with aad", []byte{}, []byte("record-1")},
		{"text", []byte("-----BEGIN PRIVATE KEY-----\n..."), []byte("certificate/0193")},
		{"binary", []byte{0, 1, 2, 0xff}, []byte{0}},
		{"large", bytes.Repeat([]byte("k"), 64<<10), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed := box.Seal(tt.plaintext, tt.aad)
			if len(sealed) != len(tt.plaintext)+Overhead {
				t.Errorf("len(sealed) = %d, want %d", len(sealed), len(tt.plaintext)+Overhead)
			}
			if sealed[0] != Version {
				t.Errorf("version byte = %d, want %d", sealed[0], Version)
			}
			if len(tt.plaintext) >= 8 && bytes.Contains(sealed, tt.plaintext[:8]) {
				t.Error("sealed data contains the plaintext")
			}
			got, err := box.Open(sealed, tt.aad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Fatalf("Open = %q, want %q", got, tt.plaintext)
			}
			// Another Box with the same key opens it too.
			if got, err := newBox(t, testKey(1)).Open(sealed, tt.aad); err != nil || !bytes.Equal(got, tt.plaintext) {
				t.Fatalf("Open with new Box = %q, %v", got, err)
			}
		})
	}
}

func TestSealIsRandomized(t *testing.T) {
	box := newBox(t, testKey(1))
	a := box.Seal([]byte("secret"), nil)
	b := box.Seal([]byte("secret"), nil)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are identical")
	}
	if bytes.Equal(a[1:1+nonceSize], b[1:1+nonceSize]) {
		t.Fatal("two seals share a nonce")
	}
}

func TestSealDoesNotAlias(t *testing.T) {
	box := newBox(t, testKey(1))
	plaintext := []byte("secret")
	aad := []byte("aad")
	sealed := box.Seal(plaintext, aad)
	if string(plaintext) != "secret" || string(aad) != "aad" {
		t.Fatal("Seal modified its arguments")
	}
	got, err := box.Open(sealed, aad)
	if err != nil {
		t.Fatal(err)
	}
	got[0] = 'X'
	if again, err := box.Open(sealed, aad); err != nil || string(again) != "secret" {
		t.Fatalf("modifying Open's result changed the sealed data: %q, %v", again, err)
	}
}

func TestOpenFailures(t *testing.T) {
	box := newBox(t, testKey(1))
	aad := []byte("certificate/42")
	sealed := box.Seal([]byte("private key bytes"), aad)

	flip := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name    string
		box     *Box
		sealed  []byte
		aad     []byte
		wantMsg string
	}{
		{"wrong key", newBox(t, testKey(2)), sealed, aad, "message authentication failed"},
		{"wrong aad", box, sealed, []byte("certificate/43"), "message authentication failed"},
		{"missing aad", box, sealed, nil, "message authentication failed"},
		{"extra aad", box, sealed, append(bytes.Clone(aad), 0), "message authentication failed"},
		{"flipped nonce", box, flip(1), aad, "message authentication failed"},
		{"flipped ciphertext", box, flip(1 + nonceSize), aad, "message authentication failed"},
		{"flipped tag", box, flip(len(sealed) - 1), aad, "message authentication failed"},
		{"truncated tag", box, sealed[:len(sealed)-1], aad, "message authentication failed"},
		{"appended byte", box, append(bytes.Clone(sealed), 0), aad, "message authentication failed"},
		{"version 0", box, append([]byte{0}, sealed[1:]...), aad, "unsupported version 0"},
		{"version 2", box, append([]byte{2}, sealed[1:]...), aad, "unsupported version 2"},
		{"empty", box, nil, aad, "too short (0 bytes)"},
		{"version only", box, []byte{Version}, aad, "too short (1 bytes)"},
		{"one byte short", box, make([]byte, Overhead-1), aad, "too short"},
		{"no ciphertext", box, append([]byte{Version}, make([]byte, nonceSize+tagSize)...), aad, "message authentication failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.box.Open(tt.sealed, tt.aad)
			if err == nil {
				t.Fatalf("Open succeeded with %q", got)
			}
			if got != nil {
				t.Errorf("Open returned plaintext %q with error", got)
			}
			if !errors.Is(err, ErrOpen) {
				t.Errorf("error %v does not wrap ErrOpen", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
	// The original is still intact.
	if _, err := box.Open(sealed, aad); err != nil {
		t.Fatalf("Open of untouched data: %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	box := newBox(t, testKey(3))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			msg := bytes.Repeat([]byte{byte(i)}, i*10)
			for range 100 {
				got, err := box.Open(box.Seal(msg, []byte{byte(i)}), []byte{byte(i)})
				if err != nil || !bytes.Equal(got, msg) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent round trip failed: %v", err)
	}
}

// FuzzOpen checks that Open never panics on arbitrary input and only
// succeeds on data produced by Seal.
func FuzzOpen(f *testing.F) {
	box := newBox(f, testKey(4))
	f.Add(box.Seal([]byte("hello"), []byte("aad")), []byte("aad"))
	f.Add(box.Seal(nil, nil), []byte{})
	f.Add([]byte{}, []byte{})
	f.Add([]byte{Version}, []byte("x"))
	f.Add(make([]byte, Overhead), []byte{})
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		got, err := box.Open(sealed, aad)
		if err != nil {
			if got != nil || !errors.Is(err, ErrOpen) {
				t.Fatalf("Open = %q, %v", got, err)
			}
			return
		}
		// Only the seeds made by Seal can open; a forgery would be a
		// break of AES-GCM.
		if len(sealed) < Overhead || sealed[0] != Version {
			t.Fatalf("Open accepted malformed input %x", sealed)
		}
	})
}

// FuzzRoundTrip checks that Seal and Open round trip any plaintext and aad
// and that changing the aad makes Open fail.
func FuzzRoundTrip(f *testing.F) {
	box := newBox(f, testKey(5))
	f.Add([]byte("private key"), []byte("record-1"))
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0, 0xff}, []byte{0})
	f.Fuzz(func(t *testing.T, plaintext, aad []byte) {
		sealed := box.Seal(plaintext, aad)
		if len(sealed) != len(plaintext)+Overhead {
			t.Fatalf("len(sealed) = %d", len(sealed))
		}
		got, err := box.Open(sealed, aad)
		if err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("Open = %q, %v; want %q", got, err, plaintext)
		}
		if _, err := box.Open(sealed, append(bytes.Clone(aad), 1)); err == nil {
			t.Fatal("Open succeeded with different aad")
		}
		sealed[len(sealed)-1] ^= 0x80
		if _, err := box.Open(sealed, aad); err == nil {
			t.Fatal("Open succeeded with tampered tag")
		}
	})
}
