package model

import (
	"github.com/jamba-go/jamba/internal/buf"
	"github.com/jamba-go/jamba/kernels"
)

// LowRank is a LoRA adapter as the forward pass applies it on the fly, to
// the sequences of a batch that ask for it (SeqInput.Adapter): every
// adapted matrix W adds
//
//	y += Scale·(x·Aᵀ)·Bᵀ
//
// to y = x·Wᵀ for those sequences' rows. Factors are keyed by the base
// model's own matrices (the pointers its layers hold, InX and InZ apart for
// a Mamba in_proj), so one LowRank belongs to one loaded Model and must be
// built after any change of its matrices (a merge recomputes InX and
// InZ). Package lora builds them (lora.LowRankFor).
type LowRank struct {
	Scale float32
	Mods  map[*kernels.Matrix]LowRankMod
	// Name identifies the adapter (its content hash): engines keep the
	// states of different adapters apart by it.
	Name string
}

// LowRankMod holds the factors of one adapted matrix: A [r, in] and
// B [out, r], float32.
type LowRankMod struct {
	A, B *kernels.Matrix
}

// adapt adds the adapters of the current batch's sequences to y = x·Wᵀ,
// computed for n rows: row i is token rows[i] of the batch (rows nil: row
// i is token i). Runs of consecutive rows of one sequence with an adapter
// of w get two small products each; without adapters in the batch it
// returns at once.
func (ws *Workspace) adapt(y, x []float32, n int, w *kernels.Matrix, rows []int) {
	if !ws.anyAdapter || n == 0 {
		return
	}
	out, in := w.Rows, w.Cols
	for i := 0; i < n; {
		tok := i
		if rows != nil {
			tok = rows[i]
		}
		ad := ws.tokAdapter[tok]
		j := i + 1
		for j < n {
			t := j
			if rows != nil {
				t = rows[j]
			}
			if ws.tokAdapter[t] != ad {
				break
			}
			j++
		}
		if ad != nil {
			if mod, ok := ad.Mods[w]; ok {
				m := j - i
				r := mod.A.Rows
				u := buf.Grow(&ws.loraU, m*r)
				kernels.MatMul(u, x[i*in:j*in], m, mod.A)
				t := buf.Grow(&ws.loraT, m*out)
				kernels.MatMul(t, u, m, mod.B)
				kernels.Axpy(ad.Scale, t, y[i*out:j*out])
			}
		}
		i = j
	}
}
