//go:build aix || darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package gguf

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// regularFile opens path and checks that it is a regular file of a size
// that can be held in memory.
func regularFile(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	}
	size := fi.Size()
	if size < 0 || size > int64(maxInt) {
		f.Close()
		return nil, 0, fmt.Errorf("file of %d bytes is too large to map", size)
	}
	return f, size, nil
}

// readFile reads path into an anonymous private mapping (page-aligned,
// like a file mapping) and returns the bytes and a function that frees
// them. Empty files are returned as nil data.
func readFile(path string) ([]byte, func() error, error) {
	f, size, err := regularFile(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if size == 0 {
		return nil, nil, nil
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

// mapFile maps path read-only and returns the bytes and a function that
// unmaps them. Empty files are returned as nil data with no mapping.
func mapFile(path string) ([]byte, func() error, error) {
	f, size, err := regularFile(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if size == 0 {
		return nil, nil, nil
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap: %w", err)
	}
	return data, func() error { return unix.Munmap(data) }, nil
}
