//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package hub

import (
	"os"
	"path/filepath"
)

// lockFile creates the lock file huggingface_hub expects; on this system
// it does not lock.
func lockFile(p string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// diskFree is unknown on this system.
var diskFree = func(dir string) (int64, bool) { return 0, false }
