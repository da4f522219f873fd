package kernels

import (
	"os"
	"strings"
	"testing"
)

func TestChoosePath(t *testing.T) {
	for _, c := range []struct {
		env        string
		best, want int
		warn       bool
	}{
		{"", pathAVX512, pathAVX512, false},
		{"", pathGeneric, pathGeneric, false},
		{"avx512", pathAVX512, pathAVX512, false},
		{"AVX2", pathAVX512, pathAVX2, false},
		{" generic ", pathAVX2, pathGeneric, false},
		{"avx512", pathAVX2, pathAVX2, true},
		{"avx2", pathGeneric, pathGeneric, true},
		{"sse", pathAVX2, pathAVX2, true},
	} {
		p, warn := choosePath(c.env, c.best)
		if p != c.want || (warn != "") != c.warn || strings.Contains(warn, "\n") {
			t.Errorf("choosePath(%q, %s) = %s, %q; want %s, warning %v", c.env, pathNames[c.best], pathNames[p], warn, pathNames[c.want], c.warn)
		}
	}
}

// TestCPUPath checks that the path JAMBA_CPU asks for (capped by the CPU)
// is the one running: CI runs the package once per path the machine
// supports.
func TestCPUPath(t *testing.T) {
	got := CPUPath()
	t.Logf("kernel path %s (%s)", got, cpuFeatures())
	if want, _ := choosePath(os.Getenv(cpuEnv), bestPath); pathNames[want] != got {
		t.Errorf("%s=%q: the kernels run %s, want %s", cpuEnv, os.Getenv(cpuEnv), got, pathNames[want])
	}
	if useAVX512 && !useAVX2 {
		t.Error("useAVX512 without useAVX2")
	}
}
