package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
)

// TestNonFiniteNamesLayer: a NaN weight in layer 2 ends the request with
// ErrNonFinite naming layer 2, and the engine serves the next request.
func TestNonFiniteNamesLayer(t *testing.T) {
	cfg, err := model.LoadConfig(testutil.Fixture(t, "models/tiny-moe"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := model.WriteInit(cfg, dir, "f32", 1, nil); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, name := range f.Names() {
		tt, _ := f.Tensor(name)
		data := slices.Clone(tt.Data)
		if name == "model.layers.2.feed_forward.down_proj.weight" {
			binary.LittleEndian.PutUint32(data[12:], math.Float32bits(float32(math.Inf(1))))
		}
		ts = append(ts, safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: tt.DType, Shape: tt.Shape}, Data: data})
	}
	f.Close()
	if err := safetensors.WriteFile(p, ts, nil); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(dir, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e, err := New(m, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for range 2 {
		s, err := e.Submit(context.Background(), Request{Prompt: []int{1, 5, 9}, MaxTokens: 4})
		if err != nil {
			t.Fatal(err)
		}
		ids, last := collect(t, s)
		if len(ids) != 0 || !errors.Is(last.Err, ErrNonFinite) || !strings.Contains(last.Err.Error(), "layer 2 (") {
			t.Fatalf("tokens %v, err %v: want ErrNonFinite naming layer 2", ids, last.Err)
		}
	}
}
