package model

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/safetensors"
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
	if reason != FinishLength || len(out) != 16-3 {
		t.Errorf("%d tokens, %q: want %d, length", len(out), reason, 16-3)
	}
	// The model's workspace and cache are a few MB; 64 MB is far below
	// what any reservation proportional to MaxTokens would take.
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<20 {
		t.Errorf("allocated %d MB", d>>20)
	}
}

// nanCheckpoint writes a random checkpoint of the tiny-moe config (one file) with a
// NaN in one weight of the named tensor.
func nanCheckpoint(t *testing.T, tensor string) string {
	t.Helper()
	cfg, err := LoadConfig(testutil.Fixture(t, "models/tiny-moe"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteInit(cfg, dir, "f32", 1, nil); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	found := false
	for _, name := range f.Names() {
		tt, _ := f.Tensor(name)
		data := slices.Clone(tt.Data)
		if name == tensor {
			binary.LittleEndian.PutUint32(data[4*3:], math.Float32bits(float32(math.NaN())))
			found = true
		}
		ts = append(ts, safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: tt.DType, Shape: tt.Shape}, Data: data})
	}
	f.Close()
	if !found {
		t.Fatalf("no tensor %s", tensor)
	}
	if err := safetensors.WriteFile(p, ts, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestNonFiniteNamesLayer: a NaN weight in layer 2 makes generation fail
// with an error naming layer 2 (not token -1, not "token out of range"),
// and --check-finite's scan names the tensor at load.
func TestNonFiniteNamesLayer(t *testing.T) {
	for _, c := range []struct {
		tensor string
		want   string
	}{
		{"model.layers.2.feed_forward.down_proj.weight", "layer 2 ("},
		{"model.layers.0.input_layernorm.weight", "layer 0 ("},
		{"model.final_layernorm.weight", "the final norm"},
	} {
		dir := nanCheckpoint(t, c.tensor)
		m, err := Load(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := m.Generate(context.Background(), []int{1, 2, 3}, GenerateOptions{MaxTokens: 4}, nil)
		m.Close()
		var nf *NonFiniteError
		if !errors.As(err, &nf) || !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: generated %v, err %v; want an error naming %q", c.tensor, out, err, c.want)
		}
		_, err = Load(dir, Options{CheckFinite: true})
		if !errors.Is(err, safetensors.ErrNonFinite) || !strings.Contains(err.Error(), c.tensor) {
			t.Errorf("--check-finite: %v", err)
		}
	}
}
