package cuda

import (
	"math"

	"github.com/jamba-go/jamba/model"
)

// NewRandom builds a model of config c with random bfloat16 weights made
// on the GPU (no checkpoint): for measuring speed at shapes too large to
// ship, such as the full Jamba-v0.1. Matrices are uniform with the config's
// initializer standard deviation; norms are 1, A = −1, D = 1.
func NewRandom(dev *Device, c *model.Config, seed uint64) (*Model, error) {
	if dev.enter() {
		defer dev.leave()
	}
	m, err := newModel(dev, c)
	if err != nil {
		return nil, err
	}
	if err := m.random(seed); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func (m *Model) random(seed uint64) error {
	c := m.Config
	H, V, I, E := c.HiddenSize, c.VocabSize, c.IntermediateSize, c.NumExperts
	hd := c.HeadDimension()
	qd, kvd := c.NumAttentionHeads*hd, c.NumKeyValueHeads*hd
	Di, N, K, R := c.InnerSize(), c.MambaDState, c.MambaDConv, c.MambaDtRank
	std := c.InitializerRange
	if std <= 0 {
		std = 0.02
	}
	a := float32(std * math.Sqrt(3)) // uniform [-a, a] has standard deviation std
	var err error
	mat := func(rows, cols int) Matrix {
		if err != nil {
			return Matrix{}
		}
		w := Matrix{Rows: rows, Cols: cols, DType: BF16}
		var b Buf
		if b, err = m.alloc(w.Bytes()); err != nil {
			return Matrix{}
		}
		seed++
		err = m.Dev.launch("fill_bf16", [2]int{4 * m.Dev.SMs}, 256, b.Ptr, la(int64(rows)*int64(cols)), seed, fa(a), fa(0))
		w.Ptr = b.Ptr
		return w
	}
	vec := func(n int, scale, val float32) Buf {
		if err != nil {
			return Buf{}
		}
		var b Buf
		if b, err = m.alloc(4 * int64(n)); err != nil {
			return b
		}
		seed++
		err = m.Dev.launch("fill_f32", [2]int{blocks(int64(n), 256)}, 256, b.Ptr, la(int64(n)), seed, fa(scale), fa(val))
		return b
	}
	m.embed = mat(V, H)
	if c.TieWordEmbeddings {
		m.head = m.embed
	} else {
		m.head = mat(V, H)
	}
	m.finalNorm = vec(H, 0, 1)
	for i := range m.layers {
		l := &m.layers[i]
		l.inNorm, l.ffNorm = vec(H, 0, 1), vec(H, 0, 1)
		if l.mixer == model.Attention {
			l.qkv, l.o = mat(qd+2*kvd, H), mat(H, qd)
		} else {
			l.inProj = mat(2*Di, H)
			l.convWT = vec(K*Di, 0.5, 0)
			if c.MambaConvBias {
				l.convB = vec(Di, 0.1, 0)
			}
			l.xProj = mat(R+2*N, Di)
			l.dtNorm, l.bNorm, l.cNorm = vec(R, 0, 1), vec(N, 0, 1), vec(N, 0, 1)
			l.dtProj = mat(Di, R)
			l.dtBias = vec(Di, 1, -4)
			l.a = vec(Di*N, 0, -1)
			l.d = vec(Di, 0, 1)
			l.outProj = mat(H, Di)
			if c.MambaProjBias {
				l.inBias, l.outBias = vec(2*Di, 0, 0), vec(H, 0, 0)
			}
		}
		if l.ffn == model.Dense {
			l.gu, l.down = mat(2*I, H), mat(H, I)
		} else {
			l.router = mat(E, H)
			l.expGU, l.expDown = mat(E*2*I, H), mat(E*H, I)
			l.expGU.Rows, l.expDown.Rows = 2*I, H
			l.guStride, l.dnStride = int64(2*I)*int64(H), int64(H)*int64(I)
		}
		if err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	return m.Dev.Sync()
}
