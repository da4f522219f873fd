package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/cuda"
)

// TestDeviceFlag: --device takes cpu or cuda on every command that has it;
// bench's GPU-only flags are refused on the CPU; without a GPU, cuda fails
// with one line that names what is missing (with one, the GPU tests of
// package cuda cover the commands' paths).
func TestDeviceFlag(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--device", "gpu", "x"},
		{"generate", "--device", "tpu", "--ids", "1,2", "--max-tokens", "1"},
		{"forward", "--device", "metal", "--ids", "1,2", "--output", t.TempDir() + "/f.safetensors"},
		{"perplexity", "--device", "x", "--file", "device_test.go"},
		{"bench", "--device", "gpu"},
		{"bench", "--config", "c.json"},
	} {
		_, stderr, code := run(t, args...)
		if code != 2 || !strings.Contains(stderr, "usage error") {
			t.Errorf("%v: exit %d, %q (want a usage error)", args, code, stderr)
		}
	}
	if _, err := cuda.Open(0); !errors.Is(err, cuda.ErrUnavailable) {
		t.Skip("a GPU is present")
	}
	for _, args := range [][]string{
		{"run", "--device", "cuda", "--max-tokens", "2", "x"},
		{"bench", "--device", "cuda", "--config", "../../../shared/bench/jamba-small.json"},
	} {
		_, stderr, code := run(t, args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		last := lines[len(lines)-1]
		if code != 1 || !strings.Contains(last, "cuda: not available") {
			t.Errorf("%v: exit %d, last line %q", args, code, last)
		}
	}
}
