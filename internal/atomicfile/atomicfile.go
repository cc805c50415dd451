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
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
