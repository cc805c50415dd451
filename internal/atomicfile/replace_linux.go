package atomicfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// Replace renames from to to, replacing to atomically (readers see the old
// file or the new one), and does not start writing from's data to disk.
//
// A plain rename onto an existing file does on ext4 (its default
// auto_da_alloc): the rename first submits all of the new file's unwritten
// pages for writeback (filemap_flush), so that a crash right after it does
// not leave an empty file where the old one was. That costs the caller the
// submission of the whole file — a few ms for MBs on an idle disk, and
// hundreds of ms when the disk is congested, as the block layer throttles
// the submitter. Files that are read at once from the page cache and
// rewritten from durable state after any crash (HAProxy's configuration,
// its server-state file) do not need it: Replace swaps the two files
// (renameat2 RENAME_EXCHANGE, which ext4 does without that flush) and then
// removes the old one, now at from. Where the exchange is not supported
// (to does not exist, an older kernel, another filesystem), or when to is
// not a regular file (an exchange would swap a directory in place of the
// file, where a rename fails), it renames.
func Replace(from, to string) error {
	swapped, err := Swap(from, to)
	if swapped {
		// The new content is in place; the old one, now at from, goes (a
		// failure here leaves a stale file, not a wrong one).
		os.Remove(from)
	}
	return err
}

// Swap is Replace without the removal of the old file: when it swapped the
// two (swapped), from holds to's old content, for the caller to remove when
// it suits it. The unlink of a file whose blocks are on disk frees them (a
// journal transaction; with online discard a trim): 0.2–18 ms on a loaded
// disk, where the exchange itself takes 20–80 µs. Otherwise it renamed (or
// failed) and from is gone.
func Swap(from, to string) (swapped bool, err error) {
	if fi, err := os.Lstat(to); err != nil || !fi.Mode().IsRegular() {
		return false, os.Rename(from, to)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_EXCHANGE); err != nil {
		return false, os.Rename(from, to)
	}
	return true, nil
}
