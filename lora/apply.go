package lora

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"

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
		src := *w
		mod := &a.Modules[i]
		if src.Rows != mod.Out || src.Cols != mod.In {
			err = fmt.Errorf("lora: %s is %d×%d in the model, the adapter's factors make %d×%d", name, src.Rows, src.Cols, mod.Out, mod.In)
			return
		}
		dst := &kernels.Matrix{Rows: src.Rows, Cols: src.Cols, DType: kernels.F32, F32: make([]float32, src.Rows*src.Cols)}
		for r := 0; r < src.Rows; r++ {
			src.Row(dst.F32[r*src.Cols:(r+1)*src.Cols], r)
		}
		a.Delta(i, dst.F32)
		*w = dst
		done++
	})
	if err != nil {
		return err
	}
	if done != len(a.Modules) {
		return fmt.Errorf("lora: the model has %d of the adapter's %d modules", done, len(a.Modules))
	}
	m.MergedWith("lora:" + a.Hash())
	return nil
}
