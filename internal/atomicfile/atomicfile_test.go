package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f.cfg")
	for _, s := range []string{"one", "two"} {
		if err := Write(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != s {
			t.Fatalf("read %q %v, want %q", b, err, s)
		}
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v, want 0600", fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 1 {
		t.Fatalf("%d files in the directory, want 1 (no temporary left)", len(ents))
	}
}

// TestWriteUnsyncedReplaces: the new content replaces the old one (by
// exchange where supported), with mode, and neither the old content nor a
// temporary file is left in the directory; a file that did not exist yet is
// created.
func TestWriteUnsyncedReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "haproxy.cfg")
	for _, s := range []string{"one", "two", "three"} {
		if err := WriteUnsynced(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != s {
			t.Fatalf("read %q %v, want %q", b, err, s)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Fatalf("%d files in the directory after %q, want 1", len(ents), s)
		}
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v, want 0600", fi.Mode(), err)
	}
}

// TestReplace: from takes to's place (whether to existed or not) and is gone;
// a reader holding the old file open still reads the old content.
func TestReplace(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "candidate.cfg"), filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(from, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Replace(from, to); err != nil { // to does not exist yet
		t.Fatal(err)
	}
	old, err := os.Open(to)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := os.WriteFile(from, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Replace(from, to); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(to); err != nil || string(b) != "second" {
		t.Fatalf("read %q %v, want second", b, err)
	}
	if _, err := os.Stat(from); !os.IsNotExist(err) {
		t.Fatalf("from still there: %v", err)
	}
	buf := make([]byte, 16)
	n, _ := old.Read(buf)
	if string(buf[:n]) != "first" {
		t.Fatalf("the open old file reads %q, want first", buf[:n])
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d files in the directory, want 1", len(ents))
	}
	if err := Replace(from, to); err == nil {
		t.Fatal("Replace of a missing file: no error")
	}
}

// TestReplaceOntoDirectoryFails: a directory where the file should be is not
// swapped away (a rename onto it fails, and so does Replace).
func TestReplaceOntoDirectoryFails(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "candidate.cfg"), filepath.Join(dir, "haproxy.cfg")
	if err := os.MkdirAll(filepath.Join(to, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(from, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Replace(from, to); err == nil {
		t.Fatal("Replace onto a directory: no error")
	}
	if fi, err := os.Stat(to); err != nil || !fi.IsDir() {
		t.Fatalf("%s is no longer the directory: %v %v", to, fi, err)
	}
	if err := WriteUnsynced(to, []byte("new"), 0o600); err == nil {
		t.Fatal("WriteUnsynced onto a directory: no error")
	}
}

// TestSwap: onto an existing file the two swap (from holds the old content,
// for the caller to remove); onto no file it renames.
func TestSwap(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "candidate.cfg"), filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(from, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if swapped, err := Swap(from, to); err != nil || swapped {
		t.Fatalf("Swap onto nothing: swapped %v, %v; want a rename", swapped, err)
	}
	if err := os.WriteFile(from, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	swapped, err := Swap(from, to)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(to); string(b) != "second" {
		t.Fatalf("%s holds %q, want second", to, b)
	}
	old, err := os.ReadFile(from)
	switch {
	case swapped && (err != nil || string(old) != "first"):
		t.Fatalf("swapped, but %s holds %q (%v), want first", from, old, err)
	case !swapped && !os.IsNotExist(err):
		t.Fatalf("renamed, but %s is still there (%v)", from, err)
	}
}
