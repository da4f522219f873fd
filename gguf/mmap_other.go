//go:build !(aix || darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris)

package gguf

import (
	"fmt"
	"io"
	"os"
)

// readFile reads path into memory: as mapFile here.
func readFile(path string) ([]byte, func() error, error) { return mapFile(path) }

// mapFile reads path into memory on platforms without mmap support here.
func mapFile(path string) ([]byte, func() error, error) {
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
	if size < 0 || size > int64(maxInt) {
		return nil, nil, fmt.Errorf("file of %d bytes is too large to load", size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, err
	}
	return data, nil, nil
}
