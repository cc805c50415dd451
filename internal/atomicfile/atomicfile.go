// Package atomicfile writes files so that readers see the old or the new
// content, never a partial one.
//
// Imports: nothing of Fulcrum's (internal/importrules enforces it).
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to path with mode through a synced temporary file in the
// same directory and a rename.
func Write(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, true)
}

// WriteUnsynced writes data to path with mode through a temporary file in the
// same directory and Replace, without an fsync: readers see the old or the
// new content, but a crash of the machine may leave the old one (or, for a
// file never synced, an empty one). For files that are written anew from
// durable state on every start, or read at once and then no longer needed.
func WriteUnsynced(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, false)
}

func write(path string, data []byte, mode os.FileMode, sync bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if sync {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if sync {
		return os.Rename(tmp.Name(), path) // synced already: nothing for the rename to flush
	}
	return Replace(tmp.Name(), path)
}
