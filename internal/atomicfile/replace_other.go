//go:build !linux

package atomicfile

import "os"

// Replace renames from to to, replacing to atomically.
func Replace(from, to string) error { return os.Rename(from, to) }

// Swap renames from to to (swapped is always false here).
func Swap(from, to string) (swapped bool, err error) { return false, os.Rename(from, to) }
