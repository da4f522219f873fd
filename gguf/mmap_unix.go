//go:build aix || darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package gguf

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps path read-only and returns the bytes and a function that
// unmaps them. Empty files are returned as nil data with no mapping.
func mapFile(path string) ([]byte, func() error, error) { return loadFile(path, false) }

// readFile reads path into an anonymous private mapping (page-aligned,
// like a file mapping, and read-only once read) and returns the bytes and
// a function that frees them. Empty files are returned as nil data.
func readFile(path string) ([]byte, func() error, error) { return loadFile(path, true) }

// loadFile opens path, checks that it is a regular file that fits in the
// address space, and maps it, or with read copies it into memory of its own.
func loadFile(path string, read bool) ([]byte, func() error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	}
	size := fi.Size()
	if size == 0 {
		return nil, nil, nil
	}
	if size < 0 || size > int64(maxInt) {
		return nil, nil, fmt.Errorf("file of %d bytes is too large to map", size)
	}
	if !read {
		data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, nil, fmt.Errorf("mmap: %w", err)
		}
		return data, func() error { return unix.Munmap(data) }, nil
	}
	data, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, fmt.Errorf("allocating %d bytes: %w", size, err)
	}
	free := func() error { return unix.Munmap(data) }
	if _, err := io.ReadFull(f, data); err != nil {
		free()
		if err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("the file shrank while it was read: %w", err)
		}
		return nil, nil, err
	}
	if err := unix.Mprotect(data, unix.PROT_READ); err != nil { // as a mapping: writes fault
		free()
		return nil, nil, fmt.Errorf("mprotect: %w", err)
	}
	return data, free, nil
}
