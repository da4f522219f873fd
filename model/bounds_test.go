package model

import (
	"context"
	"runtime"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
)

// TestGenerateHugeMaxTokens: a MaxTokens far beyond the context stops at
// the context without reserving memory for MaxTokens entries (4e9 ints
// would be 32 GB).
func TestGenerateHugeMaxTokens(t *testing.T) {
	m, err := Load(testutil.Fixture(t, "models/tiny-moe"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, reason, err := m.Generate(context.Background(), []int{1, 2, 3}, GenerateOptions{MaxTokens: 4_000_000_000, Context: 16, IgnoreEOS: true}, nil)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if reason != StopLength || len(out) != 16-3 {
		t.Errorf("%d tokens, %q: want %d, length", len(out), reason, 16-3)
	}
	// The model's workspace and cache are a few MB; 64 MB is far below
	// what any reservation proportional to MaxTokens would take.
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<20 {
		t.Errorf("allocated %d MB", d>>20)
	}
}
