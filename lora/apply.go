package lora

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"

	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/model"
)

// Hash is a content hash of the adapter: its scale, module names and
// factors.
func (a *Adapter) Hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "lora r=%d scale=%v\n", a.Config.Rank, a.Config.Scale())
	for _, m := range a.Modules {
		fmt.Fprintf(h, "%s %d %d\n", m.Name, m.Out, m.In)
	}
	var b [4]byte
	for _, v := range a.Data {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Merge merges the adapter into m: every adapted matrix is replaced by a
// new float32 matrix W + scale·B·A, W read in its storage type (float32,
// bfloat16, int8 or a GGUF block format, dequantized exactly as the forward
// pass reads it). Every other weight is left as it is. To keep m's own
// weights, merge into m.ShareWeights().
func Merge(m *model.Model, a *Adapter) error {
	err := a.eachModule(m, func(i int, name string, w **kernels.Matrix) error {
		src := *w
		dst := &kernels.Matrix{Rows: src.Rows, Cols: src.Cols, DType: kernels.F32, F32: make([]float32, src.Rows*src.Cols)}
		for r := 0; r < src.Rows; r++ {
			src.Row(dst.F32[r*src.Cols:(r+1)*src.Cols], r)
		}
		a.Delta(i, dst.F32)
		*w = dst
		return nil
	})
	if err != nil {
		return err
	}
	m.MergedWith("lora:" + a.Hash())
	return nil
}

// LowRankFor returns the adapter in the form m's forward pass applies on
// the fly to the sequences that ask for it (model.SeqInput.Adapter),
// leaving m itself unchanged: many adapters can then share one model and
// one batch. A Mamba in_proj's factors are split as the forward pass splits
// the matrix (the x rows, then the gate rows of B).
func LowRankFor(m *model.Model, a *Adapter) (*model.LowRank, error) {
	lr := &model.LowRank{Scale: float32(a.Config.Scale()), Mods: map[*kernels.Matrix]model.LowRankMod{}, Name: a.Hash()}
	r := a.Config.Rank
	f32 := func(v []float32, rows, cols int) *kernels.Matrix {
		return &kernels.Matrix{Rows: rows, Cols: cols, DType: kernels.F32, F32: append([]float32(nil), v...)}
	}
	err := a.eachModule(m, func(i int, name string, w **kernels.Matrix) error {
		mod := &a.Modules[i]
		A, B := f32(a.A(i), r, mod.In), a.B(i)
		if strings.HasSuffix(name, ".mamba.in_proj.weight") {
			var layer int
			if _, e := fmt.Sscanf(name, "model.layers.%d.", &layer); e != nil || layer >= len(m.Layers) || m.Layers[layer].Mamba == nil {
				return fmt.Errorf("lora: %s: no such Mamba layer", name)
			}
			mw := m.Layers[layer].Mamba
			di := mod.Out / 2
			lr.Mods[mw.InX] = model.LowRankMod{A: A, B: f32(B[:di*r], di, r)}
			lr.Mods[mw.InZ] = model.LowRankMod{A: A, B: f32(B[di*r:], di, r)}
			return nil
		}
		lr.Mods[*w] = model.LowRankMod{A: A, B: f32(B, mod.Out, r)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lr, nil
}

// eachModule calls fn for every matrix of m that one of the adapter's
// modules adapts (i: the module's index), after checking that the
// module's factors fit the matrix; the first error stops the walk. Every
// module must find its matrix.
func (a *Adapter) eachModule(m *model.Model, fn func(i int, name string, w **kernels.Matrix) error) error {
	idx := map[string]int{}
	for i, mod := range a.Modules {
		idx[mod.Weight()] = i
	}
	var err error
	done := 0
	m.Matrices(true, func(name string, w **kernels.Matrix) {
		i, ok := idx[name]
		if !ok || err != nil {
			return
		}
		mod := &a.Modules[i]
		if (*w).Rows != mod.Out || (*w).Cols != mod.In {
			err = fmt.Errorf("lora: %s is %d×%d in the model, the adapter's factors make %d×%d", name, (*w).Rows, (*w).Cols, mod.Out, mod.In)
			return
		}
		done++
		err = fn(i, name, w)
	})
	if err != nil {
		return err
	}
	if done != len(a.Modules) {
		return fmt.Errorf("lora: the model has %d of the adapter's %d modules", done, len(a.Modules))
	}
	return nil
}
