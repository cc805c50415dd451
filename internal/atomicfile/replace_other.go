//go:build !linux

package atomicfile

import "os"

// Replace renames from to to, replacing to atomically.
func Replace(from, to string) error { return os.Rename(from, to) }
