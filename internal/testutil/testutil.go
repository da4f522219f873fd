// Package testutil finds test fixtures: the copies in the repository's
// testdata/ first, then the shared fixtures beside the checkout (../shared).
package testutil

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// RepoRoot is the repository's top folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// SharedDir is ../shared beside the repository.
func SharedDir() string { return filepath.Join(RepoRoot(), "..", "shared") }

// Missing ends the test when a fixture is absent: it fails under CI (the
// CI variable is set) and skips otherwise.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("fixture missing: %s (CI needs ../shared/fixtures beside the checkout)", what)
	}
	t.Skipf("fixture missing: %s", what)
}

// Fixture returns the path of a fixture given relative to fixtures/ (e.g.
// "models/tiny-moe"), preferring testdata/ in the repository, then
// ../shared/fixtures. When neither exists it calls Missing.
func Fixture(t testing.TB, rel string) string {
	t.Helper()
	for _, p := range []string{filepath.Join(RepoRoot(), "testdata", rel), filepath.Join(SharedDir(), "fixtures", rel)} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	Missing(t, rel)
	return ""
}

// Shared returns a path under ../shared/fixtures, calling Missing when absent.
func Shared(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(SharedDir(), "fixtures", rel)
	if _, err := os.Stat(p); err != nil {
		Missing(t, rel)
	}
	return p
}

// ReadIDs reads a fixture of token ids stored as little-endian int32 (the
// reference tools' .ids.int32 files), given relative to fixtures/.
func ReadIDs(t testing.TB, rel string) []int {
	t.Helper()
	path := Fixture(t, rel)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data)%4 != 0 {
		t.Fatalf("%s: size %d is not a multiple of 4", path, len(data))
	}
	ids := make([]int, len(data)/4)
	for i := range ids {
		ids[i] = int(int32(binary.LittleEndian.Uint32(data[4*i:])))
	}
	return ids
}

// ReadFile reads a fixture given relative to fixtures/ (see Fixture).
func ReadFile(t testing.TB, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(Fixture(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
