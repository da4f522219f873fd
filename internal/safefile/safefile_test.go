package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	os.WriteFile(p, []byte(`{"a": 1}`), 0o644)
	if b, err := ReadFile(p, 100); err != nil || string(b) != `{"a": 1}` {
		t.Fatalf("%q, %v", b, err)
	}
	if _, err := ReadFile(p, 4); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
	// A link to /dev/zero is refused before any read (a plain ReadFile
	// would never end).
	z := filepath.Join(dir, "zero.json")
	if err := os.Symlink("/dev/zero", z); err != nil {
		t.Skip(err)
	}
	if _, err := ReadFile(z, 1<<30); !errors.Is(err, ErrNotRegular) {
		t.Errorf("link to /dev/zero: %v", err)
	}
	if _, err := ReadFile(dir, 1<<30); !errors.Is(err, ErrNotRegular) {
		t.Errorf("folder: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "none"), 10); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}
