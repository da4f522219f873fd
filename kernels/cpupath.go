package kernels

import (
	"fmt"
	"os"
	"strings"
)

// The kernel paths, from the plain Go up; each includes the ones below it
// (the AVX-512 path runs the AVX2 kernels where it has none of its own).
const (
	pathGeneric = iota // the plain-Go references
	pathAVX2           // AVX2 + FMA assembly
	pathAVX512         // AVX-512 F/BW/VL/DQ + VNNI assembly for the matrix kernels
)

var pathNames = [...]string{pathGeneric: "generic", pathAVX2: "avx2", pathAVX512: "avx512"}

// cpuEnv is the environment variable that forces a kernel path.
const cpuEnv = "JAMBA_CPU"

// choosePath returns the path to run given the value of JAMBA_CPU and the
// best path the CPU supports, and a one-line warning when the value cannot
// be honoured: a path the CPU lacks runs the best one it has, an unknown
// value the best one.
func choosePath(env string, best int) (int, string) {
	env = strings.TrimSpace(strings.ToLower(env))
	if env == "" {
		return best, ""
	}
	for p, name := range pathNames {
		if env != name {
			continue
		}
		if p > best {
			return best, fmt.Sprintf("kernels: %s=%s is not available here (%s); using %s", cpuEnv, env, cpuFeatures(), pathNames[best])
		}
		return p, ""
	}
	return best, fmt.Sprintf("kernels: %s=%q is not one of avx512, avx2, generic; using %s", cpuEnv, env, pathNames[best])
}

// pathFromEnv reads JAMBA_CPU once (at init), printing choosePath's warning
// on stderr.
func pathFromEnv(best int) int {
	p, warn := choosePath(os.Getenv(cpuEnv), best)
	if warn != "" {
		fmt.Fprintln(os.Stderr, warn)
	}
	return p
}

// currentPath is the path the kernels take now.
func currentPath() int {
	switch {
	case useAVX512:
		return pathAVX512
	case useAVX2:
		return pathAVX2
	}
	return pathGeneric
}

// CPUPath names the kernel path in use: "avx512", "avx2" or "generic". It
// is the best path the CPU supports (the generic one in the purego build
// and off amd64), or a lower one forced by the environment variable
// JAMBA_CPU (avx512, avx2 or generic), read once when the program starts.
// Asking for a path the CPU lacks runs the best one it has, with a warning
// on stderr. Every path gives the same results as the plain Go for
// integer sums (int8 weights, fused block weights); float32 weights differ
// only between the plain Go and the assembly (Go has no float32
// fused multiply-add; see docs/KERNELS.md).
func CPUPath() string { return pathNames[currentPath()] }

// forceGeneric makes the kernels take their plain-Go path until the returned
// function is called; tests use it as defer forceGeneric()().
func forceGeneric() (restore func()) { return forcePath(pathGeneric) }

// forcePath makes the kernels take path p, or the best path below it that
// the CPU supports, until the returned function is called.
func forcePath(p int) (restore func()) {
	o2, o512 := useAVX2, useAVX512
	useAVX2 = useAVX2 && p >= pathAVX2
	useAVX512 = useAVX512 && p >= pathAVX512
	return func() { useAVX2, useAVX512 = o2, o512 }
}
